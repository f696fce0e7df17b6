// The delays and timeouts that delivery (and the filters that talk to other servers while a client
// waits) depend on. Several of them must agree with one another: a held job is delivered in place
// only if its whole delivery, the wait for the reply to the final dot and the settling writes
// included, fits before its retry schedule fires. They live together so that such a pair is
// changed together, and test/unit/delivery-timing.test.ts fails when one of them no longer fits.
// The retry backoff itself is per domain (spec.queue.retry), applied in retry-policy.ts.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;

// Outbound SMTP (smtp-client.ts, pooled by outbound-smtp.ts).

/**
 * TCP connect, the 220 greeting and the TLS handshake to a next hop, each. A dead host should cost
 * a delivery slot seconds, not minutes: the destination is then marked down and probed instead.
 */
export const OUTBOUND_CONNECT_TIMEOUT_MS = 15 * SECOND;

/**
 * The longest silence from a next hop once connected, the wait for the reply to the final dot
 * included. FINISH_MARGIN_MS is built on it: lengthen this, and the margin must grow with it, so
 * that fewer held jobs are far enough from their schedule to be delivered in place.
 */
export const OUTBOUND_SOCKET_TIMEOUT_MS = 2 * MINUTE;

/**
 * How long a pooled connection waits for the next job to the same hop before it is closed (QUIT):
 * long enough to go from job to job of a burst (a flush of held mail sends thousands), short
 * enough not to hold one of the primary's connection slots for nothing.
 */
export const OUTBOUND_IDLE_TIMEOUT_MS = 10 * SECOND;

/** Per DNS query and name server, tried DNS_TRIES times: the next hop's MX and address lookups, and the filters' DNS checks. */
export const DNS_TIMEOUT_MS = 5 * SECOND;
export const DNS_TRIES = 2;

// Settling a delivery: the queue writes after the primary's answer (delivery-worker.ts).

/**
 * How long a settling write (the purge, the deferred job, the acknowledgement) is repeated while
 * the queue refuses it. A stream leader's election takes a few seconds; failing the write instead
 * would give the job to another delivery and send the primary a message it already has.
 */
export const SETTLE_RETRY_MS = 30 * SECOND;

/** The first pause between repeated settling writes, doubled per attempt up to SETTLE_BACKOFF_MAX_MS. */
export const SETTLE_BACKOFF_INITIAL_MS = 200;
export const SETTLE_BACKOFF_MAX_MS = 2 * SECOND;

/**
 * How often a delivery under way tells JetStream it still works on its job (--ack-wait is the
 * `ackWaitMs`): three times per ack wait, so that one lost signal does not hand the job to
 * another relay; not more than once a second.
 */
export function progressIntervalFor(ackWaitMs: number): number {
  return Math.max(SECOND, Math.floor(ackWaitMs / 3));
}

/**
 * How long a pull from mxw-deliver, or from a domain's held mail (held-mail-flush.ts), waits.
 * Short, so that missed heartbeats are noticed within seconds and delivery resumes soon after the
 * consumer's leader moves to another server (the client's default takes ~30 s).
 */
export const PULL_EXPIRES_MS = 5 * SECOND;

// Held mail: outages and delivering held jobs in place (retry-policy.ts, held-mail-flush.ts).

/**
 * How long before a held job's schedule its in-place delivery must have sent the final dot. After
 * the dot come the wait for the primary's reply (up to OUTBOUND_SOCKET_TIMEOUT_MS) and the settling
 * writes (up to SETTLE_RETRY_MS, plus the write under way), all of which must end before the
 * schedule fires: a schedule that fires first makes a second copy of a delivered message.
 */
export const FINISH_MARGIN_MS = 3 * MINUTE;

/** A held job is delivered in place only when its schedule is this far away; a minute is left for the delivery itself. */
export const IN_PLACE_MIN_MS = FINISH_MARGIN_MS + MINUTE;

/**
 * The least a job waits while its destination is down (Postfix's minimal_backoff_time). The probe
 * flushes the domain's held mail as soon as the destination answers, and a schedule at least
 * IN_PLACE_MIN_MS away lets a job held just before that be delivered in place. Up to a fifth more
 * is added (retry-policy.ts), so that a held backlog does not come due at once when nothing
 * delivered it earlier.
 */
export const OUTAGE_HOLD_MS = 5 * MINUTE;

/**
 * When a maintenance hold ends (maintenance-hold.ts), its jobs become ready over this long rather
 * than in one instant, and a job held twice gets a different schedule each time: its deferred
 * record's message id carries the time, and an id seen in the last two minutes is not stored again.
 */
export const HOLD_RELEASE_SPREAD_MS = 5 * SECOND;

// Bounces (bounce.ts).

/**
 * A bounce is addressed to a sender's domain, not a configured one: it gets the default queue
 * lifetime (spec.queue.lifetime), which the spool is also sized for.
 */
export const BOUNCE_LIFETIME_MS = 5 * DAY;

// Servers the filters ask while the sending client waits for our reply (main.ts wires them).

/** A recipient verification callout (RCPT to the primary), per next hop tried. */
export const CALLOUT_TIMEOUT_MS = 10 * SECOND;

/** A clamd scan of one message, after the final dot. */
export const CLAMD_TIMEOUT_MS = 60 * SECOND;

/** An rspamd check of one message, after the final dot. */
export const RSPAMD_TIMEOUT_MS = 30 * SECOND;
