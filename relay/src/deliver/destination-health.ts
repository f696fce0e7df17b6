// Which destinations are down right now, as seen by this relay. A domain whose next hops could not
// be reached is marked unreachable: its other jobs are deferred without a connection attempt
// (RFC 5321 §4.5.4.1 asks for a list of unreachable hosts), and a cheap probe (connect, read the
// 220 greeting, QUIT) runs every few seconds. When the probe succeeds the domain's held jobs are
// flushed at once (held-mail-flush.ts), instead of each waiting out its backoff.

import { connect } from "node:net";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { SmtpReplyReader } from "../smtp/index.ts";
import type { PrimaryReachability } from "../status/primary-reachability.ts";
import type { NextHop, Route } from "./next-hop.ts";

interface Outage {
  route: Route;
  since: number;
  timer: NodeJS.Timeout;
  probing: boolean;
}

/** A greeting is short: a server that sends more before its 220 is not one to deliver to. */
const MAX_GREETING_LENGTH = 4096;

/** Whether the hop greets with 220 within `timeoutMs` (a multi-line greeting included). */
export function probeGreeting(hop: NextHop, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: hop.address, port: hop.port });
    const reader = new SmtpReplyReader(MAX_GREETING_LENGTH);
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      if (ok) socket.end("QUIT\r\n");
      else socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding("latin1");
    socket.on("data", (data: string) => {
      reader.push(data);
      try {
        const greeting = reader.next();
        if (greeting) finish(greeting.code === 220);
      } catch {
        // Not an SMTP greeting, or an endless one.
        finish(false);
      }
    });
    socket.on("error", () => finish(false));
    socket.on("close", () => finish(false));
  });
}

/** Whether any hop of the route greets with 220, tried in order, each within a timeout fitted to the probe interval. */
export async function anyHopAnswers(route: Route, probeIntervalMs: number): Promise<boolean> {
  for (const hop of route.hops) {
    if (await probeGreeting(hop, Math.min(10_000, probeIntervalMs * 2))) return true;
  }
  return false;
}

/** What a probe that found no hop answering says, for the queue report. */
export function noGreeting(route: Route): string {
  return `no 220 greeting from ${route.hops.map((h) => `${h.host}:${h.port}`).join(", ")}`;
}

export class DestinationHealth {
  private readonly outages = new Map<string, Outage>();
  private readonly probeIntervalMs: number;
  private readonly onRecovered: (domain: string) => Promise<void>;
  private readonly metrics: RelayMetrics;
  private readonly primaries: PrimaryReachability;
  private readonly log: Logger;

  constructor(probeIntervalMs: number, onRecovered: (domain: string) => Promise<void>, metrics: RelayMetrics, primaries: PrimaryReachability, log: Logger) {
    this.probeIntervalMs = probeIntervalMs;
    this.onRecovered = onRecovered;
    this.metrics = metrics;
    this.primaries = primaries;
    this.log = log.child({ component: "destination-health" });
  }

  isUnreachable(domain: string): boolean {
    return this.outages.has(domain);
  }

  /** No hop of the route answered; `error` is what the last attempt met, for the queue report (absent: the primary did answer, the flush after it failed). */
  markUnreachable(domain: string, route: Route, error?: string): void {
    if (error !== undefined) this.primaries.unreachable(domain, error);
    const existing = this.outages.get(domain);
    if (existing) {
      existing.route = route;
      return;
    }
    const timer = setInterval(() => void this.probe(domain), this.probeIntervalMs);
    timer.unref();
    this.outages.set(domain, { route, since: Date.now(), timer, probing: false });
    this.metrics.deadDestinations.set(this.outages.size);
    this.log.warn("destination unreachable; deferring its mail and probing", { domain, hops: route.hops.map((h) => `${h.host}:${h.port}`) });
  }

  /** A delivery got through: end the outage and flush the domain's held mail. */
  markReachable(domain: string): void {
    this.primaries.reachable(domain);
    if (!this.endOutage(domain)) return;
    this.onRecovered(domain).catch((err: unknown) => {
      this.log.warn("flushing held mail failed; it waits for its retry time", { domain, error: err });
    });
  }

  private endOutage(domain: string): boolean {
    const outage = this.outages.get(domain);
    if (!outage) return false;
    clearInterval(outage.timer);
    this.outages.delete(domain);
    this.primaries.reachable(domain);
    this.metrics.deadDestinations.set(this.outages.size);
    this.log.info("destination reachable again", { domain, downForMs: Date.now() - outage.since });
    return true;
  }

  /**
   * A relay that starts knows of no outage, yet the queue may hold mail deferred by the relays
   * before it: probe each destination once, flush its held mail if it answers, and keep
   * probing it if not. Without this, such mail would wait out its backoff after every restart.
   */
  async recheck(destinations: Array<{ domain: string; route: () => Promise<Route> }>, parallel = 10): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < destinations.length) {
        const destination = destinations[next++];
        if (!destination || this.outages.has(destination.domain)) continue;
        try {
          const route = await destination.route();
          if (await anyHopAnswers(route, this.probeIntervalMs)) {
            this.primaries.reachable(destination.domain);
            await this.onRecovered(destination.domain);
          } else this.markUnreachable(destination.domain, route, noGreeting(route));
        } catch (err) {
          this.log.debug("start-up check of a destination failed", { domain: destination.domain, error: err });
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  }

  stop(): void {
    for (const outage of this.outages.values()) clearInterval(outage.timer);
    this.outages.clear();
  }

  private async probe(domain: string): Promise<void> {
    const outage = this.outages.get(domain);
    if (!outage || outage.probing) return;
    outage.probing = true;
    try {
      if (await anyHopAnswers(outage.route, this.probeIntervalMs)) {
        this.endOutage(domain);
        await this.onRecovered(domain);
      }
    } catch (err) {
      this.log.warn("flushing held mail failed; the probe will retry", { domain, error: err });
      if (!this.outages.has(domain)) this.markUnreachable(domain, outage.route);
    } finally {
      outage.probing = false;
    }
  }
}
