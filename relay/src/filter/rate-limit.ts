// Rate limits at RCPT: recipients per window per client address, per sender domain and per
// recipient domain, counted in a NATS KV bucket that every relay of the site shares, so that a
// sender cannot multiply its allowance by spreading over relays. Fixed windows, one counter key
// per window; an exceeded limit is a 451, so well-behaved senders retry later.

import { createHash } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import type { RateLimit, RateLimitPolicy } from "../config/relay-domain.ts";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "../queue/queue-connection.ts";
import type { RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";

export const RATE_LIMIT_BUCKET = "mxw-ratelimit";
/** Longer than the longest window (1 day): counters of old windows age out with the bucket. */
const BUCKET_MAX_AGE_MS = 25 * 3_600_000;

export class RateLimitFilter implements RecipientFilter {
  readonly name = "rate_limit";
  readonly stage = "rcpt" as const;
  private kv: Promise<KV> | undefined;
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
          action: "tempfail", reason: `${kind} rate limit (${limit.count} per ${limit.windowMs / 1000}s)`,
          reply: { code: 451, enhanced: "4.7.0", text: "Rate limit exceeded, try again later" },
        };
      }
    }
    return { action: "continue" };
  }

  /** This recipient's number in the current window (1 for the first); 0 when the store is unavailable. */
  private async count(kind: string, subject: string, limit: RateLimit): Promise<number> {
    const window = Math.floor(Date.now() / limit.windowMs);
    const key = `${kind}.${createHash("sha256").update(subject).digest("hex").slice(0, 32)}.${window}`;
    try {
      const kv = await this.bucket();
      for (let attempt = 0; attempt < 10; attempt++) {
        const entry = await kv.get(key);
        try {
          if (!entry || entry.operation !== "PUT") {
            await kv.create(key, "1", `${Math.ceil(limit.windowMs / 1000)}s`);
            return 1;
          }
          const next = Number(entry.string()) + 1;
          await kv.update(key, String(next), entry.revision);
          return next;
        } catch {
          // Another relay counted at the same moment: read again.
        }
      }
      throw new Error("counter too contended");
    } catch (err) {
      // Rate limits protect against floods; without their store they step aside rather than refuse mail.
      this.kv = undefined;
      this.log.warn("rate limit store unavailable; not counting", { error: err });
      return 0;
    }
  }

  private bucket(): Promise<KV> {
    this.kv ??= (async () => {
      const { js } = this.queue.get();
      return new Kvm(js).create(RATE_LIMIT_BUCKET, { history: 1, replicas: this.replicas, ttl: BUCKET_MAX_AGE_MS, markerTTL: 60_000 });
    })();
    return this.kv;
  }
}
