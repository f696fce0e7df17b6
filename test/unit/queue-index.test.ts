import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { newQueueId } from "../../relay/src/queue/queue-id.ts";
import { QueueIndex, summariseQueueIndex } from "../../relay/src/queue/queue-index.ts";

const now = Date.UTC(2026, 10, 23, 12, 0, 0);

describe("queue index summary", () => {
  it("counts jobs and finds the oldest acceptance time per domain token and for the site", () => {
    const subjects = {
      [`mxw.queue.defer.a_example.${newQueueId(now - 120_000)}`]: 1,
      [`mxw.queue.ready.a_example.${newQueueId(now - 30_000)}`]: 1,
      [`mxw.queue.defer.b_example.${newQueueId(now - 5_000)}`]: 1,
    };
    const snapshot = summariseQueueIndex(subjects, now);
    assert.deepEqual(snapshot.site, { queued: 3, oldestAcceptedAt: now - 120_000 });
    assert.deepEqual(snapshot.byDomainToken.get("a_example"), { queued: 2, oldestAcceptedAt: now - 120_000 });
    assert.deepEqual(snapshot.byDomainToken.get("b_example"), { queued: 1, oldestAcceptedAt: now - 5_000 });
    assert.equal(snapshot.byDomainToken.get("c_example"), undefined);
  });

  it("counts a job whose subject carries no queue id without inventing an age for it", () => {
    const snapshot = summariseQueueIndex({ "mxw.queue.ready.a_example.not-a-queue-id": 1 }, now);
    assert.deepEqual(snapshot.site, { queued: 1, oldestAcceptedAt: now });
    assert.deepEqual(snapshot.byDomainToken.get("a_example"), { queued: 1, oldestAcceptedAt: now });
  });

  it("is empty, with no age, when nothing is queued", () => {
    const snapshot = summariseQueueIndex({}, now);
    assert.deepEqual(snapshot.site, { queued: 0, oldestAcceptedAt: now });
    assert.equal(snapshot.byDomainToken.size, 0);
  });
});

describe("queue index snapshots", () => {
  it("share one read among callers within the maximum age, and read again after it", async () => {
    let clock = now;
    let reads = 0;
    let release: () => void = () => {};
    const index = new QueueIndex(
      async () => {
        reads++;
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        return { [`mxw.queue.ready.a_example.${newQueueId(now - 1000)}`]: reads };
      },
      1000,
      () => clock,
    );
    const concurrent = [index.snapshot(), index.snapshot()];
    release();
    const [first, second] = await Promise.all(concurrent);
    assert.equal(reads, 1, "two callers during one read share it");
    assert.equal(first, second);
    clock += 999;
    assert.equal(await index.snapshot(), first, "still fresh");
    clock += 1;
    const later = index.snapshot();
    release();
    assert.equal((await later).site.queued, 2, "a new read once the snapshot is as old as the maximum age");
    assert.equal(reads, 2);
  });

  it("reads again after a failed read", async () => {
    let fail = true;
    const index = new QueueIndex(
      async () => {
        if (fail) throw new Error("queue unavailable");
        return {};
      },
      60_000,
      () => now,
    );
    await assert.rejects(index.snapshot(), /queue unavailable/);
    fail = false;
    assert.equal((await index.snapshot()).site.queued, 0);
  });
});
