// The deferred backlog at the scale the design promises: 100,000 deferred jobs across 1,000
// domains (a long outage of many primaries), then one primary comes back. It measures what the
// layout must keep cheap: the delivery consumer stays empty, one domain's jobs are found and
// drained quickly (its drain consumer, created among 100,000 held jobs, hands them out), and a
// ready job of another domain is delivered at once.
//
// Jobs are published straight into JetStream (no SMTP): this measures the queue layout. The
// nats-server keeps its default fsync interval here, to build the backlog in seconds.

import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { join } from "node:path";
import { QUEUE_STREAM, QueueConnection, QueueIndex, newQueueId, type DeliveryJob } from "../relay/src/queue/index.ts";
// The backlog is built on a connection of its own, without the relay's connection settings: this
// measures the queue layout, so it reaches the layout's parts directly.
import { QueueLayout } from "../relay/src/queue/layout.ts";
import { JobQueue } from "../relay/src/queue/job-queue.ts";
import { ensureQueueLayout } from "../relay/src/queue/queue-setup.ts";
import { HeldMailFlush, type DeliverySlots } from "../relay/src/deliver/held-mail-flush.ts";
import { createLogger } from "../relay/src/log.ts";
import { TestNatsServer } from "../test/harness/nats-server.ts";
import { tempDir } from "../test/harness/workspace.ts";

export interface BacklogResult {
  deferred: number;
  domains: number;
  buildSeconds: number;
  consumerPendingWithBacklog: number;
  /** Held jobs of the returning domain, handed out by its drain consumer and acknowledged. */
  drainedJobs: number;
  drainMs: number;
  otherDomainReadyMs: number;
  /** One read of the queue's subject index, summarised per domain (what the queue report and the gauges sample). */
  indexReadMs: number;
  indexedDomains: number;
}

function job(domain: string, now: number): DeliveryJob {
  return {
    v: 1,
    queueId: newQueueId(now),
    kind: "relay",
    domain,
    sender: "s@client.test",
    recipients: [`user@${domain}`],
    size: 4096,
    eightBit: false,
    smtpUtf8: false,
    acceptedAt: now,
    expiresAt: now + 5 * 86_400_000,
    attempts: 1,
  };
}

export async function measureDeferredBacklog(total = 100_000, domains = 1000): Promise<BacklogResult> {
  const dir = tempDir("bench-backlog").path;
  const nats = await TestNatsServer.start(join(dir, "nats"), { syncAlways: false });
  const nc = await connect({ servers: nats.url });
  try {
    const js = jetstream(nc, { timeout: 30_000 });
    const jsm = await jetstreamManager(nc);
    const layout = new QueueLayout();
    await ensureQueueLayout(jsm, layout, { replicas: 1, maxAckPending: 10_000, ackWaitMs: 60_000 });
    const queue = new JobQueue(js, jsm, layout, 30_000);
    const now = Date.now();
    const later = new Date(now + 3_600_000);
    const started = performance.now();
    const window = 512;
    for (let base = 0; base < total; base += window) {
      const batch: Array<Promise<void>> = [];
      for (let i = base; i < Math.min(total, base + window); i++) batch.push(queue.defer(job(`d${i % domains}.example`, now), later));
      await Promise.all(batch);
    }
    const buildSeconds = (performance.now() - started) / 1000;
    const consumer = await jsm.consumers.info(QUEUE_STREAM, layout.deliverConsumer);
    const consumerPendingWithBacklog = consumer.num_pending + consumer.num_ack_pending;

    const index = new QueueIndex(async () => (await jsm.streams.info(QUEUE_STREAM, { subjects_filter: layout.queueSubjects })).state.subjects ?? {}, 0);
    const indexStart = performance.now();
    const snapshot = await index.snapshot();
    const indexReadMs = performance.now() - indexStart;
    if (snapshot.site.queued !== total) throw new Error(`the subject index lists ${snapshot.site.queued} jobs, ${total} were deferred`);

    // The drain as a relay runs it, with delivery slots that acknowledge at once (no SMTP here).
    const connection = new QueueConnection(
      {
        servers: [nats.url],
        name: "bench-backlog",
        publishTimeoutMs: 30_000,
        replicas: 1,
        maxAckPending: 10_000,
        ackWaitMs: 60_000,
      },
      createLogger({}, "error"),
    );
    connection.start();
    await connection.whenReady();
    let drainedJobs = 0;
    const slots: DeliverySlots = {
      running: true,
      waitForSlot: () => Promise.resolve(),
      deliver: async (msg) => {
        await msg.ackAck();
        drainedJobs++;
      },
    };
    const drainStart = performance.now();
    await new HeldMailFlush(`d${Math.floor(domains / 2)}.example`, {
      queue: connection,
      slots,
      isUnreachable: () => false,
      concurrency: 20,
      log: createLogger({}, "error"),
      checkIntervalMs: 20,
    }).run();
    const drainMs = performance.now() - drainStart;
    await connection.close();

    // A job of a domain that is up, behind 99,900 deferred: how soon it is ready to deliver.
    const messages = await (await js.consumers.get(QUEUE_STREAM, layout.deliverConsumer)).consume({ max_messages: 1000 });
    const readyStart = performance.now();
    await queue.enqueue(job("up.example", Date.now()));
    let otherDomainReadyMs = NaN;
    for await (const msg of messages) {
      msg.ack();
      if (msg.subject.includes(".up_example.")) {
        otherDomainReadyMs = performance.now() - readyStart;
        break;
      }
    }
    messages.stop();
    return {
      deferred: total,
      domains,
      buildSeconds,
      consumerPendingWithBacklog,
      drainedJobs,
      drainMs,
      otherDomainReadyMs,
      indexReadMs,
      indexedDomains: snapshot.byDomainToken.size,
    };
  } finally {
    await nc.drain();
    await nats.stop();
  }
}
