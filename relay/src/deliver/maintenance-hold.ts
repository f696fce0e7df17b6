// Maintenance holds (spec.hold.until): mail for the domain is accepted and queued as usual, but
// the delivery worker sends nothing before the hold ends. A job picked up during the hold is put
// back, unchanged and without an attempt counted, under a schedule for the hold's end; at that
// moment the schedules make every held job ready at once, and delivery goes on as after an outage.
//
// A hold never outlives the queue lifetime: a message is held at most HOLD_MAX_SHARE_OF_LIFETIME
// of its own lifetime (the rule is api/hold.ts, which the operator shows in the RelayDomain's
// status). The cap is per message because each message's lifetime starts when it is accepted; the
// relay logs it when a hold reaches past it for mail accepted now.
//
// Removing the hold, or moving `until` earlier, must not leave jobs waiting for the old end: the
// domain's held mail is flushed (held-mail-flush.ts) when the new end comes, which re-holds what
// is still before it and delivers the rest. Deleting the RelayDomain ends its hold: its queued mail
// has the deletion grace period to be delivered, and would otherwise be bounced at its end unsent.

import { holdEnd as cappedHoldEnd } from "#api";
import type { DomainTable } from "../config/domain-store.ts";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { DeliveryJob } from "../queue/delivery-job.ts";
import type { Logger } from "../log.ts";
import { HOLD_RELEASE_SPREAD_MS } from "./delivery-timing.ts";

/** When a message accepted at `acceptedAt` with this lifetime is released from `hold` at the latest. */
export function holdEnd(hold: NonNullable<DomainPolicy["hold"]>, acceptedAt: number, lifetimeMs: number): number {
  return cappedHoldEnd(hold.untilMs, acceptedAt, lifetimeMs);
}

/**
 * When the job may be delivered, if it is held now: the hold's end plus up to
 * HOLD_RELEASE_SPREAD_MS. Undefined when the domain has no hold or it has ended for this job.
 */
export function heldUntil(policy: DomainPolicy | undefined, job: DeliveryJob, now: number, random = Math.random): number | undefined {
  if (!policy?.hold || policy.retiring || job.kind !== "relay") return undefined;
  const end = holdEnd(policy.hold, job.acceptedAt, job.expiresAt - job.acceptedAt);
  return now < end ? end + Math.floor(random() * HOLD_RELEASE_SPREAD_MS) : undefined;
}

/** Whether the domain is under a hold at `now` (mail accepted now is held). */
export function isHeld(policy: DomainPolicy | undefined, now: number): boolean {
  return policy?.hold !== undefined && !policy.retiring && now < policy.hold.untilMs;
}

/**
 * Follows the holds of every configured domain from one table to the next: a hold that is lifted
 * or brought forward flushes the domain's held mail when its new end comes; a hold that reaches
 * past the lifetime cap is logged.
 */
export class MaintenanceHolds {
  private readonly ends = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly flush: (domain: string) => void;
  private readonly log: Logger;

  constructor(flush: (domain: string) => void, log: Logger) {
    this.flush = flush;
    this.log = log.child({ component: "maintenance-hold" });
  }

  update(table: DomainTable, now = Date.now()): void {
    const before = new Map(this.ends);
    this.ends.clear();
    for (const policy of table.byDomain.values()) {
      if (!policy.hold || policy.retiring) continue;
      const end = policy.hold.untilMs;
      this.ends.set(policy.domain, end);
      if (before.get(policy.domain) === end) continue;
      const capped = holdEnd(policy.hold, now, policy.queueLifetimeMs);
      if (capped < end) {
        this.log.warn("maintenance hold reaches past the queue lifetime: each message is held at most four fifths of its lifetime", {
          domain: policy.domain,
          until: new Date(end).toISOString(),
          newMailReleasedBy: new Date(capped).toISOString(),
        });
      } else if (end > now) {
        this.log.info("maintenance hold: mail is queued, nothing delivered before until", { domain: policy.domain, until: new Date(end).toISOString() });
      }
    }
    for (const [domain, oldEnd] of before) {
      const newEnd = this.ends.get(domain);
      if (oldEnd <= now || (newEnd !== undefined && newEnd >= oldEnd)) continue;
      this.log.info(newEnd === undefined ? "maintenance hold removed: delivering held mail" : "maintenance hold brought forward", {
        domain,
        ...(newEnd === undefined ? {} : { until: new Date(newEnd).toISOString() }),
      });
      this.flushAt(domain, newEnd ?? now, now);
    }
  }

  /** Flush the domain's held mail at `at` (timers cannot wait longer than 2^31 ms; the queue lifetime cap keeps holds shorter). */
  private flushAt(domain: string, at: number, now: number): void {
    clearTimeout(this.timers.get(domain));
    this.timers.delete(domain);
    if (at <= now) return this.flush(domain);
    const timer = setTimeout(
      () => {
        this.timers.delete(domain);
        this.flush(domain);
      },
      Math.min(at - now, 2 ** 31 - 1),
    );
    timer.unref();
    this.timers.set(domain, timer);
  }

  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
