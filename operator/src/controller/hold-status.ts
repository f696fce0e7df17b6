// What a RelayDomain's maintenance hold (spec.hold.until) does, as its status shows it: the same
// cap as the relays apply (api/hold.ts), a `Held` condition while the hold lasts, and nothing once
// it has ended or is removed.

import { DEFAULT_QUEUE_LIFETIME, formatDuration, holdEnd, maxHoldMs, parseDuration, type ConditionInput, type RelayDomain, type RelayDomainStatus } from "#api";

export const HELD = "Held";

export interface HoldView {
  status: NonNullable<RelayDomainStatus["hold"]>;
  condition: Omit<ConditionInput, "observedGeneration">;
  /** When the view changes by itself: the cap stops applying to new mail, or the hold ends. */
  changesAtMs: number;
}

/** The hold's status at `now`, or undefined when the domain has no hold in force. */
export function holdView(spec: RelayDomain["spec"], now: number): HoldView | undefined {
  const untilMs = spec.hold?.until === undefined ? Number.NaN : Date.parse(spec.hold.until);
  if (!(now < untilMs)) return undefined;
  const lifetime = spec.queue?.lifetime ?? DEFAULT_QUEUE_LIFETIME;
  const lifetimeMs = parseDuration(lifetime) ?? Number.NaN;
  if (!Number.isFinite(lifetimeMs)) return undefined;
  const maxMs = maxHoldMs(lifetimeMs);
  const maxHold = formatDuration(maxMs);
  const until = new Date(untilMs).toISOString();
  // The relay's rule for mail accepted now: capped when it would be released before until.
  const capped = holdEnd(untilMs, now, lifetimeMs) < untilMs;
  const fullFrom = untilMs - maxMs;
  const status = { until, maxHold, capped };
  if (!capped)
    return {
      status,
      condition: { type: HELD, status: "True", reason: "Holding", message: `mail is queued and nothing is delivered before ${until}` },
      changesAtMs: untilMs,
    };
  return {
    status,
    condition: {
      type: HELD,
      status: "True",
      reason: "HoldCapped",
      message:
        `until is more than ${maxHold} away (four fifths of queue.lifetime ${lifetime}): each message is held at most ${maxHold} after it is accepted, ` +
        `so mail accepted before ${new Date(fullFrom).toISOString()} is released before ${until}; mail accepted from then on is held until ${until}`,
    },
    changesAtMs: fullFrom,
  };
}
