// `make bench`: throughput and memory of the relay under the same load in one run, with figures
// and ratios printed side by side. Load and sink are Postfix's smtp-source and smtp-sink; the relay
// runs as a separate process exactly as deployed.
//
// Scenarios (each on its own fresh nats-server):
//   fsync-always   production setting: nats-server fsyncs every write before the PubAck
//   fsync-default  nats-server's default 2-minute fsync interval (what `sync_interval: always` costs)
//   all-filters    fsync-always with clamd, rspamd, SPF/DKIM/DMARC (local DNS) and the RCPT checks on
//   backlog        100,000 deferred jobs over 1,000 domains; one primary returns (deferred-backlog.ts)
//
// Usage: make bench [BENCH_MESSAGES=2000]

import { join } from "node:path";
import { TestNatsServer } from "../test/harness/nats-server.ts";
import { measureDeferredBacklog } from "./deferred-backlog.ts";
import { TestClamd } from "../test/harness/clamd.ts";
import { startDnsServer } from "../test/harness/dns-server.ts";
import { TestRspamd } from "../test/harness/rspamd.ts";
import { SmtpSink, smtpSource } from "../test/harness/postfix-tools.ts";
import { RelayProcess, writeDomains } from "../test/harness/relay-process.ts";
import { eventually, peakRss, tempDir } from "../test/harness/workspace.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 2000);
const SESSIONS = 20;
const BODY_BYTES = 4096;

interface Result {
  scenario: string;
  acceptPerSecond: number;
  endToEndPerSecond: number;
  acceptMeanMs: number;
  acceptP99Ms: number;
  peakRssMiB: number;
  /** Mean time per message of each DATA-stage filter, in ms. */
  filterMeanMs: Record<string, number>;
}

/** sum/count of a histogram, per value of `label` (or overall with no label). */
function histogramMeans(metricsText: string, name: string, label?: string): Record<string, number> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const line of metricsText.split("\n")) {
    const match = new RegExp(`^${name}_(sum|count)(?:\\{([^}]*)\\})? (\\S+)$`).exec(line);
    if (!match) continue;
    const key = label ? new RegExp(`${label}="([^"]*)"`).exec(match[2] ?? "")?.[1] ?? "" : "all";
    (match[1] === "sum" ? sums : counts).set(key, Number(match[3]));
  }
  const means: Record<string, number> = {};
  for (const [key, sum] of sums) means[key] = (sum / (counts.get(key) || 1)) * 1000;
  return means;
}

/** p99 of a Prometheus histogram from its cumulative buckets (upper bound of the bucket). */
function histogramP99(metricsText: string, name: string): number {
  const buckets: Array<[number, number]> = [];
  for (const line of metricsText.split("\n")) {
    const match = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)`).exec(line);
    if (match) buckets.push([match[1] === "+Inf" ? Infinity : Number(match[1]), Number(match[2])]);
  }
  const total = buckets[buckets.length - 1]?.[1] ?? 0;
  const wanted = total * 0.99;
  return (buckets.find(([, count]) => count >= wanted)?.[0] ?? NaN) * 1000;
}

async function runScenario(scenario: string, syncAlways: boolean, filters = false): Promise<Result> {
  const dir = tempDir(`bench-${scenario}`).path;
  const nats = await TestNatsServer.start(join(dir, "nats"), { syncAlways });
  const sink = await SmtpSink.start();
  const engines = filters
    ? await Promise.all([TestClamd.start(join(dir, "clamd")), TestRspamd.start(join(dir, "rspamd")), startDnsServer({})])
    : undefined;
  writeDomains(join(dir, "domains.yaml"), [{
    domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: sink.port }] },
    ...(filters ? { rateLimits: { perClient: "1000000/1h" }, clientChecks: { rejectInvalidHelo: true } } : {}),
  }]);
  const filterArgs = engines
    ? ["--clamd", `127.0.0.1:${engines[0].port}`, "--rspamd", engines[1].url, "--sender-auth", "--resolver", `127.0.0.1:${engines[2].port}`]
    : [];
  const relay = await RelayProcess.start({ dir, domainsPath: join(dir, "domains.yaml"), nats: nats.url, args: ["--delivery-concurrency", "20", ...filterArgs] });
  try {
    await relay.ready();
    const started = performance.now();
    const acceptMs = await smtpSource({ port: relay.smtpPort, messages: MESSAGES, sessions: SESSIONS, length: BODY_BYTES, from: "bench@client.test", to: "user@example.com" });
    await eventually("all messages at the sink", () => sink.dumpCount() >= MESSAGES, 600_000, 100);
    const endToEndMs = performance.now() - started;
    const metrics = await relay.metricsText();
    return {
      scenario,
      acceptPerSecond: MESSAGES / (acceptMs / 1000),
      endToEndPerSecond: MESSAGES / (endToEndMs / 1000),
      acceptMeanMs: histogramMeans(metrics, "mxwarden_accept_duration_seconds").all ?? NaN,
      acceptP99Ms: histogramP99(metrics, "mxwarden_accept_duration_seconds"),
      peakRssMiB: peakRss(relay.process.pid) / 2 ** 20,
      filterMeanMs: histogramMeans(metrics, "mxwarden_filter_duration_seconds", "filter"),
    };
  } finally {
    await relay.stop();
    await sink.stop();
    await nats.stop();
    if (engines) await Promise.all([engines[0].stop(), engines[1].stop(), engines[2].close()]);
  }
}

const results = [await runScenario("fsync-always", true), await runScenario("fsync-default", false), await runScenario("all-filters", true, true)];
const [always, relaxed, filtered] = results as [Result, Result, Result];
console.log(`\nmxwarden relay, ${MESSAGES} messages of ${BODY_BYTES} bytes over ${SESSIONS} sessions (smtp-source -> relay -> smtp-sink)\n`);
console.log("scenario        accept msg/s  end-to-end msg/s  accept mean  accept p99 (bucket)  relay peak RSS");
for (const r of results) {
  console.log(`${r.scenario.padEnd(15)} ${r.acceptPerSecond.toFixed(0).padStart(12)}  ${r.endToEndPerSecond.toFixed(0).padStart(16)}  ${`${r.acceptMeanMs.toFixed(1)} ms`.padStart(11)}  ${`<= ${r.acceptP99Ms} ms`.padStart(19)}  ${r.peakRssMiB.toFixed(0).padStart(10)} MiB`);
}
const perFilter = Object.entries(filtered.filterMeanMs).map(([name, ms]) => `${name} ${ms.toFixed(1)} ms`).join(", ");
console.log(`\nall filters on: ${(100 * filtered.endToEndPerSecond / always.endToEndPerSecond).toFixed(0)}% of the end-to-end rate without them, +${(filtered.acceptMeanMs - always.acceptMeanMs).toFixed(1)} ms mean accept latency; mean per message: ${perFilter}`);
console.log(`fsync before every PubAck keeps ${(100 * always.acceptPerSecond / relaxed.acceptPerSecond).toFixed(0)}% of the accept rate and ${(100 * always.endToEndPerSecond / relaxed.endToEndPerSecond).toFixed(0)}% of the end-to-end rate.`);

const backlog = await measureDeferredBacklog(Number(process.env.BENCH_DEFERRED ?? 100_000));
console.log(`\ndeferred backlog: ${backlog.deferred} jobs over ${backlog.domains} domains, built in ${backlog.buildSeconds.toFixed(1)} s`);
console.log(`  jobs the backlog holds in the delivery consumer: ${backlog.consumerPendingWithBacklog}`);
console.log(`  one primary returns: ${backlog.releasedJobs} jobs found and released in ${backlog.releaseMs.toFixed(0)} ms`);
console.log(`  a ready job of another domain reaches a relay in ${backlog.otherDomainReadyMs.toFixed(1)} ms (after the ${backlog.releasedJobs} released ones)`);
