// What rspamd costs mxwarden with all filters on (issue 19, item 2), and whether sending rspamd
// the relay's own SPF, DKIM and DMARC results would save rspamd work. Not part of `make bench`:
//
//   node bench/rspamd-cost.ts      (RSPAMD_COST_MESSAGES, default 1000)
//
// 1. Scenario 6's relay (filter-engines.ts, scenarios.ts) with and without its rspamd filter: the
//    end-to-end rate, the CPU per message of the relay and its nats-server, and of clamd and rspamd.
// 2. rspamd alone, asked over HTTP (/checkv2) as the relay asks it, 20 requests at a time: its CPU
//    per message, time per answer and DNS queries per message, as configured for scenario 6, then
//    with its http_headers module on and the relay's results in SPF, DKIM and DMARC headers, which
//    replace rspamd's own checks (the results the relay finds here: no SPF record, no signature,
//    no DMARC record).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../test/harness/workspace.ts";
import { treeCpuSeconds } from "./cpu.ts";
import { startFilterEngines } from "./filter-engines.ts";
import { filteredThroughput } from "./scenarios.ts";

const MESSAGES = Number(process.env.RSPAMD_COST_MESSAGES ?? 1000);
const CONCURRENCY = 20;
const base = join(repoRoot, ".tmp", "bench", `rspamd-cost-${new Date().toISOString().replace(/[:.]/g, "-")}`);
mkdirSync(base, { recursive: true });

function log(text: string): void {
  process.stderr.write(`[rspamd-cost ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

/** A 4 KB message like smtp-source's: a few headers, then filler lines. */
function message(n: number): string {
  const head = `From: bench@client.test\r\nTo: user@example.org\r\nSubject: bench ${n}\r\nMessage-ID: <${n}.bench@client.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n`;
  const line = "La La La La La La La La La La La La La La La La La La La La La La La La\r\n";
  return head + line.repeat(Math.ceil((4096 - head.length) / line.length));
}

const AUTH_RESULTS = { SPF: '{result = "na"}', DKIM: '{result = "na"}', DMARC: '{result = "na"}' };

interface DirectResult {
  cpuMsPerMessage: number;
  meanMs: number;
  dnsPerMessage: number;
  score: number;
}

async function askRspamdDirectly(label: string, trustAuthHeaders: boolean): Promise<DirectResult> {
  const engines = await startFilterEngines(join(base, label), { trustAuthHeaders });
  try {
    const ask = async (n: number): Promise<{ ms: number; score: number }> => {
      const started = performance.now();
      const response = await fetch(`${engines.rspamdUrl}/checkv2`, {
        method: "POST",
        headers: { IP: "127.0.0.1", Helo: "client.test", From: "bench@client.test", Rcpt: "user@example.org", ...(trustAuthHeaders ? AUTH_RESULTS : {}) },
        body: message(n),
      });
      const reply = (await response.json()) as { score: number };
      return { ms: performance.now() - started, score: reply.score };
    };
    await ask(0); // the first scan loads what rspamd loads lazily
    const queriesBefore = engines.dns.queries.length;
    const before = treeCpuSeconds([engines.rspamdPid]);
    const times: number[] = [];
    let score = NaN;
    let next = 1;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next <= MESSAGES) {
          const result = await ask(next++);
          times.push(result.ms);
          score = result.score;
        }
      }),
    );
    return {
      cpuMsPerMessage: ((treeCpuSeconds([engines.rspamdPid]) - before) * 1000) / MESSAGES,
      meanMs: times.reduce((sum, ms) => sum + ms, 0) / times.length,
      dnsPerMessage: (engines.dns.queries.length - queriesBefore) / MESSAGES,
      score,
    };
  } finally {
    await engines.stop();
  }
}

const lines: string[] = [];
for (const withoutRspamd of [false, true]) {
  const label = withoutRspamd ? "relay, all filters but rspamd" : "relay, all filters";
  log(label);
  const result = await filteredThroughput(join(base, withoutRspamd ? "relay-without" : "relay-with"), "mxwarden", MESSAGES, { withoutRspamd });
  const { antispam, antivirus = NaN, sender_auth = NaN } = result.filterMeanMs;
  // The DATA-stage filters run at the same time: rspamd delays the reply by what it takes beyond the slowest other.
  const others = `in clamd ${antivirus.toFixed(1)} ms, in SPF/DKIM/DMARC ${sender_auth.toFixed(1)} ms`;
  lines.push(
    `${label}: ${result.endToEndPerSecond.toFixed(0)} msg/s end to end; CPU per message: relay and nats-server ${(result.cpuMsPerMessage - result.engineCpuMsPerMessage).toFixed(2)} ms, ` +
      `clamd and rspamd ${result.engineCpuMsPerMessage.toFixed(2)} ms; mean time ${antispam === undefined ? "" : `in rspamd ${antispam.toFixed(1)} ms, `}${others}`,
  );
}
for (const trustAuthHeaders of [false, true]) {
  const label = trustAuthHeaders ? "rspamd given the relay's SPF, DKIM and DMARC results" : "rspamd as in scenario 6";
  log(label);
  const result = await askRspamdDirectly(trustAuthHeaders ? "direct-auth" : "direct", trustAuthHeaders);
  lines.push(
    `${label}: CPU ${result.cpuMsPerMessage.toFixed(2)} ms per message, ${result.meanMs.toFixed(1)} ms per answer (${CONCURRENCY} at a time), ${result.dnsPerMessage.toFixed(1)} DNS queries per message, score ${result.score}`,
  );
}
console.log(`\n${MESSAGES} messages of 4 KB each:\n${lines.map((line) => `- ${line}`).join("\n")}`);
