// What to do with a job once its next hop has answered for each recipient, decided without doing
// any of it: the delivery worker carries the plan out (queue writes, metrics, logs). A delivery
// can end all three ways at once: some recipients accepted, some refused (a bounce), some to try
// again (the job is deferred for them); the job is finished only when none is left to try. A
// deferral may also owe the sender its one delay warning (spec.queue.delayWarning): planDeferral
// decides that, here for an attempt and in the worker for deferrals made without one.

import type { DeliveryJob } from "../queue/index.ts";
import type { FailedRecipient } from "./dsn.ts";
import type { RecipientOutcome } from "./outbound-smtp.ts";

export interface SettlementInput {
  job: DeliveryJob;
  /** One per recipient of the job, from the next hop's replies. */
  outcomes: readonly RecipientOutcome[];
  /** The hop that answered, when one did. */
  remoteMta: string | undefined;
  /** No hop could be reached: the retry waits for the outage hold (retry-policy.ts). */
  destinationDown: boolean;
  /** The domain's spec.queue.delayWarning in ms; undefined when off. */
  delayWarningMs?: number | undefined;
  now: number;
}

/** The `result` label of mxwarden_delivery_attempts_total. */
export type AttemptResult = "delivered" | "deferred" | "connection_failed" | "bounced";

export type SettlementNext =
  /** Every recipient is settled: drop the body and the job. */
  | { kind: "finish" }
  /** Recipients remain: hold `job` (only those, one attempt more) for its next retry, counted from `failedAt`. */
  | { kind: "defer"; job: DeliveryJob; destinationDown: boolean; failedAt: number };

export interface SettlementPlan {
  attemptResult: AttemptResult;
  /** Recipients the next hop accepted, when there are any. */
  delivered: { recipients: number; reply: string | undefined; remoteMta: string | undefined; latencyMs: number; attempt: number } | undefined;
  /** Recipients the next hop refused for good: one bounce for them, before the job is deferred or finished. */
  bounce: FailedRecipient[] | undefined;
  /** The job defers past its delayWarning: one delayed DSN for the recipients still to do, sent before the deferred job (which records it) is stored. */
  delayWarning: FailedRecipient[] | undefined;
  next: SettlementNext;
}

/**
 * When `job` becomes due its one delay warning (spec.queue.delayWarning), or undefined when it
 * never will: warnings off, the null sender (no DSN goes to <>), a DSN itself, or already sent.
 */
export function delayWarningDueAt(job: DeliveryJob, delayWarningMs: number | undefined): number | undefined {
  if (delayWarningMs === undefined || job.kind !== "relay" || job.sender === "" || job.delayWarnedAt !== undefined) return undefined;
  return job.acceptedAt + delayWarningMs;
}

/** A temporary failure's status for a delayed DSN: the 4.x.x in its reply, else `fallback`. */
export function transientStatus(reply: string | undefined, fallback: string): string {
  const match = /^4\d\d[ -](4\.\d{1,3}\.\d{1,3})(?:\s|$)/.exec(reply ?? "");
  return match?.[1] ?? fallback;
}

export interface Deferral {
  /** The job to store; it records the warning when one is sent now. */
  job: DeliveryJob;
  /** Recipients to name in the delayed DSN, when one is due now. */
  delayWarning: FailedRecipient[] | undefined;
}

/**
 * A job about to be deferred (already updated for the attempt): the delay warning it is due now,
 * if any, and the job marked as warned. `statuses` gives each recipient's 4.x.x from this attempt;
 * a recipient without one gets the status in the job's last error, else `fallbackStatus`.
 */
export function planDeferral(
  job: DeliveryJob,
  delayWarningMs: number | undefined,
  now: number,
  options: { statuses?: ReadonlyMap<string, string>; fallbackStatus?: string; attemptedAt?: number } = {},
): Deferral {
  const due = delayWarningDueAt(job, delayWarningMs);
  if (due === undefined || now < due) return { job, delayWarning: undefined };
  const fallback = transientStatus(job.lastError, options.fallbackStatus ?? "4.0.0");
  return {
    job: { ...job, delayWarnedAt: now },
    delayWarning: job.recipients.map((address) => ({
      address,
      status: options.statuses?.get(address) ?? fallback,
      diagnostic: job.lastError,
      remoteMta: job.lastRemoteMta,
      lastAttempt: options.attemptedAt === undefined ? undefined : new Date(options.attemptedAt),
    })),
  };
}

function attemptResult(delivered: number, temporary: number, permanent: number, remoteMta: string | undefined): AttemptResult {
  if (temporary > 0) return delivered + permanent === 0 && !remoteMta ? "connection_failed" : "deferred";
  return permanent > 0 ? "bounced" : "delivered";
}

export function planSettlement(input: SettlementInput): SettlementPlan {
  const { job, outcomes, remoteMta, now } = input;
  const delivered = outcomes.filter((o) => o.result === "delivered");
  const temporary = outcomes.filter((o) => o.result === "temporary");
  const permanent = outcomes.filter((o) => o.result === "permanent");
  const deferral =
    temporary.length === 0
      ? undefined
      : planDeferral(
          {
            ...job,
            recipients: temporary.map((t) => t.recipient),
            attempts: job.attempts + 1,
            lastError: temporary[0]?.reply,
            lastRemoteMta: remoteMta ?? job.lastRemoteMta,
          },
          input.delayWarningMs,
          now,
          { statuses: new Map(temporary.map((t) => [t.recipient, t.status])), attemptedAt: now },
        );
  return {
    attemptResult: attemptResult(delivered.length, temporary.length, permanent.length, remoteMta),
    delivered:
      delivered.length === 0
        ? undefined
        : {
            recipients: delivered.length,
            reply: delivered[0]?.reply,
            remoteMta,
            latencyMs: now - job.acceptedAt,
            attempt: job.attempts + 1,
          },
    bounce:
      permanent.length === 0
        ? undefined
        : permanent.map((p) => ({
            address: p.recipient,
            status: p.status,
            diagnostic: p.reply,
            remoteMta,
            lastAttempt: new Date(now),
          })),
    delayWarning: deferral?.delayWarning,
    next: deferral === undefined ? { kind: "finish" } : { kind: "defer", job: deferral.job, destinationDown: input.destinationDown, failedAt: now },
  };
}
