// `make bench` in miniature, so that it cannot rot: 50 messages, one run, scenarios 1 and 3 with
// all three servers (mxwarden, Postfix, Haraka), the table printed and written as Markdown with a
// figure in every server's column.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { repoRoot, tempDir } from "../harness/workspace.ts";

const run = promisify(execFile);

describe("bench smoke", () => {
  it("runs scenarios 1 and 3 against mxwarden, Postfix and Haraka and reports every figure", async () => {
    const markdown = join(tempDir("bench-smoke").path, "benchmarks.md");
    const { stdout } = await run(process.execPath, [join(repoRoot, "bench", "run.ts")], {
      cwd: repoRoot,
      timeout: 120_000,
      env: { ...process.env, BENCH_MESSAGES: "50", BENCH_REPEATS: "1", BENCH_SCENARIOS: "1,3", BENCH_MARKDOWN: markdown },
    });
    const written = readFileSync(markdown, "utf8");
    const number = String.raw`\d+(?:\.\d+)?`;
    const ratio = String.raw`\d+\.\d\d×`;
    for (const figure of ["accept rate", "end-to-end rate", "drain time", "drain rate"]) {
      // mxwarden, Postfix, Haraka, then both ratios: all figures, no "–".
      const row = new RegExp(`${figure} \\([^)]*\\)\\s+${number}\\s+${number}\\s+${number}\\s+${ratio}\\s+${ratio}`);
      assert.match(stdout, row, `the table has every server's ${figure}:\n${stdout}`);
      const markdownRow = new RegExp(`\\| ${figure} \\([^)]*\\) \\| ${number} \\| ${number} \\| ${number} \\| ${ratio} \\| ${ratio} \\|`);
      assert.match(written, markdownRow, `the Markdown has every server's ${figure}:\n${written}`);
    }
    assert.match(written, /CPU: .+, \d+ cores/);
    assert.match(written, /Postfix \d+\.\d+/);
    assert.match(written, /Haraka \d+\.\d+/);
  });
});
