import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { OUTAGE_HOLD_MS } from "../../relay/src/deliver/delivery-timing.ts";
import { nextRetryAt, retryAt } from "../../relay/src/deliver/retry-policy.ts";

const retry = { initialBackoffMs: 60_000, maxBackoffMs: 3_600_000 };
const now = 1_700_000_000_000;
const far = now + 30 * 86_400_000;
/** random() === 0.5 gives a factor of exactly 1: no jitter. */
const middle = (): number => 0.5;

describe("nextRetryAt", () => {
  it("starts at the initial backoff and doubles per attempt", () => {
    const delays = [1, 2, 3, 4, 5, 6].map((attempts) => nextRetryAt(attempts, retry, now, far, middle) - now);
    assert.deepEqual(delays, [60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000]);
  });

  it("treats attempt 0 (and negative) like the first", () => {
    assert.equal(nextRetryAt(0, retry, now, far, middle), now + 60_000);
    assert.equal(nextRetryAt(-3, retry, now, far, middle), now + 60_000);
  });

  it("caps the backoff at maxBackoff", () => {
    assert.equal(nextRetryAt(7, retry, now, far, middle), now + 3_600_000);
    assert.equal(nextRetryAt(8, retry, now, far, middle), now + 3_600_000);
    assert.equal(nextRetryAt(50, retry, now, far, middle), now + 3_600_000);
  });

  it("stays finite and capped for absurd attempt counts", () => {
    const at = nextRetryAt(1_000_000, { initialBackoffMs: 1, maxBackoffMs: 86_400_000 }, now, far, middle);
    assert.ok(Number.isFinite(at));
    assert.equal(at, now + 86_400_000);
  });

  it("jitter: random() = 0 gives -10%", () => {
    assert.equal(
      nextRetryAt(1, retry, now, far, () => 0),
      now + 54_000,
    );
    assert.equal(
      nextRetryAt(20, retry, now, far, () => 0),
      now + 3_240_000,
    );
  });

  it("jitter: random() approaching 1 approaches +10% without reaching it", () => {
    // random() returns [0, 1); 1 itself is the supremum and gives exactly +10%.
    assert.equal(
      nextRetryAt(1, retry, now, far, () => 1),
      now + 66_000,
    );
    assert.equal(
      nextRetryAt(1, retry, 0, far, () => 0.999),
      65_988,
    );
    const almostOne = 1 - Number.EPSILON;
    assert.ok(nextRetryAt(1, retry, now, far, () => almostOne) - now <= 66_000);
    assert.equal(
      nextRetryAt(20, retry, now, far, () => 1),
      now + 3_960_000,
    );
  });

  it("jitter stays within ±10% of the base for many draws, and uses random()", () => {
    let calls = 0;
    let seed = 42;
    const random = (): number => {
      calls++;
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const seen = new Set<number>();
    for (let attempts = 1; attempts <= 12; attempts++) {
      const base = Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** (attempts - 1));
      for (let i = 0; i < 200; i++) {
        const delay = nextRetryAt(attempts, retry, now, far, random) - now;
        assert.ok(delay >= base * 0.9 && delay < base * 1.1, `attempt ${attempts}: ${delay} outside ±10% of ${base}`);
        seen.add(delay);
      }
    }
    assert.equal(calls, 12 * 200);
    assert.ok(seen.size > 1000, "delays are actually spread");
  });

  it("uses Math.random by default and stays within bounds", () => {
    for (let i = 0; i < 100; i++) {
      const delay = nextRetryAt(2, retry, now, far) - now;
      assert.ok(delay >= 108_000 && delay < 132_000, `delay ${delay}`);
    }
  });

  it("never schedules after expiresAt", () => {
    const expiresAt = now + 100_000;
    assert.equal(nextRetryAt(2, retry, now, expiresAt, middle), expiresAt, "120s backoff pulled in to expiry");
    assert.equal(
      nextRetryAt(1, retry, now, expiresAt, () => 1),
      now + 66_000,
      "before expiry it is left alone",
    );
    assert.equal(
      nextRetryAt(1, retry, now, now + 60_000, () => 1),
      now + 60_000,
    );
    for (let attempts = 1; attempts <= 20; attempts++) {
      for (const r of [0, 0.25, 0.5, 0.75, 0.999]) {
        assert.ok(nextRetryAt(attempts, retry, now, expiresAt, () => r) <= expiresAt);
      }
    }
  });

  it("already expired: returns expiresAt (retry now, then bounce)", () => {
    const expiresAt = now - 1000;
    assert.equal(nextRetryAt(3, retry, now, expiresAt, middle), expiresAt);
  });
});

describe("retryAt", () => {
  it("is the backoff while the destination answers", () => {
    assert.equal(retryAt(1, retry, now, far, false, middle), now + 60_000);
  });

  it("waits at least OUTAGE_HOLD_MS, with up to a fifth more, while the destination is down", () => {
    assert.equal(
      retryAt(1, retry, now, far, true, () => 0),
      now + OUTAGE_HOLD_MS,
    );
    assert.equal(
      retryAt(1, retry, now, far, true, () => 1),
      now + OUTAGE_HOLD_MS * 1.2,
    );
    assert.equal(retryAt(7, retry, now, far, true, middle), now + 3_600_000, "a longer backoff stays");
  });

  it("never holds a job past its expiry", () => {
    assert.equal(retryAt(1, retry, now, now + 90_000, true, middle), now + 90_000);
  });
});
