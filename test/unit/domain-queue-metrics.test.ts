// Which domains get per-domain queue series when there are more domains than the cap allows.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { domainsToExport } from "../../relay/src/status/domain-queue-metrics.ts";

const figures = (queued: number, oldestQueuedSeconds: number) => ({ generation: 1, retiring: false, queued, oldestQueuedSeconds });

describe("domainsToExport", () => {
  it("keeps the domains whose mail waited longest, then the longest queues, then by name", () => {
    const domains = {
      "idle.example": figures(0, 0),
      "busy.example": figures(500, 30),
      "stuck.example": figures(2, 7200),
      "b.example": figures(3, 30),
      "a.example": figures(3, 30),
    };
    assert.deepEqual(
      domainsToExport(domains, 3).map(([name]) => name),
      ["stuck.example", "busy.example", "a.example"],
    );
    assert.deepEqual(
      domainsToExport(domains, 10).map(([name]) => name),
      ["stuck.example", "busy.example", "a.example", "b.example", "idle.example"],
    );
  });
});
