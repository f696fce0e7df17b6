// The one rule of a maintenance hold's cap (spec.hold.until), shared by the relay, which holds
// each message by it, and the operator, which shows it in the RelayDomain's status.
//
// A hold never outlives the queue lifetime: a message is held at most HOLD_MAX_SHARE_OF_LIFETIME
// of its own lifetime, so that the rest (a day of the default five) is left for delivery before it
// would bounce. The cap is per message, because each message's lifetime starts when it is accepted.

/** The longest share of a message's queue lifetime that a hold may keep it. */
export const HOLD_MAX_SHARE_OF_LIFETIME = 0.8;

/** The longest a hold keeps any one message with this queue lifetime. */
export function maxHoldMs(lifetimeMs: number): number {
  return Math.floor(lifetimeMs * HOLD_MAX_SHARE_OF_LIFETIME);
}

/** When a message accepted at `acceptedAt` with this lifetime is released from a hold until `untilMs` at the latest. */
export function holdEnd(untilMs: number, acceptedAt: number, lifetimeMs: number): number {
  return Math.min(untilMs, acceptedAt + maxHoldMs(lifetimeMs));
}
