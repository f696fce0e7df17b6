// When to try again after a temporary failure: exponential backoff from the domain's initial
// delay, doubling per attempt up to its maximum, with ±10% jitter so that a backlog that failed
// together does not retry together. The last retry is pulled in to the expiry time, so a
// message is bounced at the end of its queue lifetime, not up to one backoff later.

import type { DomainPolicy } from "../config/relay-domain.ts";
import { OUTAGE_HOLD_MS } from "./delivery-timing.ts";

export function nextRetryAt(attempts: number, retry: DomainPolicy["retry"], now: number, expiresAt: number, random = Math.random): number {
  const exponent = Math.max(0, attempts - 1);
  const base = Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** Math.min(exponent, 30));
  const jittered = base * (0.9 + 0.2 * random());
  return Math.min(now + jittered, expiresAt);
}

/** When to try a job again: its backoff, and while its destination is down at least OUTAGE_HOLD_MS (delivery-timing.ts). */
export function retryAt(
  attempts: number,
  retry: DomainPolicy["retry"],
  now: number,
  expiresAt: number,
  destinationDown: boolean,
  random = Math.random,
): number {
  const backoff = nextRetryAt(attempts, retry, now, expiresAt, random);
  if (!destinationDown) return backoff;
  return Math.min(expiresAt, Math.max(backoff, now + OUTAGE_HOLD_MS * (1 + 0.2 * random())));
}
