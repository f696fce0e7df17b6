// The relations between the delivery timings (relay/src/deliver/delivery-timing.ts) that keep
// mail from being delivered twice or held longer than it must. Each test names what breaks when
// it fails; the command-line values are the relay's defaults (relay/src/cli.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseRelayArgs } from "../../relay/src/cli.ts";
import { parseRelayDomain } from "../../relay/src/config/relay-domain.ts";
import {
  BOUNCE_LIFETIME_MS,
  CALLOUT_TIMEOUT_MS,
  CLAMD_TIMEOUT_MS,
  DNS_TIMEOUT_MS,
  DNS_TRIES,
  FINISH_MARGIN_MS,
  IN_PLACE_MIN_MS,
  OUTAGE_HOLD_MS,
  OUTBOUND_CONNECT_TIMEOUT_MS,
  OUTBOUND_IDLE_TIMEOUT_MS,
  OUTBOUND_SOCKET_TIMEOUT_MS,
  RSPAMD_TIMEOUT_MS,
  SETTLE_BACKOFF_INITIAL_MS,
  SETTLE_BACKOFF_MAX_MS,
  SETTLE_RETRY_MS,
  progressIntervalFor,
} from "../../relay/src/deliver/delivery-timing.ts";
import { retryAt } from "../../relay/src/deliver/retry-policy.ts";

const defaults = parseRelayArgs(["--domains", "domains.yaml"], "relay.test");
if (defaults === "help") throw new Error("expected a configuration");
const MINUTE = 60_000;
/** RFC 5321 §4.5.3.2: how long a client waits for our reply to RCPT, and to the final dot. */
const RFC5321_RCPT_WAIT_MS = 5 * MINUTE;
const RFC5321_DATA_END_WAIT_MS = 10 * MINUTE;
/** RFC 5321 §4.5.3.2.7: a server waits at least this long for a client's next command. */
const RFC5321_SERVER_WAIT_MS = 5 * MINUTE;

/** The most a settling write can take: repeated until SETTLE_RETRY_MS, and the last try may start just before. */
function longestSettlingWriteMs(publishTimeoutMs: number): number {
  return SETTLE_RETRY_MS + publishTimeoutMs;
}

describe("delivery timing", () => {
  it("the final dot of an in-place delivery leaves time for the primary's reply and the settling write before the schedule fires", () => {
    // Otherwise the schedule re-queues a message the primary accepted, and it is delivered twice.
    const afterTheDot = OUTBOUND_SOCKET_TIMEOUT_MS + longestSettlingWriteMs(defaults.publishTimeoutMs);
    assert.ok(FINISH_MARGIN_MS >= afterTheDot, `FINISH_MARGIN_MS ${FINISH_MARGIN_MS} < reply wait and settling ${afterTheDot}`);
  });

  it("an in-place delivery on a new connection has time to connect, read the greeting and start TLS before its last moment for the dot", () => {
    // Otherwise every in-place delivery to a slow primary is abandoned and waits for its schedule.
    assert.ok(IN_PLACE_MIN_MS - FINISH_MARGIN_MS >= 3 * OUTBOUND_CONNECT_TIMEOUT_MS);
  });

  it("a job held while its destination is down can still be delivered in place when the next probe finds it back", () => {
    // Otherwise recovered mail is moved back to ready, two more fsynced writes per message.
    const retry = { initialBackoffMs: 1000, maxBackoffMs: 1000 };
    const now = 1_700_000_000_000;
    const shortestHold = retryAt(1, retry, now, now + 86_400_000, true, () => 0) - now;
    assert.equal(shortestHold, OUTAGE_HOLD_MS);
    assert.ok(
      OUTAGE_HOLD_MS >= IN_PLACE_MIN_MS + defaults.probeIntervalMs,
      `OUTAGE_HOLD_MS ${OUTAGE_HOLD_MS} < IN_PLACE_MIN_MS ${IN_PLACE_MIN_MS} + probe interval ${defaults.probeIntervalMs}`,
    );
  });

  it("settling writes are repeated throughout their window, and keep the job from being handed to another relay", () => {
    assert.ok(SETTLE_BACKOFF_INITIAL_MS > 0 && SETTLE_BACKOFF_INITIAL_MS <= SETTLE_BACKOFF_MAX_MS);
    // Pauses of a tenth of the window or less: a write is tried again soon after a leader election ends.
    assert.ok(SETTLE_BACKOFF_MAX_MS * 10 <= SETTLE_RETRY_MS);
    // The worker signals progress between tries: one try and one pause must fit in the ack wait.
    assert.ok(defaults.publishTimeoutMs + SETTLE_BACKOFF_MAX_MS < defaults.ackWaitMs);
  });

  it("a long delivery signals progress often enough that one lost signal does not hand its job to another relay", () => {
    for (const ackWaitMs of [defaults.ackWaitMs, 3000, 30_000, 600_000]) {
      assert.ok(2 * progressIntervalFor(ackWaitMs) < ackWaitMs, `ack wait ${ackWaitMs}`);
    }
    assert.equal(progressIntervalFor(100), 1000, "not more than once a second");
  });

  it("a bounce is queued for the default queue lifetime, a lifetime the spool keeps bodies for", () => {
    // The spool's max_age is the longest queue lifetime and a day (queue/queue-setup.ts); a
    // default lifetime is a valid one, so a spooled bounce body outlives its job.
    const policy = parseRelayDomain({ apiVersion: "mxwarden.io/v1alpha1", kind: "RelayDomain", metadata: { name: "d" }, spec: { domain: "example.com" } });
    assert.equal(BOUNCE_LIFETIME_MS, policy.queueLifetimeMs);
  });

  it("a pooled connection is closed by us before a primary may time it out", () => {
    assert.ok(OUTBOUND_IDLE_TIMEOUT_MS < RFC5321_SERVER_WAIT_MS);
  });

  it("the filters answer a client before RFC 5321 lets it give up", () => {
    const dnsMs = DNS_TIMEOUT_MS * DNS_TRIES;
    assert.ok(dnsMs + CALLOUT_TIMEOUT_MS < RFC5321_RCPT_WAIT_MS, "a recipient callout at RCPT");
    const afterTheDot = CLAMD_TIMEOUT_MS + RSPAMD_TIMEOUT_MS + dnsMs + defaults.publishTimeoutMs;
    assert.ok(afterTheDot < RFC5321_DATA_END_WAIT_MS, `the scans and storing the message take up to ${afterTheDot} ms`);
  });
});
