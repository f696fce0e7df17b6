// One run of one scenario against one server: a fresh server and a fresh primary (smtp-sink) in
// their own scratch directory, the load, the figures, then everything stopped and removed.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { SmtpDialogue } from "../test/harness/smtp-dialogue.ts";
import { CountingSink } from "./counting-sink.ts";
import { treeCpuSeconds } from "./cpu.ts";
import { DNSBL_ZONE, startFilterEngines } from "./filter-engines.ts";
import { quantile, runPacedLoad } from "./latency-client.ts";
import type { BackupMx, BackupMxOptions } from "./servers/backup-mx.ts";
import { HarakaBackupMx } from "./servers/haraka.ts";
import { MxwardenBackupMx } from "./servers/mxwarden.ts";
import { MxwardenTwoSites } from "./servers/mxwarden-two-sites.ts";
import { PostfixBackupMx } from "./servers/postfix.ts";
import { FILTERING_POSTFIX, startFilteringPostfix } from "./servers/postfix-filtering.ts";
import { smtpSource, type ConnectionUse } from "../test/harness/postfix-tools.ts";

/** The servers of every scenario but 6. */
export const SERVERS = ["mxwarden", "Postfix", "Haraka"] as const;
export type PlainServer = (typeof SERVERS)[number];
/** The servers of scenario 6, with every filter: mxwarden and the filtering Postfix. */
export const FILTERING_SERVERS = ["mxwarden", FILTERING_POSTFIX] as const;
export type FilteringServer = (typeof FILTERING_SERVERS)[number];
/** Every server of the report, in the order of its columns. */
export const ALL_SERVERS = [...SERVERS, FILTERING_POSTFIX] as const;
export type ServerName = (typeof ALL_SERVERS)[number];

export const DOMAIN = "example.org";
export const SESSIONS = 20;
const MiB = 2 ** 20;

export function startServer(name: PlainServer, options: BackupMxOptions): Promise<BackupMx> {
  switch (name) {
    case "mxwarden":
      return MxwardenBackupMx.start(options);
    case "Postfix":
      return PostfixBackupMx.start(options);
    case "Haraka":
      return HarakaBackupMx.start(options);
  }
}

/** Runs `body` with a primary and a server started in `dir`; removes `dir` when all went well. */
async function withServer<T>(
  dir: string,
  start: (options: BackupMxOptions) => Promise<BackupMx>,
  body: (server: BackupMx, sink: CountingSink) => Promise<T>,
): Promise<T> {
  mkdirSync(dir, { recursive: true });
  const sink = await CountingSink.start();
  let server: BackupMx | undefined;
  try {
    server = await start({ dir, domain: DOMAIN, primaryPort: sink.port });
    const result = await body(server, sink);
    await server.stop();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
    return result;
  } finally {
    await server?.stop();
    await sink.stop();
  }
}

/** How smtp-source sends: `sessions` in parallel, each keeping its connection or opening one per message. */
export interface Load {
  sessions: number;
  connection: ConnectionUse;
}

const REUSED: Load = { sessions: SESSIONS, connection: "reuse" };

function source(port: number, messages: number, size: number, load: Load = REUSED): Promise<number> {
  return smtpSource({ port, messages, ...load, length: size, from: "bench@client.test", to: `user@${DOMAIN}` });
}

/** How long a run may take at all: generous, a stalled server must still end the bench. */
function deadlineMs(messages: number, size: number): number {
  return 120_000 + messages * (size > 10_000 ? 60 : 20);
}

export interface Throughput {
  acceptPerSecond: number;
  endToEndPerSecond: number;
  /** Peak RSS of the receiving process, MiB (NaN for Postfix: many short-lived processes). */
  peakRssMiB: number;
  /**
   * CPU time of all the server's processes from the start of the load to the last message at the
   * primary (and, at two sites, every shadow copy at the peer), per message.
   */
  cpuMsPerMessage: number;
  /** Of that, the filter engines' (clamd and rspamd; scenario 6 only, else NaN). */
  engineCpuMsPerMessage: number;
}

/** Starts counting the CPU time of some processes (cpu.ts); the result gives milliseconds per message since. */
function cpuMeter(processes: () => number[]): (messages: number) => number {
  const before = treeCpuSeconds(processes());
  return (messages) => ((treeCpuSeconds(processes()) - before) * 1000) / messages;
}

/**
 * Scenarios 1, 2, 6, 7 and 8: smtp-source with 20 sessions, each keeping its connection unless `load`
 * says otherwise; accepted (smtp-source done) and delivered (all at the sink).
 */
export function throughput(
  dir: string,
  start: (options: BackupMxOptions) => Promise<BackupMx>,
  messages: number,
  size: number,
  options: { load?: Load; afterRun?: (server: BackupMx) => Promise<void>; engines?: () => number[] } = {},
): Promise<Throughput> {
  return withServer(dir, start, async (server, sink) => {
    const cpu = cpuMeter(() => server.processes());
    const engineCpu = options.engines ? cpuMeter(options.engines) : () => NaN;
    const started = performance.now();
    const acceptMs = await source(server.port, messages, size, options.load);
    const endToEndMs = await sink.waitFor(messages, started, deadlineMs(messages, size));
    await server.settled?.(messages, deadlineMs(messages, size));
    const cpuMsPerMessage = cpu(messages);
    const engineCpuMsPerMessage = engineCpu(messages);
    await options.afterRun?.(server);
    return {
      acceptPerSecond: messages / (acceptMs / 1000),
      endToEndPerSecond: messages / (endToEndMs / 1000),
      peakRssMiB: server.peakRss() / MiB,
      cpuMsPerMessage,
      engineCpuMsPerMessage,
    };
  });
}

/**
 * Scenario 7: a new connection per message, `senders` at a time, 4 KB messages, as in scenario 1
 * otherwise. Every connection comes from 127.0.0.1 (smtp-source cannot bind another source
 * address), so no server may treat the senders as one client: Postfix exempts mynetworks
 * (127.0.0.0/8 here) from its per-client limits by default, Haraka has none without its limit
 * plugin, and mxwarden's per-client limit is set as high as it goes for this scenario.
 */
export function connectionPerMessage(dir: string, name: PlainServer, messages: number, senders: number): Promise<Throughput> {
  const start = (options: BackupMxOptions): Promise<BackupMx> =>
    name === "mxwarden" ? MxwardenBackupMx.start({ ...options, args: ["--max-connections-per-client", "100000"] }) : startServer(name, options);
  return throughput(dir, start, messages, 4096, { load: { sessions: senders, connection: "per-message" } });
}

/**
 * Scenario 8: scenario 1 with mxwarden at site A of two joined sites, B holding a shadow copy of
 * every message (servers/mxwarden-two-sites.ts); a run whose copies did not all reach B fails.
 */
export function twoSiteThroughput(dir: string, messages: number): Promise<Throughput> {
  return throughput(dir, (options) => MxwardenTwoSites.start(options), messages, 4096);
}

export interface Drain {
  drainSeconds: number;
  drainPerSecond: number;
  /** Messages still not at the primary when the wait ended (then the time is infinite and the rate 0). */
  unfinished: number;
  /** CPU time of all the server's processes, per message, for the whole scenario: accepting, deferring and draining (NaN when unfinished). */
  cpuMsPerMessage: number;
}

/**
 * Scenario 3: the primary is down while `messages` are accepted, the server tries and defers
 * them for `settleMs`, then the primary comes back and the server is told (Postfix: postqueue -f,
 * Haraka: SIGHUP; mxwarden notices through its probe). Drain: primary back to last message in.
 * A server that has not drained within `waitMs` (its next retry may be minutes away) is "unfinished".
 */
export function drain(dir: string, start: (options: BackupMxOptions) => Promise<BackupMx>, messages: number, settleMs: number, waitMs: number): Promise<Drain> {
  return withServer(dir, start, async (server, sink) => {
    await sink.pause();
    const cpu = cpuMeter(() => server.processes());
    await source(server.port, messages, 4096);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    await sink.resume();
    const back = performance.now();
    await server.flush();
    try {
      const drainMs = await sink.waitFor(messages, back, waitMs);
      return { drainSeconds: drainMs / 1000, drainPerSecond: messages / (drainMs / 1000), unfinished: 0, cpuMsPerMessage: cpu(messages) };
    } catch {
      // No rate for a drain that did not end (NaN prints as "–"); the time says "unfinished".
      return { drainSeconds: Infinity, drainPerSecond: NaN, unfinished: messages - sink.received, cpuMsPerMessage: NaN };
    }
  });
}

export interface Latency {
  p50Ms: number;
  p99Ms: number;
  /** Messages not answered 250 (none expected at half the maximum rate). */
  notAccepted: number;
}

/** Scenario 4: end of DATA to 250 at a fixed offered rate, 4 KB messages over 20 sessions. */
export function latency(dir: string, start: (options: BackupMxOptions) => Promise<BackupMx>, messages: number, rate: number): Promise<Latency> {
  return withServer(dir, start, async (server, sink) => {
    const result = await runPacedLoad({ port: server.port, sessions: SESSIONS, messages, rate, size: 4096, recipient: `user@${DOMAIN}` });
    await sink.waitFor(messages - result.notAccepted, performance.now(), deadlineMs(messages, 4096));
    return { p50Ms: quantile(result.latenciesMs, 0.5), p99Ms: quantile(result.latenciesMs, 0.99), notAccepted: result.notAccepted };
  });
}

/** Scenario 5b: peak RSS (MiB) of the receiving process after one message of `bytes`, accepted and delivered. */
export function bigMessageRss(dir: string, start: (options: BackupMxOptions) => Promise<BackupMx>, bytes: number): Promise<number> {
  return withServer(dir, start, async (server, sink) => {
    const line = `${"y".repeat(76)}\r\n`;
    const body = `From: big@client.test\r\nSubject: big\r\n\r\n${line.repeat(Math.ceil(bytes / line.length))}`;
    const { dialogue } = await SmtpDialogue.open(server.port);
    try {
      await dialogue.command("EHLO big.client.test");
      await dialogue.command("MAIL FROM:<big@client.test>");
      await dialogue.command(`RCPT TO:<user@${DOMAIN}>`);
      const reply = await dialogue.data(body);
      if (reply.code !== 250) throw new Error(`${server.name} refused a ${bytes}-byte message: ${reply.code} ${reply.text}`);
      await dialogue.quit();
    } finally {
      dialogue.destroy();
    }
    await sink.waitFor(1, performance.now(), 120_000);
    return server.peakRss() / MiB;
  });
}

/** Scenario 6: a server with clamd and rspamd scanning every message (throughput as in scenario 1). */
export interface FilteredThroughput extends Throughput {
  /** mxwarden: mean time a message spent in each filter (ms), from the relay's filter_duration_seconds. */
  filterMeanMs: Record<string, number>;
}

/**
 * Scenario 6: every filter at the door but greylisting (which defers every first attempt by
 * design), on fresh engines for each run (filter-engines.ts):
 * - mxwarden: clamd, rspamd, SPF/DKIM/DMARC/ARC and a DNS block list through the local DNS server,
 *   HELO checks and rate limits shared through NATS KV;
 * - the filtering Postfix (servers/postfix-filtering.ts): rspamd as a milter, with clamd, SPF,
 *   DKIM, DMARC, ARC and the same DNS list in rspamd, Postfix's HELO checks and anvil's rate limit.
 * clamd and rspamd count as part of the server in its CPU time, and apart in the engines' CPU time;
 * the DNS server, a stand-in for the Internet, does not.
 */
export async function filteredThroughput(
  dir: string,
  name: FilteringServer,
  messages: number,
  /** mxwarden without its rspamd filter, to see what it costs (rspamd-cost.ts). */
  options: { withoutRspamd?: boolean } = {},
): Promise<FilteredThroughput> {
  mkdirSync(dir, { recursive: true });
  const engines = await startFilterEngines(join(dir, "engines"), { milter: name === FILTERING_POSTFIX });
  let filterMeanMs: Record<string, number> = {};
  try {
    const start = (server: BackupMxOptions): Promise<BackupMx> => {
      if (name === FILTERING_POSTFIX) return startFilteringPostfix(server, engines);
      const args = [
        "--clamd",
        `127.0.0.1:${engines.clamd.port}`,
        ...(options.withoutRspamd ? [] : ["--rspamd", engines.rspamdUrl]),
        "--sender-auth",
        "--resolver",
        `127.0.0.1:${engines.dns.port}`,
      ];
      const spec = {
        dnsbl: { zones: [DNSBL_ZONE] },
        rateLimits: { perClient: "1000000/1h" },
        clientChecks: { rejectInvalidHelo: true },
      };
      return MxwardenBackupMx.start({ ...server, args, spec, filterEngines: engines.pids });
    };
    const result = await throughput(join(dir, "server"), start, messages, 4096, {
      engines: engines.pids,
      afterRun: async (server) => {
        if (server instanceof MxwardenBackupMx) filterMeanMs = histogramMeansMs(await server.relay.metricsText(), "mxwarden_filter_duration_seconds", "filter");
      },
    });
    return { ...result, filterMeanMs };
  } finally {
    await engines.stop();
  }
}

/** sum / count of a Prometheus histogram per value of `label`, in milliseconds. */
export function histogramMeansMs(exposition: string, name: string, label: string): Record<string, number> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const match of exposition.matchAll(new RegExp(`^${name}_(sum|count)\\{[^}]*${label}="([^"]*)"[^}]*\\} (\\S+)$`, "gm"))) {
    const [, kind, value = "", sample] = match;
    (kind === "sum" ? sums : counts).set(value, Number(sample));
  }
  const means: Record<string, number> = {};
  for (const [value, sum] of sums) {
    const count = counts.get(value) ?? 0;
    if (count > 0) means[value] = (sum / count) * 1000;
  }
  return means;
}
