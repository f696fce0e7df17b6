// relay/src/queue/write-coalescing.ts on a real nats-server: publishes made by separate I/O
// callbacks of one event-loop turn leave in one socket write, none is lost, and closing sends
// what is still queued. It also fails when the pinned nats-core's internals change.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { coalesceWrites } from "../../relay/src/queue/write-coalescing.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { tempDir } from "../harness/workspace.ts";

/** Counts the frames the connection hands to its socket (the transport is internal too). */
function countWrites(nc: NatsConnection): () => number {
  const transport = (nc as NatsConnection & { protocol: { transport: { send(frame: Uint8Array): void } } }).protocol.transport;
  const send = transport.send.bind(transport);
  let writes = 0;
  transport.send = (frame: Uint8Array) => {
    writes++;
    send(frame);
  };
  return () => writes;
}

/** Publishes `count` messages, each from its own callback, all in the same event-loop turn. */
async function publishFromSeparateCallbacks(nc: NatsConnection, subject: string, count: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<void>((resolve) => {
          setImmediate(() => {
            nc.publish(subject, `m${i}`);
            resolve();
          });
        }),
    ),
  );
}

async function collect(nc: NatsConnection, subject: string, count: number): Promise<() => Promise<string[]>> {
  const sub = nc.subscribe(subject, { max: count });
  await nc.flush();
  return async () => {
    const seen: string[] = [];
    // Lost messages would leave the subscription open: it is closed after 10 s, with what came.
    const timer = setTimeout(() => sub.unsubscribe(), 10_000);
    for await (const msg of sub) seen.push(msg.string());
    clearTimeout(timer);
    return seen;
  };
}

describe("coalesced NATS writes", () => {
  const dir = tempDir("mxw-coalesce-");
  let nats: TestNatsServer;
  let listener: NatsConnection;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    listener = await connect({ servers: nats.url });
  });

  after(async () => {
    await listener.close();
    await nats.stop();
    dir.remove();
  });

  it("sends one event-loop turn's publishes in one write instead of one each, and loses none", async () => {
    const plain = await connect({ servers: nats.url });
    const coalesced = await connect({ servers: nats.url });
    assert.equal(coalesceWrites(coalesced), true, "the pinned nats-core has the internals write-coalescing.ts relies on");
    const plainWrites = countWrites(plain);
    const coalescedWrites = countWrites(coalesced);
    const received = await collect(listener, "coalesce.>", 100);

    await publishFromSeparateCallbacks(plain, "coalesce.plain", 50);
    await publishFromSeparateCallbacks(coalesced, "coalesce.coalesced", 50);
    await Promise.all([plain.flush(), coalesced.flush()]);

    assert.ok(plainWrites() >= 50, `without coalescing every callback writes (${plainWrites()} writes)`);
    assert.ok(coalescedWrites() <= 3, `coalesced: ${coalescedWrites()} writes for 50 publishes and a flush`);
    const seen = await received();
    assert.equal(seen.length, 100);
    await Promise.all([plain.close(), coalesced.close()]);
  });

  it("sends what is still queued when the connection closes", async () => {
    const nc = await connect({ servers: nats.url });
    assert.equal(coalesceWrites(nc), true);
    const received = await collect(listener, "closing", 20);
    for (let i = 0; i < 20; i++) nc.publish("closing", `c${i}`);
    await nc.close();
    assert.deepEqual(
      await received(),
      Array.from({ length: 20 }, (_, i) => `c${i}`),
    );
  });
});
