// `make bench` in miniature, so that it cannot rot: 50 messages, one run, scenarios 1, 3 and 7
// (a new connection per message, at both sender counts) with mxwarden, Postfix and Haraka,
// scenario 6 (all filters) with mxwarden and the filtering Postfix (Postfix+rspamd), and scenario 8
// (mxwarden at two sites, every shadow copy checked at the second) with its ratio to 1; the table
// printed and written as Markdown with a figure in every server's column, CPU per message
// included. And the filtering Postfix filters: a virus, spam and a listed client are refused
// during the dialogue, clean mail goes through.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { CountingSink } from "../../bench/counting-sink.ts";
import { DNSBL_ZONE, startFilterEngines } from "../../bench/filter-engines.ts";
import { startFilteringPostfix } from "../../bench/servers/postfix-filtering.ts";
import { EICAR } from "../harness/clamd.ts";
import { GTUBE } from "../harness/rspamd.ts";
import { SmtpDialogue, simpleMessage, type Reply } from "../harness/smtp-dialogue.ts";
import { repoRoot, tempDir } from "../harness/workspace.ts";

const run = promisify(execFile);

const number = String.raw`\d+(?:\.\d+)?`;
const ratio = String.raw`\d+\.\d\d×`;
const none = "–";

/** Scenario, figure, and the cells after it: mxwarden, Postfix, Haraka, Postfix+rspamd, then the three ratios. */
const ROWS: Array<[string, string, string[]]> = [
  ...[
    ...["accept rate", "end-to-end rate", "CPU per message"].map((figure): [string, string] => ["1: 4 KB", figure]),
    ...["drain time", "drain rate", "CPU per message, accepted to drained"].map((figure): [string, string] => ["3: primary down, then up", figure]),
    ...[20, 100].flatMap((senders) =>
      ["accept rate", "end-to-end rate", "CPU per message"].map((figure): [string, string] => [`7: new connection per message, ${senders} senders`, figure]),
    ),
  ].map(([scenario, figure]): [string, string, string[]] => [scenario, figure, [number, number, number, none, ratio, ratio, none]]),
  ...["accept rate", "end-to-end rate", "CPU per message, clamd and rspamd included", "of which clamd and rspamd"].map((figure): [string, string, string[]] => [
    "6: all filters, 50 × 4 KB",
    figure,
    [number, none, none, number, none, none, ratio],
  ]),
  ...["accept rate", "end-to-end rate", "CPU per message, both sites", "peak RSS of site A's relay"].map((figure): [string, string, string[]] => [
    "8: 4 KB, two sites",
    figure,
    [number, none, none, none, none, none, none],
  ]),
];

describe("bench smoke", () => {
  it("runs scenarios 1, 3, 6, 7 and 8 against every server and reports every figure", async () => {
    const markdown = join(tempDir("bench-smoke").path, "benchmarks.md");
    const { stdout } = await run(process.execPath, [join(repoRoot, "bench", "run.ts")], {
      cwd: repoRoot,
      // rspamd compiles its rules at each start of scenario 6: up to a minute on a busy machine.
      timeout: 600_000,
      env: { ...process.env, BENCH_MESSAGES: "50", BENCH_REPEATS: "1", BENCH_SCENARIOS: "1,3,6,7,8", BENCH_MARKDOWN: markdown },
    });
    const written = readFileSync(markdown, "utf8");
    for (const [scenario, figure, cells] of ROWS) {
      const row = new RegExp(`${scenario}\\s+${figure} \\([^)]*\\)${cells.map((cell) => `\\s+${cell}`).join("")}\\s*$`, "m");
      assert.match(stdout, row, `the table has every server's ${figure} in scenario ${scenario}:\n${stdout}`);
      const markdownRow = new RegExp(`\\| ${scenario} \\| ${figure} \\([^)]*\\)${cells.map((cell) => ` \\| ${cell}`).join("")} \\|`);
      assert.match(written, markdownRow, `the Markdown has every server's ${figure} in scenario ${scenario}:\n${written}`);
    }
    assert.match(written, /new connection per message, 100 senders \(7\) ≥ 1\.5× Postfix: \d+\.\d\d×, (met|missed)/);
    assert.match(written, /with all filters \(6\) ≥ 1\.5× Postfix\+rspamd: \d+\.\d\d×, (met|missed)/);
    // Had a shadow copy not reached site B, scenario 8 would have failed with no figures: its rows say it ran.
    assert.match(written, /two sites \(8\): end to end \d+\.\d\d× one site \(1\), CPU per message \d+\.\d\d×/);
    assert.match(written, /CPU: .+, \d+ cores/);
    assert.match(written, /Postfix \d+\.\d+/);
    assert.match(written, /Haraka \d+\.\d+/);
  });

  it("the filtering Postfix refuses a virus, spam and a listed client at the end of DATA, and relays clean mail", async () => {
    const dir = tempDir("filtering-postfix");
    // Postfix's daemons run as the postfix user and keep their locks under the scratch directory.
    chmodSync(dir.path, 0o755);
    // 127.0.0.2 is listed in the DNS list; the other senders come from 127.0.0.1.
    const engines = await startFilterEngines(join(dir.path, "engines"), { milter: true, zones: { [`2.0.0.127.${DNSBL_ZONE}`]: { a: ["127.0.0.2"] } } });
    const sink = await CountingSink.start();
    try {
      const postfix = await startFilteringPostfix({ dir: join(dir.path, "postfix"), domain: "example.org", primaryPort: sink.port }, engines);
      try {
        const send = async (body: string, localAddress?: string): Promise<Reply> => {
          const { dialogue } = await SmtpDialogue.open(postfix.port, "127.0.0.1", localAddress);
          try {
            await dialogue.command("EHLO client.test");
            assert.equal((await dialogue.command("MAIL FROM:<sender@client.test>")).code, 250);
            assert.equal((await dialogue.command("RCPT TO:<user@example.org>")).code, 250);
            return await dialogue.data(body);
          } finally {
            dialogue.destroy();
          }
        };
        const virus = await send(simpleMessage("virus", "v1", `${EICAR}\r\n`));
        assert.equal(virus.code, 554, `a virus: ${virus.code} ${virus.text}`);
        // rspamd's antivirus module asked clamd, which found our signature.
        assert.match(readFileSync(join(dir.path, "engines", "clamd", "clamd.log"), "utf8"), /Eicar-Test-[\w.]+ FOUND/);
        const spam = await send(simpleMessage("spam", "s1", `${GTUBE}\r\n`));
        assert.equal(spam.code, 554, `spam: ${spam.code} ${spam.text}`);
        const listed = await send(simpleMessage("listed", "l1"), "127.0.0.2");
        assert.equal(listed.code, 554, `a client in ${DNSBL_ZONE}: ${listed.code} ${listed.text}`);
        assert.ok(engines.dns.queries.includes(`A 2.0.0.127.${DNSBL_ZONE}`), "rspamd looked the client up in the list");
        const clean = await send(simpleMessage("clean", "c1"));
        assert.equal(clean.code, 250, `clean mail: ${clean.code} ${clean.text}`);
        await sink.waitFor(1, performance.now(), 60_000);
        assert.equal(sink.received, 1, "only the clean message reached the primary");
      } finally {
        await postfix.stop();
      }
    } finally {
      await sink.stop();
      await engines.stop();
    }
    dir.remove();
  });
});
