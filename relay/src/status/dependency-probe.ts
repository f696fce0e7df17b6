// Probes the engines the relay depends on (NATS, clamd, rspamd) on a timer and publishes whether
// each answers and how long it took. Filters only learn about an engine when a message needs it;
// an alert must know before the first message of the morning gets a 451.

import { connect } from "node:net";
import { request } from "node:http";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueueConnection } from "../queue/index.ts";
import { startPeriodic } from "./periodic.ts";

export type Dependency = "nats" | "clamd" | "rspamd";

export interface DependencyTargets {
  queue: QueueConnection;
  clamd?: { host: string; port: number } | undefined;
  rspamd?: URL | undefined;
}

/** clamd's PING command, null-terminated form; a healthy clamd answers PONG. */
function pingClamd(target: { host: string; port: number }, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, timeout: timeoutMs });
    let reply = "";
    socket.once("connect", () => socket.write("zPING\0"));
    socket.on("data", (data: Buffer) => {
      reply += data.toString("latin1");
    });
    socket.once("timeout", () => socket.destroy(new Error(`clamd did not answer within ${timeoutMs} ms`)));
    socket.once("error", reject);
    socket.once("close", () => (reply.startsWith("PONG") ? resolve() : reject(new Error(`clamd answered "${reply.slice(0, 40)}"`))));
  });
}

/** rspamd's /ping on the same worker the filter talks to. */
function pingRspamd(url: URL, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(new URL("/ping", url), { timeout: timeoutMs }, (res) => {
      res.resume();
      res.once("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`rspamd answered HTTP ${res.statusCode ?? "?"}`))));
    });
    req.once("timeout", () => req.destroy(new Error(`rspamd did not answer within ${timeoutMs} ms`)));
    req.once("error", reject);
    req.end();
  });
}

export function startDependencyProbe(targets: DependencyTargets, metrics: RelayMetrics, log: Logger, intervalMs: number, timeoutMs = 5000): () => void {
  const checks: Array<[Dependency, () => Promise<void>]> = [
    // A round trip to the server, not just the client's state: a half-open TCP connection looks connected.
    [
      "nats",
      async () => {
        await targets.queue.get().nc.rtt();
      },
    ],
  ];
  const { clamd, rspamd } = targets;
  if (clamd) checks.push(["clamd", () => pingClamd(clamd, timeoutMs)]);
  if (rspamd) checks.push(["rspamd", () => pingRspamd(rspamd, timeoutMs)]);
  const wasUp = new Map<Dependency, boolean>();
  const probe = async (): Promise<void> => {
    await Promise.all(
      checks.map(async ([dependency, check]) => {
        const started = performance.now();
        let up = true;
        try {
          await check();
        } catch (err) {
          up = false;
          if (wasUp.get(dependency) !== false) log.warn("dependency not answering", { dependency, error: err });
        }
        if (up && wasUp.get(dependency) === false) log.info("dependency answering again", { dependency });
        wasUp.set(dependency, up);
        metrics.dependencyUp.set({ dependency }, up ? 1 : 0);
        metrics.dependencyCheckDuration.observe({ dependency }, (performance.now() - started) / 1000);
      }),
    );
  };
  // Each check catches its own failure; an error here would be a bug in the bookkeeping above.
  return startPeriodic(intervalMs, probe, (err) => log.error("dependency probe failed", { error: err })).stop;
}
