// Rate limits at RCPT: recipients per window per client address, per sender domain and per
// recipient domain, counted in JetStream counters (nats-server 2.12+) that every relay of the site
// shares, so that a sender cannot multiply its allowance by spreading over relays. The server adds
// each increment atomically and answers with the new total, so concurrent sessions never retry
// against each other. Fixed windows, one counter subject per window; over the limit is a 451.

import { createHash } from "node:crypto";
import { headers } from "@nats-io/transport-node";
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type StreamConfig } from "@nats-io/jetstream";
import type { RateLimit, RateLimitPolicy } from "../config/relay-domain.ts";
import type { Logger } from "../log.ts";
import { RATE_LIMIT_STREAM, type QueueConnection } from "../queue/index.ts";
import { rateLimitsPolicy } from "#api";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";

/** Longer than the longest window (1 day): counters of old windows age out with the stream. */
const MAX_AGE_MS = 25 * 3_600_000;

export class RateLimitFilter implements RecipientFilter {
  readonly name = "rate_limit";
  readonly stage = "rcpt" as const;
  private ready: Promise<JetStreamClient> | undefined;
  private readonly queue: QueueConnection;
  private readonly replicas: number;
  private readonly policyFor: (domain: string) => RateLimitPolicy | undefined;
  private readonly log: Logger;

  constructor(queue: QueueConnection, replicas: number, policyFor: (domain: string) => RateLimitPolicy | undefined, log: Logger) {
    this.queue = queue;
    this.replicas = replicas;
    this.policyFor = policyFor;
    this.log = log.child({ component: "rate-limit" });
  }

  async check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    const policy = this.policyFor(rcpt.domain);
    if (!policy) return { action: "continue" };
    const senderDomain = rcpt.sender.slice(rcpt.sender.lastIndexOf("@") + 1).toLowerCase() || "<>";
    const checks: Array<[string, RateLimit | undefined, string]> = [
      ["client", policy.perClient, `${rcpt.domain} ${rcpt.clientAddress}`],
      ["sender", policy.perSenderDomain, `${rcpt.domain} ${senderDomain}`],
      ["domain", policy.perDomain, rcpt.domain],
    ];
    for (const [kind, limit, subject] of checks) {
      if (!limit) continue;
      const count = await this.count(kind, subject, limit);
      if (count > limit.count) {
        return {
          action: "tempfail",
          reason: `${kind} rate limit (${limit.count} per ${limit.windowMs / 1000}s)`,
          reply: { code: 451, enhanced: "4.7.0", text: "Rate limit exceeded, try again later" },
        };
      }
    }
    return { action: "continue" };
  }

  /** This recipient's number in the current window (1 for the first); 0 when the store is unavailable. */
  private async count(kind: string, subject: string, limit: RateLimit): Promise<number> {
    const window = Math.floor(Date.now() / limit.windowMs);
    const counter = this.queue.layout.rateCounterSubject(kind, createHash("sha256").update(subject).digest("hex").slice(0, 32), window);
    try {
      const js = await this.stream();
      const increment = headers();
      increment.set("Nats-Incr", "+1");
      // The PubAck of a counter stream carries the new total as "val".
      const ack = (await js.publish(counter, new Uint8Array(), { headers: increment })) as { val?: string };
      return Number(ack.val ?? 0);
    } catch (err) {
      // Rate limits protect against floods; without their store they step aside rather than refuse mail.
      this.ready = undefined;
      this.log.warn("rate limit counters unavailable; not counting", { error: err });
      return 0;
    }
  }

  private stream(): Promise<JetStreamClient> {
    this.ready ??= (async () => {
      const { js, jsm } = this.queue.get();
      const config: Partial<StreamConfig> & { name: string; allow_msg_counter: boolean } = {
        name: RATE_LIMIT_STREAM,
        subjects: [this.queue.layout.rateSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: this.replicas,
        max_age: MAX_AGE_MS * 1_000_000,
        discard: DiscardPolicy.Old,
        allow_msg_counter: true,
      };
      const existing = await jsm.streams.info(RATE_LIMIT_STREAM).catch(() => undefined);
      if (!existing) await jsm.streams.add(config);
      // Counters live a day at most: a site that got its name (--site) simply starts counting on its own subjects.
      else if (JSON.stringify(existing.config.subjects) !== JSON.stringify(config.subjects))
        await jsm.streams.update(RATE_LIMIT_STREAM, { ...existing.config, subjects: config.subjects });
      return js;
    })();
    return this.ready;
  }
}

export const rateLimitFilter: FilterModule = {
  name: "rate_limit",
  stage: "rcpt",
  spec: { field: "rateLimits", schema: rateLimitsPolicy },
  create: ({ config, queue, policyFor, log }) => new RateLimitFilter(queue, config.replicas, (domain) => policyFor(domain)?.rateLimits, log),
};
