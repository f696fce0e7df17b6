// A filter that throws instead of giving a verdict: the receiver answers the filtering failure's
// own 451 (not the queue's) and counts it under its own cause, at RCPT and at DATA. The receiver
// runs in this process with a real JetStream queue, so the message that passes is really queued.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DomainStore } from "../../relay/src/config/domain-store.ts";
import { FileDomainSource } from "../../relay/src/config/domain-sources.ts";
import type { MessageFilter, RecipientFilter } from "../../relay/src/filter/filter.ts";
import { FilterPipeline } from "../../relay/src/filter/pipeline.ts";
import { createLogger } from "../../relay/src/log.ts";
import { RelayMetrics } from "../../relay/src/metrics.ts";
import { QueueConnection } from "../../relay/src/queue/index.ts";
import { replies } from "../../relay/src/receive/smtp-reply.ts";
import { SmtpReceiver } from "../../relay/src/receive/smtp-receiver.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { sendMail, simpleMessage, type Reply } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

const brokenAtRcpt: RecipientFilter = {
  name: "broken_rcpt",
  stage: "rcpt",
  check: (recipient) =>
    recipient.recipient.startsWith("rcpt-crash@") ? Promise.reject(new Error("bug in a recipient filter")) : Promise.resolve({ action: "continue" }),
};

const brokenAtData: MessageFilter = {
  name: "broken_data",
  stage: "data",
  check: (message) => {
    if (message.recipients.some((r) => r.startsWith("data-crash@"))) throw new Error("bug in a message filter");
    return Promise.resolve({ action: "continue" });
  },
};

describe("a filter that fails", () => {
  const work = tempDir("mxw-filter-failure-");
  const log = createLogger({}, "error");
  const metrics = new RelayMetrics();
  let nats: TestNatsServer;
  let queue: QueueConnection;
  let store: DomainStore;
  let receiver: SmtpReceiver;
  let port: number;

  before(async () => {
    nats = await TestNatsServer.start(join(work.path, "nats"));
    queue = new QueueConnection(
      { servers: [nats.url], name: "filter-failure-test", publishTimeoutMs: 5000, replicas: 1, maxAckPending: 100, ackWaitMs: 60_000 },
      log,
    );
    queue.start();
    await queue.whenReady();
    const domains = join(work.path, "domains.yaml");
    writeFileSync(domains, "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: { name: team/a }\nspec: { domain: a.example }\n");
    store = new DomainStore(new FileDomainSource(domains, 60_000), log);
    await store.start();
    receiver = new SmtpReceiver(
      {
        hostname: "relay.test",
        maxClients: 10,
        maxRecipients: 10,
        maxReceivedHeaders: 30,
        bareNewline: "normalize",
        socketTimeoutMs: 30_000,
        shutdownGraceMs: 1000,
        maxConnectionsPerClient: 10,
        greetPauseMs: 0,
        tarpitAfter: 100,
        tarpitDelayMs: 0,
      },
      store,
      queue,
      new FilterPipeline([brokenAtRcpt, brokenAtData], metrics, log),
      metrics,
      log,
    );
    await receiver.listen("127.0.0.1", 0);
    port = receiver.address().port;
  });

  after(async () => {
    await receiver.close();
    store.stop();
    await queue.close();
    await nats.stop();
    work.remove();
  });

  /** The SMTP counters as "name{label}" → value. */
  async function counters(): Promise<Map<string, number>> {
    const all = new Map<string, number>();
    for (const metric of [metrics.transactions, metrics.transactionsFailed, metrics.messagesRejected, metrics.recipientsRejected, metrics.messagesAccepted]) {
      const { name, values } = await metric.get();
      for (const { labels, value } of values) all.set(`${name}{${Object.values(labels).join(",")}}`, value);
    }
    return all;
  }

  /** Which counters `run` moved, and by how much. */
  async function changes(run: () => Promise<void>): Promise<Record<string, number>> {
    const before = await counters();
    await run();
    const moved: Record<string, number> = {};
    for (const [key, value] of await counters()) if (value !== (before.get(key) ?? 0)) moved[key] = value - (before.get(key) ?? 0);
    return moved;
  }

  const filterFailure = (reply: Reply | undefined): void => {
    assert.equal(reply?.code, 451, reply?.text);
    assert.equal(reply?.status, "4.3.0");
    assert.equal(reply?.text, `4.3.0 ${replies.filterFailed.text}`);
  };

  it("answers the filtering failure at RCPT and counts cause filter_error", async () => {
    let rcpt: Reply | undefined;
    const moved = await changes(async () => {
      rcpt = (await sendMail(port, { from: "s@client.test", to: ["rcpt-crash@a.example"], body: simpleMessage("rcpt", "rcpt-crash") })).rcpts[0];
    });
    filterFailure(rcpt);
    assert.deepEqual(moved, {
      "mxwarden_smtp_transactions_total{}": 1,
      "mxwarden_smtp_transactions_failed_total{filter_error}": 1,
      "mxwarden_recipients_rejected_total{filter_error}": 1,
    });
  });

  it("answers the filtering failure at DATA, counts cause filter_error and queues nothing", async () => {
    let result: Awaited<ReturnType<typeof sendMail>> | undefined;
    const moved = await changes(async () => {
      result = await sendMail(port, { from: "s@client.test", to: ["data-crash@a.example"], body: simpleMessage("data", "data-crash") });
    });
    assert.equal(result?.rcpts[0]?.code, 250);
    filterFailure(result?.data);
    assert.deepEqual(moved, {
      "mxwarden_smtp_transactions_total{}": 1,
      "mxwarden_smtp_transactions_failed_total{filter_error}": 1,
      "mxwarden_messages_rejected_total{filter_error}": 1,
    });
  });

  it("still queues a message no filter fails on", async () => {
    let data: Reply | undefined;
    const moved = await changes(async () => {
      data = (await sendMail(port, { from: "s@client.test", to: ["user@a.example"], body: simpleMessage("fine", "fine") })).data;
    });
    assert.equal(data?.code, 250, data?.text);
    assert.deepEqual(moved, { "mxwarden_smtp_transactions_total{}": 1, "mxwarden_messages_accepted_total{}": 1 });
  });
});
