// The relay's own reply inbox (relay/src/queue/reply-inbox.ts) against a real nats-server with
// JetStream: it stores jobs with their PubAck, deduplicates by message id, confirms an ack on a
// real work-queue consumer, and fails clearly when nobody answers.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { TestNatsServer } from "../harness/nats-server.ts";
import { eventually, tempDir } from "../harness/workspace.ts";
import { NoRespondersError, ReplyInbox, RequestTimeoutError } from "../../relay/src/queue/reply-inbox.ts";

describe("reply inbox", () => {
  const work = tempDir("reply-inbox");
  let nats: TestNatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let inbox: ReplyInbox;

  before(async () => {
    nats = await TestNatsServer.start(join(work.path, "nats"));
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "INBOX_TEST", subjects: ["inbox.test.>"], retention: RetentionPolicy.Workqueue, duplicate_window: 60_000_000_000 });
    inbox = new ReplyInbox(nc);
  });

  after(async () => {
    inbox.close();
    await nc.close();
    await nats.stop();
  });

  it("stores a message and returns its PubAck; the same message id again is a duplicate, not a second copy", async () => {
    const first = await inbox.publish("inbox.test.a", Buffer.from("one"), "id-1", 5000);
    assert.equal(first.stream, "INBOX_TEST");
    assert.equal(first.duplicate, false);
    const again = await inbox.publish("inbox.test.a", Buffer.from("one"), "id-1", 5000);
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, first.seq);
    const stored = await jsm.streams.getMessage("INBOX_TEST", { seq: first.seq });
    assert.equal(Buffer.from(stored?.data ?? []).toString(), "one");
    assert.equal((await jsm.streams.info("INBOX_TEST")).state.messages, 1);
    assert.equal(inbox.waiting, 0);
  });

  it("confirms an acknowledgement on a real work-queue consumer", async () => {
    await jsm.consumers.add("INBOX_TEST", { durable_name: "acker", ack_policy: AckPolicy.Explicit, filter_subject: "inbox.test.b" });
    await inbox.publish("inbox.test.b", Buffer.from("two"), "id-2", 5000);
    const consumer = await jetstream(nc).consumers.get("INBOX_TEST", "acker");
    const msg = await consumer.next({ expires: 5000 });
    assert.ok(msg, "the consumer hands out the message");
    const reply = (msg as unknown as { reply: string }).reply;
    await inbox.request(reply, Buffer.from("+ACK"), 5000);
    const info = await jsm.consumers.info("INBOX_TEST", "acker");
    assert.equal(info.num_ack_pending, 0);
    assert.equal(info.num_pending, 0);
    // The server removes the acknowledged record right after it answered the ack.
    await eventually(
      "the acknowledged work-queue record removed",
      async () =>
        await jsm.streams.getMessage("INBOX_TEST", { seq: msg.seq }).then(
          (stored) => stored === null,
          () => true,
        ),
      5000,
      20,
    );
  });

  it("reports no responders when no stream takes the subject, and a timeout when a listener never answers", async () => {
    await assert.rejects(inbox.publish("nobody.listens.here", Buffer.from("x"), "id-3", 5000), NoRespondersError);
    const silent = nc.subscribe("silent.listener");
    try {
      const started = performance.now();
      await assert.rejects(inbox.request("silent.listener", Buffer.from("x"), 300), RequestTimeoutError);
      assert.ok(performance.now() - started >= 290, "it waited for its timeout");
    } finally {
      silent.unsubscribe();
    }
    assert.equal(inbox.waiting, 0, "nothing is left waiting");
  });

  it("fails the requests still waiting when it is closed", async () => {
    const own = new ReplyInbox(nc);
    const silent = nc.subscribe("silent.close");
    try {
      const waiting = own.request("silent.close", Buffer.from("x"), 60_000);
      await nc.flush();
      own.close();
      await assert.rejects(waiting, /connection closed before a reply/);
    } finally {
      silent.unsubscribe();
    }
  });
});
