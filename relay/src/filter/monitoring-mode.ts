// Monitoring mode (spec.acceptWhen: primaryDown): a backup that takes mail only while the primary
// is down leaves spammers no way around the primary's filters. While the domain's primary answers
// the relays' probes, RCPT gets 450 4.7.1 telling the sender to deliver there; once it stops
// answering, mail is accepted as usual.
//
// Each such domain's primary is probed every --probe-interval (connect, 220 greeting, QUIT: the
// probe of destination-health.ts), whether or not mail is queued. The relays of a site share the
// results in a KV bucket, so that one relay probes a primary per interval, not every relay: a relay
// whose round finds the domain's entry older than an interval claims the next probe by rewriting
// the entry with its own time (a compare-and-set on the entry's revision, which only one relay
// wins), keeping the last verdict meanwhile, and writes again only when the verdict changed. The
// bucket is kept in memory: the results are worth a few intervals, and a lost one is probed again.
//
// The filter fails open: with no verdict younger than STALE_INTERVALS probe intervals (the bucket
// unreachable, or no relay probing), mail is accepted, as a backup MX without monitoring mode would.

import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { acceptWhenPolicy } from "#api";
import type { DomainPolicy } from "../config/relay-domain.ts";
import { anyHopAnswers, noGreeting } from "../deliver/destination-health.ts";
import type { NextHopResolver } from "../deliver/next-hop.ts";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "../queue/queue-connection.ts";
import { domainToken } from "../queue/layout.ts";
import type { PrimaryReachability } from "../status/primary-reachability.ts";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";

export const PRIMARY_STATUS_BUCKET = "mxw-primary-status";
/** Entries of domains no longer watched go after this. */
const BUCKET_MAX_AGE_MS = 3_600_000;
/** A verdict older than this many probe intervals is not trusted: the filter accepts. */
const STALE_INTERVALS = 3;
/** Probes one relay runs at once. */
const PARALLEL_PROBES = 16;

/** What the bucket holds per domain: the last verdict and when the probe that keeps it current started. */
export interface PrimaryStatus {
  /** The primary answered the last probe; null before the first probe of the domain ended. */
  up: boolean | null;
  checkedAt: number;
  /** The relay that probed (its --hostname). */
  by: string;
}

function parseStatus(entry: KvEntry | null): PrimaryStatus | undefined {
  if (entry === null || entry.operation !== "PUT") return undefined;
  try {
    const value = entry.json<PrimaryStatus>();
    return typeof value.checkedAt === "number" && (value.up === null || typeof value.up === "boolean") ? value : undefined;
  } catch {
    return undefined;
  }
}

export interface PrimaryWatchOptions {
  hostname: string;
  probeIntervalMs: number;
  replicas: number;
}

/** Probes the primaries of the domains in monitoring mode, shares the verdicts and keeps the latest in memory. */
export class PrimaryWatch {
  private readonly verdicts = new Map<string, PrimaryStatus>();
  private bucket: Promise<KV> | undefined;
  private running = false;
  private readonly options: PrimaryWatchOptions;
  private readonly queue: QueueConnection;
  private readonly nextHops: NextHopResolver;
  private readonly policies: () => Iterable<DomainPolicy>;
  private readonly primaries: PrimaryReachability;
  private readonly log: Logger;

  constructor(
    options: PrimaryWatchOptions,
    queue: QueueConnection,
    nextHops: NextHopResolver,
    policies: () => Iterable<DomainPolicy>,
    primaries: PrimaryReachability,
    log: Logger,
  ) {
    this.options = options;
    this.queue = queue;
    this.nextHops = nextHops;
    this.policies = policies;
    this.primaries = primaries;
    this.log = log.child({ component: "monitoring-mode" });
    // Unreferenced: the rounds end with the process, whose shutdown waits for nothing they do.
    setInterval(() => void this.round(), options.probeIntervalMs).unref();
    void queue
      .whenReady()
      .then(() => this.round())
      .catch(() => undefined);
  }

  /** The primary answers probes, by a verdict recent enough to trust. */
  isUp(domain: string, now = Date.now()): boolean {
    const status = this.verdicts.get(domain);
    return status?.up === true && now - status.checkedAt <= STALE_INTERVALS * this.options.probeIntervalMs;
  }

  /** One pass over the watched domains; a pass still under way makes the next one wait. */
  async round(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const watched = [...this.policies()].filter((policy) => policy.acceptWhen === "primaryDown");
      if (watched.length === 0) return;
      const kv = await this.open();
      let next = 0;
      let failed = 0;
      let lastError: unknown;
      const worker = async (): Promise<void> => {
        while (next < watched.length) {
          const policy = watched[next++] as DomainPolicy;
          // Probes do not throw: what fails here is the bucket, logged once per round below.
          await this.check(kv, policy).catch((err: unknown) => {
            failed++;
            lastError = err;
          });
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL_PROBES, watched.length) }, worker));
      if (failed > 0) throw lastError;
    } catch (err) {
      this.bucket = undefined;
      this.log.warn("primary status bucket unavailable; monitoring mode accepts mail until it is back", { error: err });
    } finally {
      this.running = false;
    }
  }

  private async check(kv: KV, policy: DomainPolicy): Promise<void> {
    const key = domainToken(policy.domain);
    const entry = await kv.get(key);
    const shared = parseStatus(entry);
    if (shared) {
      this.verdicts.set(policy.domain, shared);
      // Another relay's verdict: every relay of the site reports the same. Our own came with its error.
      if (shared.by !== this.options.hostname && shared.up === true) this.primaries.reachable(policy.domain);
      else if (shared.by !== this.options.hostname && shared.up === false)
        this.primaries.unreachable(policy.domain, `no 220 greeting to the probe of ${shared.by}`);
    }
    const now = Date.now();
    if (shared && now - shared.checkedAt < this.options.probeIntervalMs) return;
    const claim: PrimaryStatus = { up: shared?.up ?? null, checkedAt: now, by: this.options.hostname };
    try {
      if (entry === null) await kv.create(key, JSON.stringify(claim));
      else await kv.update(key, JSON.stringify(claim), entry.revision);
    } catch {
      // Another relay claimed this probe a moment ago: its verdict arrives with the next round.
      return;
    }
    const probed = await this.probe(policy);
    const result: PrimaryStatus = { up: probed.error === undefined, checkedAt: now, by: this.options.hostname };
    this.verdicts.set(policy.domain, result);
    if (probed.error === undefined) this.primaries.reachable(policy.domain);
    else this.primaries.unreachable(policy.domain, probed.error);
    if (result.up === claim.up) return;
    await kv.put(key, JSON.stringify(result));
    this.log.info(result.up ? "primary answers: monitoring mode refuses mail for now" : "primary does not answer: monitoring mode accepts mail", {
      domain: policy.domain,
    });
  }

  /** Whether a hop of the primary greets; `error` says why not. */
  private async probe(policy: DomainPolicy): Promise<{ error?: string }> {
    try {
      const route = await this.nextHops.forDomain(policy);
      return (await anyHopAnswers(route, this.options.probeIntervalMs)) ? {} : { error: noGreeting(route) };
    } catch (err) {
      this.log.debug("no route to the primary; counted as not answering", { domain: policy.domain, error: err });
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }

  private open(): Promise<KV> {
    this.bucket ??= new Kvm(this.queue.get().js).create(this.queue.layout.siteBucket(PRIMARY_STATUS_BUCKET), {
      history: 1,
      replicas: this.options.replicas,
      ttl: BUCKET_MAX_AGE_MS,
      storage: "memory",
    });
    return this.bucket;
  }
}

export class MonitoringModeFilter implements RecipientFilter {
  readonly name = "monitoring_mode";
  readonly stage = "rcpt" as const;
  private readonly watch: PrimaryWatch;
  private readonly policyFor: (domain: string) => DomainPolicy | undefined;

  constructor(watch: PrimaryWatch, policyFor: (domain: string) => DomainPolicy | undefined) {
    this.watch = watch;
    this.policyFor = policyFor;
  }

  check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    if (this.policyFor(rcpt.domain)?.acceptWhen !== "primaryDown" || !this.watch.isUp(rcpt.domain)) return Promise.resolve({ action: "continue" });
    return Promise.resolve({
      action: "tempfail",
      reason: "monitoring mode: the primary answers",
      reply: { code: 450, enhanced: "4.7.1", text: `This backup MX takes mail for ${rcpt.domain} only while its primary is down; deliver to the primary MX` },
    });
  }
}

export const monitoringModeFilter: FilterModule = {
  name: "monitoring_mode",
  stage: "rcpt",
  spec: { field: "acceptWhen", schema: acceptWhenPolicy },
  create: ({ config, queue, nextHops, policyFor, policies, primaries, log }) =>
    new MonitoringModeFilter(
      new PrimaryWatch(
        { hostname: config.hostname, probeIntervalMs: config.probeIntervalMs, replicas: config.replicas },
        queue,
        nextHops,
        policies,
        primaries,
        log,
      ),
      policyFor,
    ),
};
