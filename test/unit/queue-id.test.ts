import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isQueueId, newQueueId, queueIdTime } from "../../relay/src/queue/queue-id.ts";
import { parsePubAck, PublishRejectedError } from "../../relay/src/queue/reply-inbox.ts";

describe("queue ids", () => {
  it("are unique across many pool refills, well formed, and carry their acceptance time", () => {
    const now = Date.UTC(2026, 10, 23, 12, 0, 0);
    const ids = Array.from({ length: 5000 }, () => newQueueId(now));
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) assert.ok(isQueueId(id), id);
    assert.equal(queueIdTime(ids[0] ?? ""), now);
    // Sortable by time: a later id sorts after an earlier one.
    assert.ok(newQueueId(now + 1) > newQueueId(now));
  });
});

describe("PubAck parsing", () => {
  it("reads stream, sequence and duplicate", () => {
    assert.deepEqual(parsePubAck(Buffer.from('{"stream":"MXW_QUEUE","seq":42}')), { stream: "MXW_QUEUE", seq: 42, duplicate: false });
    assert.deepEqual(parsePubAck(Buffer.from('{"stream":"MXW_QUEUE","seq":42,"duplicate":true}')).duplicate, true);
  });

  it("turns a JetStream API error into PublishRejectedError with its codes", () => {
    assert.throws(
      () => parsePubAck(Buffer.from('{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}')),
      (err: unknown) => err instanceof PublishRejectedError && err.code === 400 && err.errCode === 10071 && /wrong last sequence/.test(err.message),
    );
  });

  it("refuses replies that are not a PubAck", () => {
    assert.throws(() => parsePubAck(Buffer.from("")), /not JSON/);
    assert.throws(() => parsePubAck(Buffer.from("{}")), /invalid publish acknowledgement/);
    assert.throws(() => parsePubAck(Buffer.from('{"stream":"","seq":1}')), /invalid publish acknowledgement/);
  });
});
