// What a relay reports of each domain's primary (status/primary-reachability.ts), as destination
// health feeds it: an outage gives false with its error and start, a delivery that gets through gives
// true, and a domain the relay never delivered to is not reported.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DestinationHealth } from "../../relay/src/deliver/destination-health.ts";
import type { Route } from "../../relay/src/deliver/next-hop.ts";
import { createLogger } from "../../relay/src/log.ts";
import { RelayMetrics } from "../../relay/src/metrics.ts";
import { MAX_PRIMARY_ERROR_LENGTH, PrimaryReachability } from "../../relay/src/status/primary-reachability.ts";

const route: Route = { hops: [{ host: "mx.a.example", address: "127.0.0.1", port: 1 }], tls: { mode: "opportunistic", verifyCertificate: false } } as Route;

describe("primary reachability for the queue report", () => {
  it("reports nothing for a domain it knows nothing of", () => {
    assert.deepEqual(new PrimaryReachability().figures("a.example"), {});
  });

  it("keeps the start of an outage across failures, takes the latest error, and forgets it once reachable", () => {
    const primaries = new PrimaryReachability();
    primaries.unreachable("a.example", "connect ECONNREFUSED 127.0.0.1:25", Date.parse("2026-12-05T10:00:00Z"));
    primaries.unreachable("a.example", "connect ETIMEDOUT 127.0.0.1:25", Date.parse("2026-12-05T10:05:00Z"));
    assert.deepEqual(primaries.figures("a.example"), {
      primaryReachable: false,
      primaryDownSince: "2026-12-05T10:00:00.000Z",
      primaryError: "connect ETIMEDOUT 127.0.0.1:25",
    });
    primaries.reachable("a.example");
    assert.deepEqual(primaries.figures("a.example"), { primaryReachable: true });
    primaries.unreachable("a.example", "x".repeat(1000), Date.parse("2026-12-05T11:00:00Z"));
    assert.equal(primaries.figures("a.example").primaryError?.length, MAX_PRIMARY_ERROR_LENGTH);
    assert.equal(primaries.figures("a.example").primaryDownSince, "2026-12-05T11:00:00.000Z");
  });

  it("forgets domains no longer served", () => {
    const primaries = new PrimaryReachability();
    primaries.reachable("a.example");
    primaries.reachable("b.example");
    primaries.retain(new Set(["b.example"]));
    assert.deepEqual(primaries.figures("a.example"), {});
    assert.deepEqual(primaries.figures("b.example"), { primaryReachable: true });
  });

  it("is fed by destination health: a delivery that found no hop, then one that got through", () => {
    const primaries = new PrimaryReachability();
    const health = new DestinationHealth(60_000, () => Promise.resolve(), new RelayMetrics(), primaries, createLogger({}, "error"));
    try {
      health.markUnreachable("a.example", route, "connect ECONNREFUSED 127.0.0.1:1");
      assert.equal(primaries.figures("a.example").primaryReachable, false);
      assert.equal(primaries.figures("a.example").primaryError, "connect ECONNREFUSED 127.0.0.1:1");
      health.markReachable("a.example");
      assert.deepEqual(primaries.figures("a.example"), { primaryReachable: true });
    } finally {
      health.stop();
    }
  });
});
