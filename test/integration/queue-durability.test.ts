// What a backup MX exists for: mail accepted while the primary is down is kept and delivered
// when it returns, survives kill -9 of the relay, and a lost queue means 451, never a silent loss.
// Real peers throughout: nats-server with JetStream, Postfix's smtp-source and smtp-sink.

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runLoad } from "../harness/load-client.ts";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { TestNatsCluster, TestNatsServer } from "../harness/nats-server.ts";
import { SmtpSink, smtpSource } from "../harness/postfix-tools.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "../harness/relay-process.ts";
import { SmtpDialogue, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

function duplicates(ids: string[]): number {
  return ids.length - new Set(ids).size;
}

/**
 * A case of its own: a nats-server (so mail one case leaves queued cannot reach another), and a
 * RelayDomain for example.com whose primary is `primaryPort`. The 10 minute first backoff means
 * deferred mail that arrives during a test was released by a probe, not by its retry time.
 */
async function startCase(
  name: string,
  primaryPort: number,
  otherDomains: RelayDomainSpec[] = [],
): Promise<{ dir: string; nats: TestNatsServer; domainsPath: string }> {
  const dir = tempDir(name).path;
  const nats = await TestNatsServer.start(join(dir, "nats"));
  const domainsPath = join(dir, "domains.yaml");
  writeDomains(domainsPath, [
    {
      domain: "example.com",
      primary: { hosts: [{ host: "127.0.0.1", port: primaryPort }] },
      queue: { retry: { initialBackoff: "10m", maxBackoff: "1h" } },
    },
    ...otherDomains,
  ]);
  return { dir, nats, domainsPath };
}

describe("queue durability", () => {
  it("keeps 1,000 messages while the primary is down, across a relay restart, and drains them when it is back", async (t) => {
    const sinkPort = await freePort();
    const otherPrimary = await TestPrimary.start();
    const { dir, nats, domainsPath } = await startCase("primary-down", sinkPort, [
      { domain: "other.example", primary: { hosts: [{ host: "127.0.0.1", port: otherPrimary.port }] } },
    ]);
    const args = ["--probe-interval", "1s", "--delivery-concurrency", "50"];
    let relay = await RelayProcess.start({ dir, domainsPath, nats: nats.url, args });
    try {
      await relay.ready();
      const sendMs = await smtpSource({ port: relay.smtpPort, messages: 1000, sessions: 20, length: 4096, from: "s@client.test", to: "user@example.com" });
      assert.equal(await relay.metric("mxwarden_messages_accepted_total"), 1000);
      await eventually("all jobs deferred", async () => (await relay.metric("mxwarden_queue_messages", 'state="deferred"')) === 1000, 60_000);
      // A new relay process knows nothing of the outage: it must find the deferred mail itself.
      await relay.stop();
      relay = await RelayProcess.start({ dir, domainsPath, nats: nats.url, args });
      await relay.ready();
      // The deferred backlog holds no place in the delivery consumer: another domain's mail goes straight through.
      await eventually(
        "backlog deferred, consumer idle",
        async () =>
          (await relay.metric("mxwarden_queue_messages", 'state="deferred"')) === 1000 &&
          (await relay.metric("mxwarden_queue_messages", 'state="ready"')) === 0,
        30_000,
        250,
      );
      const other = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["someone@other.example"], body: simpleMessage("other", "other-domain") });
      assert.equal(other.data?.code, 250);
      await otherPrimary.waitForMessages(1, 10_000);
      const sink = await SmtpSink.start(sinkPort);
      const upAt = performance.now();
      try {
        await eventually("1,000 messages at the primary", () => new Set(sink.messageIds()).size >= 1000, 120_000, 200);
        const drainMs = performance.now() - upAt;
        const ids = sink.messageIds();
        assert.equal(new Set(ids).size, 1000);
        t.diagnostic(
          `accepted 1000 x 4 KB over 20 sessions in ${sendMs.toFixed(0)} ms (${(1000 / (sendMs / 1000)).toFixed(0)} msg/s); after a relay restart, drained in ${drainMs.toFixed(0)} ms once the primary returned; duplicates ${duplicates(ids)}`,
        );
        await eventually(
          "queue empty",
          async () =>
            (await relay.metric("mxwarden_queue_messages", 'state="deferred"')) === 0 && (await relay.metric("mxwarden_queue_messages", 'state="ready"')) === 0,
          30_000,
          500,
        );
      } finally {
        await sink.stop();
      }
    } finally {
      await relay.stop();
      await otherPrimary.close();
      await nats.stop();
    }
  });

  it("keeps a small message inside its delivery job and a large one in the spool; both survive a restart intact", async () => {
    const primary = await TestPrimary.start();
    const primaryPort = primary.port;
    await primary.close();
    const { dir, nats, domainsPath } = await startCase("inline", primaryPort);
    const args = ["--probe-interval", "1s"];
    let relay = await RelayProcess.start({ dir, domainsPath, nats: nats.url, args });
    const nc = await connect({ servers: nats.url });
    const line = `${"x".repeat(76)}\r\n`;
    const small = simpleMessage("small", "inline-small", line.repeat(50));
    const large = simpleMessage("large", "inline-large", line.repeat(4000));
    try {
      await relay.ready();
      const jsm = await jetstreamManager(nc);
      const count = async (stream: string): Promise<number> => (await jsm.streams.info(stream)).state.messages;
      const first = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@example.com"], body: small });
      assert.equal(first.data?.code, 250);
      // A failed attempt publishes the deferred job before it acks the ready one, so the queue
      // briefly holds two records for one message: count once the delivery consumer has nothing
      // pending or unacknowledged, that is, once every job sits deferred.
      const settled = (jobs: number) => async () => {
        const consumer = await jsm.consumers.info("MXW_QUEUE", "mxw-deliver");
        return consumer.num_pending === 0 && consumer.num_ack_pending === 0 && (await count("MXW_QUEUE")) === jobs;
      };
      await eventually("the small message deferred as one job", settled(1), 30_000, 100);
      assert.equal(await count("MXW_SPOOL"), 0, "a 4 KB body travels in its job: nothing in the spool");
      const second = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@example.com"], body: large });
      assert.equal(second.data?.code, 250);
      await eventually("both messages deferred as one job each", settled(2), 30_000, 100);
      assert.equal(await count("MXW_SPOOL"), 1, "a 312 KB body is in the spool");
      assert.ok((await relay.metric("mxwarden_queue_oldest_message_age_seconds")) >= 0);
      await relay.stop();
      relay = await RelayProcess.start({ dir, domainsPath, nats: nats.url, args });
      await relay.ready();
      await eventually(
        "the oldest queued message is counted from its acceptance",
        async () => (await relay.metric("mxwarden_queue_oldest_message_age_seconds")) >= 1,
        30_000,
        250,
      );
      await primary.listen(primaryPort);
      const received = await primary.waitForMessages(2, 60_000);
      for (const sent of [small, large]) {
        const original = Buffer.from(sent, "utf8");
        const match = received.find((m) => m.body.length >= original.length && m.body.subarray(m.body.length - original.length).equals(original));
        assert.ok(match, `message of ${original.length} octets arrived byte for byte`);
      }
      await eventually("queue and spool empty", async () => (await count("MXW_QUEUE")) === 0 && (await count("MXW_SPOOL")) === 0, 30_000, 250);
      await eventually("no queued age once empty", async () => (await relay.metric("mxwarden_queue_oldest_message_age_seconds")) === 0, 30_000, 250);
    } finally {
      await nc.close();
      await relay.stop();
      await primary.close();
      await nats.stop();
    }
  });

  it("delivers every message that got a 250 after kill -9 of the relay under load", async (t) => {
    const sink = await SmtpSink.start();
    const { dir, nats, domainsPath } = await startCase("kill9", sink.port);
    const smtpPort = await freePort();
    const options = {
      dir,
      domainsPath,
      nats: nats.url,
      smtpPort,
      args: ["--ack-wait", "3s", "--probe-interval", "1s"],
    };
    let relay = await RelayProcess.start(options);
    try {
      await relay.ready();
      let killed = false;
      const load = runLoad({ port: smtpPort, sessions: 20, size: 4096, recipient: "user@example.com", tag: "kill9", stop: () => killed });
      await eventually("some deliveries under way", async () => (await relay.metric("mxwarden_recipients_delivered_total")) >= 200, 60_000, 20);
      await relay.kill9();
      killed = true;
      const { accepted, notAccepted } = await load;
      assert.ok(accepted.size >= 200);
      relay = await RelayProcess.start(options);
      await eventually(
        "every accepted message at the primary",
        () => {
          const delivered = new Set(sink.messageIds());
          return [...accepted].every((id) => delivered.has(id));
        },
        120_000,
        250,
      );
      const ids = sink.messageIds().filter((id) => id.includes("kill9"));
      const missing = [...accepted].filter((id) => !ids.includes(id));
      assert.deepEqual(missing, []);
      t.diagnostic(`accepted ${accepted.size}, not accepted ${notAccepted}, delivered ${new Set(ids).size} distinct, duplicates ${duplicates(ids)}`);
    } finally {
      await relay.stop();
      await sink.stop();
      await nats.stop();
    }
  });

  it("keeps every accepted message when a site's JetStream leader is killed (three servers, R3)", async (t) => {
    const dir = tempDir("r3").path;
    const cluster = await TestNatsCluster.start(join(dir, "cluster"));
    const sink = await SmtpSink.start();
    const domainsPath = join(dir, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: sink.port }] } }]);
    const relay = await RelayProcess.start({ dir, domainsPath, nats: cluster.urls, args: ["--replicas", "3", "--ack-wait", "3s", "--probe-interval", "1s"] });
    const nc = await connect({ servers: cluster.urls.split(",") });
    try {
      await relay.ready(60_000);
      const jsm = await jetstreamManager(nc);
      for (const stream of ["MXW_SPOOL", "MXW_QUEUE"]) assert.equal((await jsm.streams.info(stream)).config.num_replicas, 3);
      let stop = false;
      const load = runLoad({ port: relay.smtpPort, sessions: 20, size: 4096, recipient: "user@example.com", tag: "r3", stop: () => stop });
      await eventually("deliveries under way", async () => (await relay.metric("mxwarden_recipients_delivered_total")) >= 100, 60_000, 20);
      // Node loss: the server leading the queue stream (which holds 4 KB bodies inside their jobs)
      // goes away without a goodbye.
      const leader = (await jsm.streams.info("MXW_QUEUE")).cluster?.leader ?? "n1";
      await cluster.kill9(leader);
      const acceptedAtKill = await relay.metric("mxwarden_messages_accepted_total");
      await eventually(
        "mail accepted again after the failover",
        async () => (await relay.metric("mxwarden_messages_accepted_total")) >= acceptedAtKill + 200,
        90_000,
        50,
      );
      stop = true;
      const { accepted, notAccepted } = await load;
      await eventually(
        "every accepted message at the primary",
        () => {
          const delivered = new Set(sink.messageIds());
          return [...accepted].every((id) => delivered.has(id));
        },
        120_000,
        250,
      );
      const ids = sink.messageIds().filter((id) => id.includes("r3."));
      t.diagnostic(
        `killed leader ${leader}: accepted ${accepted.size}, answered otherwise ${notAccepted}, delivered ${new Set(ids).size} distinct, duplicates ${duplicates(ids)}`,
      );
    } finally {
      await nc.close();
      await relay.stop();
      await sink.stop();
      await cluster.stop();
    }
  });

  it("answers 451 4.3.0 while NATS is down and loses nothing accepted before", async () => {
    const sinkPort = await freePort();
    const { dir, nats, domainsPath } = await startCase("nats-down", sinkPort);
    const relay = await RelayProcess.start({
      dir,
      domainsPath,
      nats: nats.url,
      args: ["--probe-interval", "1s", "--publish-timeout", "2s"],
    });
    try {
      await relay.ready();
      const queuedIds: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = `before-outage-${i}`;
        const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@example.com"], body: simpleMessage("before", id) });
        assert.equal(result.data?.code, 250);
        queuedIds.push(`<${id}@client.test>`);
      }
      // A session that is already open when the queue goes away.
      const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
      await dialogue.command("EHLO client.test");
      await nats.pause();
      await eventually("relay not ready", async () => (await fetch(`http://127.0.0.1:${relay.metricsPort}/readyz`)).status === 503, 30_000);
      const mail = await dialogue.command("MAIL FROM:<s@client.test>");
      assert.equal(mail.code, 451);
      assert.equal(mail.status, "4.3.0");
      await dialogue.quit();
      const fresh = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@example.com"], body: simpleMessage("during", "during-outage") });
      assert.equal(fresh.mail.code, 451);
      assert.ok((await relay.metric("mxwarden_messages_rejected_total", 'reason="queue_unavailable"')) >= 2);
      assert.equal(await relay.metric("mxwarden_queue_up"), 0);

      await nats.resume();
      await relay.ready(60_000);
      const after = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@example.com"], body: simpleMessage("after", "after-outage") });
      assert.equal(after.data?.code, 250);
      queuedIds.push("<after-outage@client.test>");
      const sink = await SmtpSink.start(sinkPort);
      try {
        await eventually(
          "all accepted messages delivered",
          () => {
            const ids = new Set(sink.messageIds());
            return queuedIds.every((id) => ids.has(id));
          },
          90_000,
          250,
        );
        assert.ok(!sink.messageIds().includes("<during-outage@client.test>"));
      } finally {
        await sink.stop();
      }
    } finally {
      await relay.stop();
      await nats.stop();
    }
  });
});
