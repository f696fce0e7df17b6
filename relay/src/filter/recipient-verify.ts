// Recipient verification (recipients.mode: verify), the defence against backscatter for domains
// whose user list we do not have: unknown recipients are refused at RCPT, as the primary would.
// Answers come from a callout to the primary and are cached in NATS KV for every relay, so that
// the primary sees few callouts and, while it is down, the cache still decides. Callouts are
// rate-limited per domain, so the relay cannot be used to hammer the primary or harvest addresses
// faster than its cache fills.

import { createHash } from "node:crypto";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { NextHopResolver } from "../deliver/next-hop.ts";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "../queue/index.ts";
import { rcptCallout, type CalloutResult } from "./callout.ts";
import { recipientsPolicy } from "#api";
import { CALLOUT_TIMEOUT_MS } from "../deliver/delivery-timing.ts";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";
import { SharedBucket, type SiteTopology } from "./shared-bucket.ts";

export const RECIPIENT_CACHE_BUCKET = "mxw-recipients";
const BUCKET_MAX_AGE_MS = 31 * 86_400_000;
const EXISTS = "1";
const UNKNOWN = "0";

/** A token bucket per domain: `rate` callouts per second, bursts up to `burst`. */
class CalloutBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly rate: number;
  private readonly burst: number;

  constructor(rate: number, burst: number) {
    this.rate = rate;
    this.burst = burst;
  }

  take(domain: string, now = Date.now()): boolean {
    const bucket = this.buckets.get(domain) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rate);
    bucket.at = now;
    this.buckets.set(domain, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

export interface RecipientVerifyOptions {
  hostname: string;
  calloutTimeoutMs: number;
  replicas: number;
  /** Share the cache with the other sites (--site/--peer-sites). */
  sites?: SiteTopology | undefined;
  /** Callouts per second and burst, per domain and relay. */
  calloutRate: number;
  calloutBurst: number;
}

export class RecipientVerifyFilter implements RecipientFilter {
  readonly name = "recipient_verify";
  readonly stage = "rcpt" as const;
  private readonly cache: SharedBucket;
  private readonly budget: CalloutBudget;
  private readonly options: RecipientVerifyOptions;
  private readonly routes: NextHopResolver;
  private readonly policyFor: (domain: string) => DomainPolicy | undefined;
  private readonly log: Logger;

  constructor(
    options: RecipientVerifyOptions,
    queue: QueueConnection,
    routes: NextHopResolver,
    policyFor: (domain: string) => DomainPolicy | undefined,
    log: Logger,
  ) {
    this.options = options;
    this.cache = new SharedBucket(queue, RECIPIENT_CACHE_BUCKET, options.replicas, BUCKET_MAX_AGE_MS, options.sites);
    this.routes = routes;
    this.policyFor = policyFor;
    this.budget = new CalloutBudget(options.calloutRate, options.calloutBurst);
    this.log = log.child({ component: "recipient-verify" });
  }

  async check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    const policy = this.policyFor(rcpt.domain);
    if (policy?.recipients.mode !== "verify") return { action: "continue" };
    const verify = policy.recipients.verify;
    const cacheKey = `r.${createHash("sha256").update(rcpt.recipient.toLowerCase()).digest("hex").slice(0, 40)}`;
    const cached = await this.cache.get(cacheKey).catch(() => null);
    if (cached && cached.operation === "PUT") return this.answer(cached.string() === EXISTS ? "exists" : "unknown");

    let result: CalloutResult = { answer: "unavailable", detail: "callout budget for this domain used up" };
    if (this.budget.take(rcpt.domain)) result = await this.callout(policy, rcpt.recipient);
    if (result.answer === "unavailable") {
      this.log.info("recipient could not be verified", { recipient: rcpt.recipient, detail: result.detail });
      if (verify.whenUnavailable === "accept") return { action: "continue" };
      return {
        action: "tempfail",
        reason: `verification unavailable: ${result.detail}`,
        reply: { code: 451, enhanced: "4.4.3", text: "Recipient verification unavailable, try again later" },
      };
    }
    const ttlMs = result.answer === "exists" ? verify.positiveTtlMs : verify.negativeTtlMs;
    // An expired answer leaves a delete marker; purge makes room for the fresh one and its TTL.
    await this.cache.purge(cacheKey).catch(() => undefined);
    await this.cache
      .create(cacheKey, result.answer === "exists" ? EXISTS : UNKNOWN, `${Math.ceil(ttlMs / 1000)}s`)
      .catch((err: unknown) => this.log.debug("could not cache a callout answer", { error: err }));
    return this.answer(result.answer);
  }

  private answer(answer: "exists" | "unknown"): Verdict {
    if (answer === "exists") return { action: "continue" };
    return {
      action: "reject",
      reason: "unknown recipient (verified with the primary)",
      reply: { code: 550, enhanced: "5.1.1", text: "Recipient address rejected: user unknown" },
    };
  }

  private async callout(policy: DomainPolicy, recipient: string): Promise<CalloutResult> {
    let hops;
    try {
      hops = (await this.routes.forDomain(policy)).hops;
    } catch (err) {
      return { answer: "unavailable", detail: err instanceof Error ? err.message : String(err) };
    }
    let last: CalloutResult = { answer: "unavailable", detail: "no next hop" };
    for (const hop of hops) {
      last = await rcptCallout(hop, this.options.hostname, recipient, this.options.calloutTimeoutMs);
      if (last.answer !== "unavailable") return last;
    }
    return last;
  }
}

export const recipientVerifyFilter: FilterModule = {
  name: "recipient_verify",
  stage: "rcpt",
  spec: { field: "recipients", schema: recipientsPolicy },
  create: ({ config, queue, nextHops, policyFor, log }) =>
    new RecipientVerifyFilter(
      {
        hostname: config.hostname,
        calloutTimeoutMs: CALLOUT_TIMEOUT_MS,
        replicas: config.replicas,
        calloutRate: 5,
        calloutBurst: 20,
        sites: config.sites,
      },
      queue,
      nextHops,
      policyFor,
      log,
    ),
};
