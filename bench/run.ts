// `make bench`: mxwarden, Postfix and Haraka in one run, on the same machine, under the same load.
// Each is a backup MX for one domain relaying to the same kind of primary (Postfix's smtp-sink);
// the load is Postfix's smtp-source (or a paced client for latency). Every figure is the median of
// BENCH_REPEATS runs, each run on a freshly started server, the servers taking turns.
//
// Scenarios:
//   1  accept and end-to-end rate, 4 KB messages, 20 sessions (and mxwarden's peak RSS: 5a)
//   2  the same with 100 KB messages
//   3  primary down while the messages are queued, then back: drain time
//   4  end of DATA to 250, p50/p99, at a fixed offered rate: half the slowest server's maximum in 1
//   4b end of DATA to 250, p99, each server offered half its own maximum in 1 (the target's figure)
//   5  peak RSS with one 50 MB message
//   6  mxwarden with every filter at the door but greylisting (clamd, rspamd, SPF/DKIM/DMARC,
//      a DNS list, HELO checks, rate limits), against Postfix with the same filters through rspamd
//      as a milter ("Postfix+rspamd", servers/postfix-filtering.ts)
//   7  as 1, but a new connection per message (an MX's usual traffic), 20 and 100 concurrent senders
//   8  as 1, mxwarden only, at site A of two joined sites: site B holds a shadow copy of every
//      message (servers/mxwarden-two-sites.ts); given as a ratio of its own scenario 1 in the notes
//   fsync    mxwarden on nats-server's default fsync interval: what durability costs (not a setting to run)
//   backlog  100,000 deferred jobs over 1,000 domains, one primary returns (deferred-backlog.ts)
// 1, 2, 3, 6, 7 and 8 also give each server's CPU time per message: all of its processes (cpu.ts;
// in 8 both sites' nats-servers and relays).
//
// Environment: BENCH_MESSAGES (10000), BENCH_REPEATS (3), BENCH_QUICK=1 (500 messages, 1 repeat,
// scenarios 1,3,4,5,7, nothing written to docs/), BENCH_SCENARIOS (e.g. "1,3"), BENCH_SERVERS
// (e.g. "mxwarden,Postfix"; scenario 6's peer is "Postfix+rspamd"), BENCH_RATE (offered rate of 4
// when 1 does not run), BENCH_MARKDOWN (where the Markdown goes; default docs/benchmarks.md, none in
// quick mode), BENCH_RELAY_ARGS (extra relay flags for every mxwarden run, e.g.
// "--max-connections-per-hop 20", to try settings), BENCH_RELAY_PROCESSES (relays sharing the SMTP
// port with --reuse-port, as several relay pods of one site would; default 1).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../test/harness/workspace.ts";
import { measureDeferredBacklog } from "./deferred-backlog.ts";
import { machineDescription, markdownTable, median, textTable, type Figure } from "./report.ts";
import {
  ALL_SERVERS,
  bigMessageRss,
  connectionPerMessage,
  drain,
  FILTERING_SERVERS,
  filteredThroughput,
  latency,
  type PlainServer,
  SERVERS,
  SESSIONS,
  startServer,
  throughput,
  twoSiteThroughput,
  type ServerName,
} from "./scenarios.ts";
import { FILTERING_POSTFIX } from "./servers/postfix-filtering.ts";
import { MxwardenBackupMx } from "./servers/mxwarden.ts";

const quick = process.env.BENCH_QUICK === "1";
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? (quick ? 500 : 10_000));
const REPEATS = Number(process.env.BENCH_REPEATS ?? (quick ? 1 : 3));
const SCENARIOS = new Set((process.env.BENCH_SCENARIOS ?? (quick ? "1,3,4,5,7" : "1,2,3,4,5,6,7,8,fsync,backlog")).split(",").map((s) => s.trim()));
const selected = (server: ServerName): boolean => (process.env.BENCH_SERVERS ?? ALL_SERVERS.join(",")).split(",").includes(server);
const SERVERS_RUN = SERVERS.filter(selected);
const FILTERING_RUN = FILTERING_SERVERS.filter(selected);
const MARKDOWN = process.env.BENCH_MARKDOWN ?? (quick ? undefined : join(repoRoot, "docs", "benchmarks.md"));
// How long the servers try and defer while the primary is down, before it comes back, and how
// long a drain may take before the run gets no figure.
const SETTLE_MS = MESSAGES <= 1000 ? 1000 : 5000;
const DRAIN_WAIT_MS = Number(process.env.BENCH_DRAIN_WAIT_MS ?? Math.max(60_000, MESSAGES * 10));
const BIG_MESSAGE = 50 * 2 ** 20;
/** Concurrent senders of scenario 7, each opening a new connection per message. */
const SENDERS = [20, 100] as const;

const base = join(repoRoot, ".tmp", "bench", `run-${new Date().toISOString().replace(/[:.]/g, "-")}`);
mkdirSync(base, { recursive: true });
const figures: Figure[] = [];
const notes: string[] = [];

/** Said in the heading when mxwarden ran as several relays sharing the port. */
function relayProcesses(): string {
  const processes = Number(process.env.BENCH_RELAY_PROCESSES ?? "1");
  return processes > 1 ? `mxwarden as ${processes} relay processes sharing the port, ` : "";
}

function log(text: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

function figure(scenario: string, name: string, unit: string, better: Figure["better"]): Figure {
  const created: Figure = { scenario, name, unit, better, runs: {} };
  figures.push(created);
  return created;
}

function record(target: Figure, server: ServerName, value: number): void {
  (target.runs[server] ??= []).push(value);
}

/** Every repeat runs each server once, in turn, so that noise from the machine spreads over all. */
async function eachRun<S extends ServerName>(
  label: string,
  servers: readonly S[],
  body: (server: S, dir: string, repeat: number) => Promise<void>,
): Promise<void> {
  for (let repeat = 1; repeat <= REPEATS; repeat++) {
    for (const server of servers) {
      log(`${label}: ${server}, run ${repeat}/${REPEATS}`);
      // One failed run costs its figures, not the whole benchmark; the table says what is missing.
      await body(server, join(base, `${label}-${server}-${repeat}`), repeat).catch((err: unknown) => {
        log(`${label}: ${server}, run ${repeat} failed: ${String(err)}`);
        notes.push(`${label} ${server} run ${repeat} failed (no figures from it): ${String(err).split("\n")[0]}`);
      });
    }
  }
}

const startAs = (server: PlainServer) => (options: Parameters<typeof startServer>[1]) => startServer(server, options);

const perServer = (target: Figure): Record<string, number> =>
  Object.fromEntries(Object.entries(target.runs).map(([server, values]) => [server, median(values)]));

let offeredRate = Number(process.env.BENCH_RATE ?? NaN);
/** Half of each server's own accept rate in scenario 1 (scenario 4b). */
let ownHalfRates: Record<string, number> = {};
/** The figures issue 5 sets targets on, by scenario. */
const tracked: Partial<Record<"endToEnd" | "cpu" | "endToEnd100k" | "drainRate" | "p99" | "rssLoad" | "rssBig" | "filtered", Figure>> = {};
/** Issue 19's target figures: end to end with a new connection per message, by number of senders. */
const trackedPerConnection = new Map<number, Figure>();

if (SCENARIOS.has("1")) {
  const accept = figure("1: 4 KB", "accept rate", "msg/s", "higher");
  const endToEnd = figure("1: 4 KB", "end-to-end rate", "msg/s", "higher");
  const cpu = figure("1: 4 KB", "CPU per message", "ms", "lower");
  const rss = figure("5a: RSS during 1", "peak RSS of the receiving process", "MiB", "lower");
  Object.assign(tracked, { endToEnd, cpu, rssLoad: rss });
  await eachRun("s1", SERVERS_RUN, async (server, dir) => {
    const result = await throughput(dir, startAs(server), MESSAGES, 4096);
    record(accept, server, result.acceptPerSecond);
    record(endToEnd, server, result.endToEndPerSecond);
    record(cpu, server, result.cpuMsPerMessage);
    record(rss, server, result.peakRssMiB);
  });
  offeredRate = Math.min(...Object.values(perServer(accept))) / 2;
  ownHalfRates = Object.fromEntries(Object.entries(perServer(accept)).map(([server, rate]) => [server, rate / 2]));
}

if (SCENARIOS.has("fsync") && SERVERS_RUN.includes("mxwarden")) {
  const relaxed = figure("1: 4 KB", "end-to-end rate, nats-server default fsync (not durable)", "msg/s", "higher");
  await eachRun("fsync", ["mxwarden"], async (server, dir) => {
    const result = await throughput(dir, (options) => MxwardenBackupMx.start({ ...options, syncAlways: false }), MESSAGES, 4096);
    record(relaxed, server, result.endToEndPerSecond);
  });
}

if (SCENARIOS.has("2")) {
  const accept = figure("2: 100 KB", "accept rate", "msg/s", "higher");
  const endToEnd = figure("2: 100 KB", "end-to-end rate", "msg/s", "higher");
  tracked.endToEnd100k = endToEnd;
  const cpu = figure("2: 100 KB", "CPU per message", "ms", "lower");
  await eachRun("s2", SERVERS_RUN, async (server, dir) => {
    const result = await throughput(dir, startAs(server), MESSAGES, 100 * 1024);
    record(accept, server, result.acceptPerSecond);
    record(endToEnd, server, result.endToEndPerSecond);
    record(cpu, server, result.cpuMsPerMessage);
  });
}

if (SCENARIOS.has("3")) {
  const drainTime = figure("3: primary down, then up", "drain time", "s", "lower");
  const drainRate = figure("3: primary down, then up", "drain rate", "msg/s", "higher");
  const cpu = figure("3: primary down, then up", "CPU per message, accepted to drained", "ms", "lower");
  tracked.drainRate = drainRate;
  await eachRun("s3", SERVERS_RUN, async (server, dir, repeat) => {
    const result = await drain(dir, startAs(server), MESSAGES, SETTLE_MS, DRAIN_WAIT_MS);
    record(drainTime, server, result.drainSeconds);
    record(drainRate, server, result.drainPerSecond);
    record(cpu, server, result.cpuMsPerMessage);
    if (result.unfinished > 0) {
      notes.push(
        `Scenario 3, ${server} run ${repeat}: ${result.unfinished} of ${MESSAGES} messages were still queued ${DRAIN_WAIT_MS / 1000} s after the primary came back (drain time: unfinished, no rate).`,
      );
    }
  });
}

if (SCENARIOS.has("4")) {
  if (!Number.isFinite(offeredRate)) offeredRate = 100;
  const messages = Math.min(MESSAGES, Math.max(200, Math.round(offeredRate * 20)));
  const p50 = figure(`4: ${offeredRate.toFixed(0)} msg/s offered`, "end of DATA → 250, p50", "ms", "lower");
  const p99 = figure(`4: ${offeredRate.toFixed(0)} msg/s offered`, "end of DATA → 250, p99", "ms", "lower");
  tracked.p99 = p99;
  let refused = 0;
  await eachRun("s4", SERVERS_RUN, async (server, dir) => {
    const result = await latency(dir, startAs(server), messages, offeredRate);
    record(p50, server, result.p50Ms);
    record(p99, server, result.p99Ms);
    refused += result.notAccepted;
  });
  notes.push(
    `Scenario 4 offers ${messages} messages at ${offeredRate.toFixed(0)} msg/s (half the lowest accept rate of scenario 1) to every server; ${refused} were not answered 250.`,
  );

  // The target is set at half the server's own maximum: each server is offered half its own rate.
  if (Object.keys(ownHalfRates).length > 0) {
    const ownP99 = figure("4b: half its own maximum", "end of DATA → 250, p99", "ms", "lower");
    tracked.p99 = ownP99;
    const offered: string[] = [];
    let ownRefused = 0;
    await eachRun("s4b", SERVERS_RUN, async (server, dir, repeat) => {
      const rate = ownHalfRates[server];
      if (rate === undefined || !Number.isFinite(rate)) return;
      const count = Math.min(MESSAGES, Math.max(200, Math.round(rate * 20)));
      if (repeat === 1) offered.push(`${server} ${count} at ${rate.toFixed(0)} msg/s`);
      const result = await latency(dir, startAs(server), count, rate);
      record(ownP99, server, result.p99Ms);
      ownRefused += result.notAccepted;
    });
    notes.push(`Scenario 4b offers each server half its own accept rate of scenario 1: ${offered.join(", ")}; ${ownRefused} were not answered 250.`);
  }
}

if (SCENARIOS.has("5")) {
  const rss = figure("5b: one 50 MB message", "peak RSS of the receiving process", "MiB", "lower");
  tracked.rssBig = rss;
  // Postfix receives in short-lived smtpd and cleanup processes that stream to the queue file: nothing comparable to measure.
  await eachRun(
    "s5",
    SERVERS_RUN.filter((server) => server !== "Postfix"),
    async (server, dir) => {
      record(rss, server, await bigMessageRss(dir, startAs(server), BIG_MESSAGE));
    },
  );
}

if (SCENARIOS.has("6") && FILTERING_RUN.length > 0) {
  const messages = Math.min(MESSAGES, 2000);
  const scenario = `6: all filters, ${messages} × 4 KB`;
  const accept = figure(scenario, "accept rate", "msg/s", "higher");
  const endToEnd = figure(scenario, "end-to-end rate", "msg/s", "higher");
  const cpu = figure(scenario, "CPU per message, clamd and rspamd included", "ms", "lower");
  const engineCpu = figure(scenario, "of which clamd and rspamd", "ms", "lower");
  tracked.filtered = endToEnd;
  const filterMeans: Record<string, number[]> = {};
  await eachRun("s6", FILTERING_RUN, async (server, dir) => {
    const result = await filteredThroughput(dir, server, messages);
    record(accept, server, result.acceptPerSecond);
    record(endToEnd, server, result.endToEndPerSecond);
    record(cpu, server, result.cpuMsPerMessage);
    record(engineCpu, server, result.engineCpuMsPerMessage);
    for (const [filter, ms] of Object.entries(result.filterMeanMs)) (filterMeans[filter] ??= []).push(ms);
  });
  const perFilter = Object.entries(filterMeans).map(([filter, runs]) => `${filter} ${median(runs).toFixed(1)} ms`);
  if (perFilter.length > 0) notes.push(`Scenario 6, mxwarden: mean time a message spends in each filter (median of runs): ${perFilter.join(", ")}.`);
}

if (SCENARIOS.has("7")) {
  for (const senders of SENDERS) {
    const scenario = `7: new connection per message, ${senders} senders`;
    const accept = figure(scenario, "accept rate", "msg/s", "higher");
    const endToEnd = figure(scenario, "end-to-end rate", "msg/s", "higher");
    const cpu = figure(scenario, "CPU per message", "ms", "lower");
    trackedPerConnection.set(senders, endToEnd);
    await eachRun(`s7-${senders}`, SERVERS_RUN, async (server, dir) => {
      const result = await connectionPerMessage(dir, server, MESSAGES, senders);
      record(accept, server, result.acceptPerSecond);
      record(endToEnd, server, result.endToEndPerSecond);
      record(cpu, server, result.cpuMsPerMessage);
    });
  }
}

/** Scenario 8's figures, compared with mxwarden's own scenario 1 in the notes. */
let twoSites: { endToEnd: Figure; cpu: Figure } | undefined;
if (SCENARIOS.has("8") && SERVERS_RUN.includes("mxwarden")) {
  const scenario = "8: 4 KB, two sites";
  const accept = figure(scenario, "accept rate", "msg/s", "higher");
  const endToEnd = figure(scenario, "end-to-end rate", "msg/s", "higher");
  const cpu = figure(scenario, "CPU per message, both sites", "ms", "lower");
  const rss = figure(scenario, "peak RSS of site A's relay", "MiB", "lower");
  twoSites = { endToEnd, cpu };
  await eachRun("s8", ["mxwarden"], async (server, dir) => {
    const result = await twoSiteThroughput(dir, MESSAGES);
    record(accept, server, result.acceptPerSecond);
    record(endToEnd, server, result.endToEndPerSecond);
    record(cpu, server, result.cpuMsPerMessage);
    record(rss, server, result.peakRssMiB);
  });
}

if (SCENARIOS.has("backlog")) {
  log("backlog: 100,000 deferred jobs");
  const backlog = await measureDeferredBacklog(Number(process.env.BENCH_DEFERRED ?? 100_000));
  notes.push(
    `Deferred backlog (mxwarden's queue layout, no SMTP): ${backlog.deferred} jobs over ${backlog.domains} domains built in ${backlog.buildSeconds.toFixed(1)} s; ` +
      `${backlog.consumerPendingWithBacklog} of them in the delivery consumer; one primary returns: its ${backlog.drainedJobs} held jobs handed out by its drain consumer and acknowledged in ${backlog.drainMs.toFixed(0)} ms; ` +
      `a ready job of another domain reaches a relay in ${backlog.otherDomainReadyMs.toFixed(1)} ms; ` +
      `one read of the queue's subject index (queue age, per-domain gauges, queue report) takes ${backlog.indexReadMs.toFixed(0)} ms for all ${backlog.indexedDomains} domains.`,
  );
}

const mine = (target: Figure | undefined): number => median(target?.runs.mxwarden ?? []);
const versus = (target: Figure | undefined, peer: ServerName): number => mine(target) / median(target?.runs[peer] ?? []);
const verdict = (met: boolean): string => (met ? "met" : "missed");
/** A ratio against the target, or why there is none (a peer failed or did not finish). */
const ratioVerdict = (ratio: number, target: number, better: "higher" | "lower" = "higher"): string =>
  Number.isFinite(ratio) ? `${ratio.toFixed(2)}×, ${verdict(better === "higher" ? ratio >= target : ratio <= target)}` : "no figure to compare";
const targets: string[] = [];
if (tracked.endToEnd) {
  const postfix = versus(tracked.endToEnd, "Postfix");
  const haraka = versus(tracked.endToEnd, "Haraka");
  targets.push(`end-to-end rate (1) ≥ 1.5× Postfix: ${ratioVerdict(postfix, 1.5)}; ≥ 2× Haraka: ${ratioVerdict(haraka, 2)}`);
}
if (tracked.endToEnd100k) {
  targets.push(`end-to-end rate, 100 KB (2) ≥ 1.2× Postfix: ${ratioVerdict(versus(tracked.endToEnd100k, "Postfix"), 1.2)}`);
}
if (tracked.drainRate) {
  const postfix = versus(tracked.drainRate, "Postfix");
  targets.push(`drain (3) ≥ 2× Postfix: ${ratioVerdict(postfix, 2)}`);
}
for (const [senders, endToEnd] of trackedPerConnection) {
  targets.push(`end-to-end rate, a new connection per message, ${senders} senders (7) ≥ 1.5× Postfix: ${ratioVerdict(versus(endToEnd, "Postfix"), 1.5)}`);
}
if (tracked.p99) {
  targets.push(`p99 accept latency (4b) < 50 ms at half the maximum rate: ${mine(tracked.p99).toFixed(1)} ms, ${verdict(mine(tracked.p99) < 50)}`);
  targets.push(`p99 accept latency (4b) ≤ 2× Postfix's: ${ratioVerdict(versus(tracked.p99, "Postfix"), 2, "lower")}`);
}
for (const [label, target] of [
  ["under load (5a)", tracked.rssLoad],
  ["with one 50 MB message (5b)", tracked.rssBig],
] as const) {
  if (target) targets.push(`RSS < 200 MB ${label}: ${mine(target).toFixed(0)} MiB, ${verdict(mine(target) * 2 ** 20 < 200e6)}`);
}
if (tracked.filtered) {
  targets.push(`end-to-end rate with all filters (6) ≥ 1.5× ${FILTERING_POSTFIX}: ${ratioVerdict(versus(tracked.filtered, FILTERING_POSTFIX), 1.5)}`);
}
if (tracked.filtered && tracked.endToEnd) {
  notes.push(
    `With all filters (6), mxwarden's end-to-end rate is ${((100 * mine(tracked.filtered)) / mine(tracked.endToEnd)).toFixed(0)}% of its rate without them (1).`,
  );
}

if (twoSites) {
  // No target: what the second site costs, against one site in the same run.
  const times = (ratio: number): string => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : "no figure");
  notes.push(
    tracked.endToEnd && tracked.cpu
      ? `two sites (8): end to end ${times(mine(twoSites.endToEnd) / mine(tracked.endToEnd))} one site (1), CPU per message ${times(mine(twoSites.cpu) / mine(tracked.cpu))}.`
      : "two sites (8): scenario 1 did not run, so there is no one-site figure to compare with.",
  );
}

const machine = machineDescription();
const heading = `${MESSAGES} messages per run (scenario 6: at most 2,000), ${SESSIONS} sessions (scenario 7: ${SENDERS.join(" and ")} senders), median of ${REPEATS} run${REPEATS === 1 ? "" : "s"}, ${relayProcesses()}${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
console.log(`\n${heading}\n\n${textTable(figures)}\n`);
for (const note of notes) console.log(note);
if (targets.length > 0) console.log(`\nTargets (issues 5 and 19), mxwarden:\n${targets.map((t) => `  ${t}`).join("\n")}`);
console.log(`\n${machine.join("\n")}`);

if (MARKDOWN) {
  const results = [
    "<!-- results:start (written by `make bench`) -->",
    `${heading}.`,
    "",
    markdownTable(figures),
    "",
    ...notes.flatMap((note) => [note, ""]),
    ...(targets.length > 0 ? ["Targets (issues 5 and 19), mxwarden:", "", ...targets.map((t) => `- ${t}`), ""] : []),
    "Machine:",
    "",
    ...machine.map((line) => `- ${line}`),
    "<!-- results:end -->",
  ].join("\n");
  const current = existsSync(MARKDOWN) ? readFileSync(MARKDOWN, "utf8") : "# Benchmarks\n\n<!-- results:start --><!-- results:end -->\n";
  const updated = current.replace(/<!-- results:start[\s\S]*?<!-- results:end -->/, () => results);
  writeFileSync(MARKDOWN, updated);
  console.log(`\nwritten to ${MARKDOWN}`);
}
