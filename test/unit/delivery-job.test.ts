import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeJob, encodeJob, InvalidJobError, type DeliveryJob } from "../../relay/src/queue/delivery-job.ts";

const job: DeliveryJob = {
  v: 1, queueId: "0MWSIQ00000000000000000001", kind: "relay", domain: "example.com", sender: "s@client.test",
  recipients: ["a@example.com"], size: 100, eightBit: false, smtpUtf8: false, acceptedAt: 1, expiresAt: 2, attempts: 0,
};

describe("delivery jobs", () => {
  it("round-trip, filter headers included", () => {
    const withHeaders = { ...job, headers: "X-Spam-Status: No, score=0.1 action=no action\r\n" };
    assert.deepEqual(decodeJob(encodeJob(withHeaders)), withHeaders);
  });

  it("refuse malformed jobs", () => {
    assert.throws(() => decodeJob(new TextEncoder().encode("{")), InvalidJobError);
    assert.throws(() => decodeJob(encodeJob({ ...job, v: 2 } as unknown as DeliveryJob)), InvalidJobError);
  });

  it("refuse header text that would not be header lines (no injected body or bare LF)", () => {
    for (const headers of ["X-A: 1\r\n\r\nbody", "X-A: 1\n", "no colon\r\n", "X-A: 1"]) {
      assert.throws(() => decodeJob(encodeJob({ ...job, headers })), InvalidJobError, JSON.stringify(headers));
    }
  });
});
