// `make bench` in miniature, so that it cannot rot: 50 messages, one run, scenarios 1, 3 and 7
// (a new connection per message, at both sender counts) with all three servers (mxwarden,
// Postfix, Haraka), the table printed and written as Markdown with a figure in every server's
// column, CPU per message included.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { repoRoot, tempDir } from "../harness/workspace.ts";

const run = promisify(execFile);

/** Scenario and figure of every row the run must fill, scenarios as the table names them. */
const ROWS: Array<[string, string]> = [
  ...["accept rate", "end-to-end rate", "CPU per message"].map((figure): [string, string] => ["1: 4 KB", figure]),
  ...["drain time", "drain rate", "CPU per message, accepted to drained"].map((figure): [string, string] => ["3: primary down, then up", figure]),
  ...[20, 100].flatMap((senders) =>
    ["accept rate", "end-to-end rate", "CPU per message"].map((figure): [string, string] => [`7: new connection per message, ${senders} senders`, figure]),
  ),
];

describe("bench smoke", () => {
  it("runs scenarios 1, 3 and 7 against mxwarden, Postfix and Haraka and reports every figure", async () => {
    const markdown = join(tempDir("bench-smoke").path, "benchmarks.md");
    const { stdout } = await run(process.execPath, [join(repoRoot, "bench", "run.ts")], {
      cwd: repoRoot,
      timeout: 240_000,
      env: { ...process.env, BENCH_MESSAGES: "50", BENCH_REPEATS: "1", BENCH_SCENARIOS: "1,3,7", BENCH_MARKDOWN: markdown },
    });
    const written = readFileSync(markdown, "utf8");
    const number = String.raw`\d+(?:\.\d+)?`;
    const ratio = String.raw`\d+\.\d\d×`;
    for (const [scenario, figure] of ROWS) {
      // mxwarden, Postfix, Haraka, then both ratios: all figures, no "–".
      const row = new RegExp(`${scenario}\\s+${figure} \\([^)]*\\)\\s+${number}\\s+${number}\\s+${number}\\s+${ratio}\\s+${ratio}`);
      assert.match(stdout, row, `the table has every server's ${figure} in scenario ${scenario}:\n${stdout}`);
      const markdownRow = new RegExp(`\\| ${scenario} \\| ${figure} \\([^)]*\\) \\| ${number} \\| ${number} \\| ${number} \\| ${ratio} \\| ${ratio} \\|`);
      assert.match(written, markdownRow, `the Markdown has every server's ${figure} in scenario ${scenario}:\n${written}`);
    }
    assert.match(written, /new connection per message, 100 senders \(7\) ≥ 1\.5× Postfix: \d+\.\d\d×, (met|missed)/);
    assert.match(written, /CPU: .+, \d+ cores/);
    assert.match(written, /Postfix \d+\.\d+/);
    assert.match(written, /Haraka \d+\.\d+/);
  });
});
