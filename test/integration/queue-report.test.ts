// The relays' queue report for the operator, computed from a real JetStream queue: per configured
// domain, how many jobs wait (ready and deferred) and how old the oldest is.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { TestNatsServer } from "../harness/nats-server.ts";
import { tempDir } from "../harness/workspace.ts";
import { createLogger } from "../../relay/src/log.ts";
import { DomainStore } from "../../relay/src/config/domain-store.ts";
import { FileDomainSource } from "../../relay/src/config/domain-sources.ts";
import { QueueConnection, QueueIndex, newQueueId, type DeliveryJob } from "../../relay/src/queue/index.ts";
import { PrimaryReachability } from "../../relay/src/status/primary-reachability.ts";
import { collectQueueReport } from "../../relay/src/status/queue-reporter.ts";

describe("queue report", () => {
  const work = tempDir("queue-report");
  const log = createLogger({}, "warn");
  let nats: TestNatsServer;
  let queue: QueueConnection;
  let store: DomainStore;

  before(async () => {
    nats = await TestNatsServer.start(join(work.path, "nats"));
    queue = new QueueConnection({ servers: [nats.url], name: "report-test", publishTimeoutMs: 5000, replicas: 1, maxAckPending: 100, ackWaitMs: 60_000 }, log);
    queue.start();
    await queue.whenReady();
    const domains = join(work.path, "domains.yaml");
    writeFileSync(
      domains,
      [
        "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: { name: team/a, generation: 7 }\nspec: { domain: a.example }\n",
        'apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: { name: team/b, generation: 2, deletionTimestamp: "2026-11-23T00:00:00Z" }\nspec: { domain: b.example }\n',
      ].join("---\n"),
    );
    store = new DomainStore(new FileDomainSource(domains, 60_000), log);
    await store.start();
  });

  after(async () => {
    store.stop();
    await queue.close();
    await nats.stop();
  });

  function job(domain: string, acceptedAt: number): DeliveryJob {
    return {
      v: 1,
      queueId: newQueueId(acceptedAt),
      kind: "relay",
      domain,
      sender: "s@client.test",
      recipients: [`r@${domain}`],
      size: 10,
      eightBit: false,
      smtpUtf8: false,
      acceptedAt,
      expiresAt: acceptedAt + 86_400_000,
      attempts: 0,
    };
  }

  it("counts ready and deferred jobs per domain, gives the oldest age, the loaded generation and retirement", async () => {
    const jobs = queue.jobs();
    const now = Date.now();
    await jobs.defer(job("a.example", now - 120_000), new Date(now + 3_600_000));
    await jobs.defer(job("a.example", now - 30_000), new Date(now + 3_600_000));
    await jobs.defer(job("b.example", now - 5_000), new Date(now + 3_600_000));
    const report = await collectQueueReport(
      QueueIndex.of(queue, 0, () => now),
      store,
      "relay-0",
    );
    assert.equal(report.reporter, "relay-0");
    assert.deepEqual(report.domains["a.example"], { generation: 7, retiring: false, queued: 2, oldestQueuedSeconds: 120 });
    assert.deepEqual(report.domains["b.example"], { generation: 2, retiring: true, queued: 1, oldestQueuedSeconds: 5 });
  });

  it("adds what the relay knows of each primary, and nothing for a primary it never tried", async () => {
    const primaries = new PrimaryReachability();
    primaries.unreachable("a.example", "connect ECONNREFUSED 192.0.2.1:25", Date.parse("2026-12-05T10:00:00Z"));
    const report = await collectQueueReport(QueueIndex.of(queue, 0), store, "relay-0", primaries);
    assert.equal(report.domains["a.example"]?.primaryReachable, false);
    assert.equal(report.domains["a.example"]?.primaryError, "connect ECONNREFUSED 192.0.2.1:25");
    assert.equal(report.domains["a.example"]?.primaryDownSince, "2026-12-05T10:00:00.000Z");
    assert.equal(report.domains["b.example"]?.primaryReachable, undefined);
  });
});
