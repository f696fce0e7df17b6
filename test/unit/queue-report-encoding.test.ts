// The relays' queue report as written to the shared ConfigMap: idle domains as their bare
// generation, so that 10,000 domains on several relays fit in one ConfigMap (1 MiB).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeQueueReport, parseQueueReport, type QueueReport } from "#api";

const report: QueueReport = {
  updatedAt: "2026-12-05T23:00:00.000Z",
  reporter: "relay-0",
  intervalMs: 10_000,
  domains: {
    "idle.example.net": { generation: 3, retiring: false, queued: 0, oldestQueuedSeconds: 0 },
    "queued.example.net": { generation: 1, retiring: false, queued: 2, oldestQueuedSeconds: 40 },
    "retiring.example.net": { generation: 5, retiring: true, queued: 0, oldestQueuedSeconds: 0 },
    "reachable.example.net": { generation: 2, retiring: false, queued: 0, oldestQueuedSeconds: 0, primaryReachable: true },
  },
};

describe("queue report encoding", () => {
  it("writes an idle domain as its generation alone and every other in full, and reads both back as they were", () => {
    const text = encodeQueueReport(report);
    const written = JSON.parse(text) as { domains: Record<string, unknown> };
    assert.equal(written.domains["idle.example.net"], 3);
    assert.deepEqual(written.domains["queued.example.net"], report.domains["queued.example.net"]);
    assert.deepEqual(written.domains["retiring.example.net"], report.domains["retiring.example.net"]);
    assert.deepEqual(written.domains["reachable.example.net"], report.domains["reachable.example.net"]);
    assert.deepEqual(parseQueueReport(text), report);
  });

  it("reads reports of relays that write every domain in full", () => {
    assert.deepEqual(parseQueueReport(JSON.stringify(report)), report);
  });

  it("keeps two relays' reports of 10,000 idle domains within a ConfigMap's 1 MiB", () => {
    const domains: QueueReport["domains"] = {};
    for (let i = 0; i < 10_000; i++)
      domains[`d${String(i).padStart(5, "0")}.customers.example.net`] = { generation: 1, retiring: false, queued: 0, oldestQueuedSeconds: 0 };
    const bytes = Buffer.byteLength(encodeQueueReport({ ...report, domains }));
    assert.ok(2 * bytes < 1024 * 1024, `${bytes} bytes a relay`);
    assert.ok(2 * Buffer.byteLength(JSON.stringify({ ...report, domains })) > 1024 * 1024, "in full they would not fit");
  });
});
