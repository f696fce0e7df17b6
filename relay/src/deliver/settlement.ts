// What to do with a job once its next hop has answered for each recipient, decided without doing
// any of it: the delivery worker carries the plan out (queue writes, metrics, logs). A delivery
// can end all three ways at once: some recipients accepted, some refused (a bounce), some to try
// again (the job is deferred for them); the job is finished only when none is left to try.

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
  next: SettlementNext;
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
    next:
      temporary.length === 0
        ? { kind: "finish" }
        : {
            kind: "defer",
            job: {
              ...job,
              recipients: temporary.map((t) => t.recipient),
              attempts: job.attempts + 1,
              lastError: temporary[0]?.reply,
              lastRemoteMta: remoteMta ?? job.lastRemoteMta,
            },
            destinationDown: input.destinationDown,
            failedAt: now,
          },
  };
}
