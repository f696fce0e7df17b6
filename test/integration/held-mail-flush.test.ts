// Flushing a recovered domain's held jobs (relay/src/deliver/held-mail-flush.ts) on a real
// nats-server: jobs far from their retry time are delivered in place through the domain's
// consumer, a job close to it is moved to ready with its schedule cancelled, a job held after the
// flush began and other domains' jobs are left alone.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { JsMsg } from "@nats-io/jetstream";
import { FINISH_MARGIN_MS, IN_PLACE_MIN_MS } from "../../relay/src/deliver/delivery-timing.ts";
import { HeldMailFlush, type DeliverySlots } from "../../relay/src/deliver/held-mail-flush.ts";
import { createLogger } from "../../relay/src/log.ts";
import { QUEUE_STREAM, QueueConnection, newQueueId, type DeliveryJob } from "../../relay/src/queue/index.ts";
import { QueueLayout } from "../../relay/src/queue/layout.ts";

const layout = new QueueLayout();
import { TestNatsServer } from "../harness/nats-server.ts";
import { tempDir } from "../harness/workspace.ts";

function job(domain: string, now: number): DeliveryJob {
  return {
    v: 1,
    queueId: newQueueId(now),
    kind: "relay",
    domain,
    sender: "s@client.test",
    recipients: [`user@${domain}`],
    size: 23,
    eightBit: false,
    smtpUtf8: false,
    acceptedAt: now,
    expiresAt: now + 86_400_000,
    attempts: 1,
    inline: true,
  };
}

describe("flushing held mail", () => {
  const dir = tempDir("mxw-flush-");
  const log = createLogger({}, "warn");
  let nats: TestNatsServer;
  let queue: QueueConnection;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    queue = new QueueConnection(
      {
        servers: [nats.url],
        name: "flush-test",
        publishTimeoutMs: 5000,
        replicas: 1,
        maxAckPending: 1000,
        ackWaitMs: 30_000,
      },
      log,
    );
    queue.start();
    await queue.whenReady();
  });

  after(async () => {
    await queue.close();
    await nats.stop();
    dir.remove();
  });

  it("delivers far-off jobs in place, moves a near one to ready, and leaves later and other domains' jobs", async () => {
    const { jsm } = queue.get();
    const jobs = queue.jobs();
    const now = Date.now();
    const far = new Date(now + IN_PLACE_MIN_MS + 600_000);
    const finishBys: number[] = [];
    const [far1, far2, near, other, late] = [job("a.example", now), job("a.example", now), job("a.example", now), job("b.example", now), job("a.example", now)];
    if (!far1 || !far2 || !near || !other || !late) throw new Error("jobs");
    const body = new TextEncoder().encode("Subject: held\r\n\r\nbody\r\n");
    await jobs.defer(far1, far, body);
    await jobs.defer(far2, far, body);
    await jobs.defer(near, new Date(now + 60_000), body);
    await jobs.defer(other, far, body);

    const delivered: string[] = [];
    const slots: DeliverySlots = {
      running: true,
      waitForSlot: () => Promise.resolve(),
      deliver: async (msg: JsMsg, finishBy: number) => {
        finishBys.push(finishBy);
        // A job held while the flush runs (a delivery that failed again) is not this flush's.
        if (delivered.length === 0) await jobs.defer(late, far, body);
        delivered.push(msg.subject);
        await msg.ackAck();
      },
    };
    const flush = new HeldMailFlush("a.example", { queue, slots, isUnreachable: () => false, concurrency: 4, log, checkIntervalMs: 100 });
    const result = await flush.run();

    assert.deepEqual(result, { inPlace: 2, released: 1 });
    assert.deepEqual(finishBys, [far.getTime() - FINISH_MARGIN_MS, far.getTime() - FINISH_MARGIN_MS], "the final dot must go out well before the schedule");
    assert.deepEqual(delivered.sort(), [layout.deferSubject("a.example", far1.queueId), layout.deferSubject("a.example", far2.queueId)].sort());
    const info = await jsm.streams.info(QUEUE_STREAM, { subjects_filter: ">" });
    const subjects = Object.keys(info.state.subjects ?? {}).sort();
    assert.deepEqual(
      subjects,
      [layout.deferSubject("a.example", late.queueId), layout.deferSubject("b.example", other.queueId), layout.readySubject("a.example", near.queueId)].sort(),
      "delivered records removed, the near job ready without its held copy, the rest untouched",
    );
    const consumer = await jsm.consumers.info(QUEUE_STREAM, layout.flushConsumerName("a.example"));
    // The late job was handed over and left: it stays held, and comes back after the ack wait.
    assert.equal(consumer.num_ack_pending, 1, "only the late job is left unacknowledged");
    assert.equal(consumer.num_pending, 0);
  });

  it("creates no consumer for a domain with nothing held", async () => {
    const { jsm } = queue.get();
    const slots: DeliverySlots = { running: true, waitForSlot: () => Promise.resolve(), deliver: () => Promise.reject(new Error("nothing to deliver")) };
    const result = await new HeldMailFlush("c.example", { queue, slots, isUnreachable: () => false, concurrency: 4, log, checkIntervalMs: 100 }).run();
    assert.deepEqual(result, { inPlace: 0, released: 0 });
    await assert.rejects(jsm.consumers.info(QUEUE_STREAM, layout.flushConsumerName("c.example")), /consumer not found/);
  });
});
