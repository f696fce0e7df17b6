// Two sites joined as docs/architecture.md describes them: each its own JetStream domain, their
// nats-servers joined by a leafnode, a relay per site with --site/--peer-sites. Mail sent to both
// sites must reach the primary once. Before the queue's subjects carried the site, each site's
// stream also captured the other site's publishes across the leafnode, and both delivered (160
// duplicates in 200 messages, issue 16).
//
// And the upgrade: a site that ran without --site keeps the mail it queued then, under the old
// subjects, and delivers it once it runs with a name.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { QUEUE_STREAM, QueueLayout, SPOOL_STREAM } from "../../relay/src/queue/layout.ts";
import { RETIRED_HEADER, peerStreamName } from "../../relay/src/queue/shadow-copies.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "../harness/relay-process.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { TwoSites, SITE_A, copiesHeld } from "../harness/two-sites.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";

/** Messages in a stream of one server, and the subjects they are stored under. */
async function streamState(server: TestNatsServer, stream: string): Promise<{ messages: number; subjects: string[] }> {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream, { subjects_filter: ">" });
    return { messages: info.state.messages, subjects: Object.keys(info.state.subjects ?? {}) };
  } finally {
    await nc.close();
  }
}

/** The copies of `peer`'s mail that `server`'s site holds and that the peer has not retired. */
async function liveCopies(server: TestNatsServer, peer: string): Promise<number> {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = peerStreamName(peer);
    const info = await jsm.streams.info(stream, { subjects_filter: new QueueLayout(peer).shadowCopyFilter }).catch(() => undefined);
    let live = 0;
    for (const subject of Object.keys(info?.state.subjects ?? {})) {
      const stored = await jsm.direct.getMessage(stream, { last_by_subj: subject });
      if (stored && !stored.header?.get(RETIRED_HEADER)) live++;
    }
    return live;
  } finally {
    await nc.close();
  }
}

/** Delivered Message-IDs at the primary, with how often each arrived. */
function deliveries(primary: TestPrimary): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of primary.messages) {
    const id = headerValue(message.body, "Message-ID") ?? "";
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** Two sites (harness/two-sites.ts) relaying `domain` to one test primary. */
class SitesWithPrimary {
  readonly sites: TwoSites;
  readonly primary: TestPrimary;

  private constructor(sites: TwoSites, primary: TestPrimary) {
    this.sites = sites;
    this.primary = primary;
  }

  /** `domain` gets the primary's address; `argsA`/`argsB` are each relay's extra flags. */
  static async start(prefix: string, domain: (primaryPort: number) => RelayDomainSpec, argsA: string[] = [], argsB: string[] = []): Promise<SitesWithPrimary> {
    const primary = await TestPrimary.start();
    try {
      const sites = await TwoSites.start({ dir: tempDir(prefix).path, domains: [domain(primary.port)], argsA, argsB });
      return new SitesWithPrimary(sites, primary);
    } catch (err) {
      await primary.close();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.sites.stop();
    await this.primary.close();
  }
}

describe("two sites joined by a leafnode deliver each message once", () => {
  let setup: SitesWithPrimary;

  before(async () => {
    setup = await SitesWithPrimary.start("two-sites", (port) => ({ domain: "two.example", primary: { hosts: [{ host: "127.0.0.1", port }] } }));
  });

  after(async () => {
    await setup?.stop();
  });

  it("200 messages, half to each site: 200 deliveries, no duplicates, both queues empty", async () => {
    const { primary, sites } = setup;
    const { natsA, natsB, relayA, relayB } = sites;
    const total = 200;
    const large = new Set([7, 150]);
    for (let i = 0; i < total; i++) {
      const relay = i % 2 === 0 ? relayA : relayB;
      // Two bodies above 128 KiB go through the spool, whose subjects are site-scoped too.
      const body = large.has(i) ? `${"y".repeat(998)}\r\n`.repeat(200) : "Hello.\r\n";
      const { data } = await sendMail(relay.smtpPort, { from: "alice@sender.test", to: ["bob@two.example"], body: simpleMessage(`m${i}`, `two-${i}`, body) });
      assert.equal(data?.code, 250, `message ${i} accepted`);
    }
    await eventually("every message delivered", () => deliveries(primary).size === total, 60_000);
    // Delivery is over at both sites only when both queues are empty; duplicates, if any, are in by then.
    await eventually(
      "both sites' queues empty",
      async () => (await streamState(natsA, QUEUE_STREAM)).messages === 0 && (await streamState(natsB, QUEUE_STREAM)).messages === 0,
      60_000,
    );
    const counts = deliveries(primary);
    const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
    assert.equal(duplicates, 0, "no message delivered twice");
    assert.equal(primary.messages.length, total);
    // Each site's spool only ever held its own bodies, and purged them after delivery.
    for (const nats of [natsA, natsB]) assert.equal((await streamState(nats, SPOOL_STREAM)).messages, 0);
    // Every message was copied to the other site, and every copy retired once delivered.
    assert.equal(
      (await relayA.metric("mxwarden_shadow_copies_total", 'result="stored"')) + (await relayB.metric("mxwarden_shadow_copies_total", 'result="stored"')),
      total,
    );
    await eventually("the copies retired at both sites", async () => (await liveCopies(natsB, "site-a")) === 0 && (await liveCopies(natsA, "site-b")) === 0);
    assert.equal(await copiesHeld(natsB, SITE_A), total / 2);
  });
});

describe("two sites flushing held mail at the same time", () => {
  let setup: SitesWithPrimary;

  before(async () => {
    setup = await SitesWithPrimary.start(
      "two-sites-flush",
      (port) => ({ domain: "flush.example", primary: { hosts: [{ host: "127.0.0.1", port }] } }),
      ["--probe-interval", "1s"],
      ["--probe-interval", "1s"],
    );
  });

  after(async () => {
    await setup?.stop();
  });

  // Acknowledgements travel on $JS.ACK.<stream>.<consumer>.… with the stream sequence and no
  // JetStream domain: with one consumer name at both sites, the acks of one site's flush deleted
  // the other site's held jobs of the same sequence numbers, undelivered (the fault suite's
  // scenario 1 lost 18 of 200 that way).
  it("delivers every held message of both sites once the primary is back", async () => {
    const { primary, sites } = setup;
    const { natsA, natsB, relayA, relayB } = sites;
    await primary.close();
    const total = 120;
    for (let i = 0; i < total; i++) {
      const relay = i % 2 === 0 ? relayA : relayB;
      const { data } = await sendMail(relay.smtpPort, { from: "alice@sender.test", to: ["bob@flush.example"], body: simpleMessage(`f${i}`, `flush-${i}`) });
      assert.equal(data?.code, 250);
    }
    await eventually(
      "every message held at its site",
      async () =>
        (await streamState(natsA, QUEUE_STREAM)).subjects.filter((s) => s.includes(".defer.")).length +
          (await streamState(natsB, QUEUE_STREAM)).subjects.filter((s) => s.includes(".defer.")).length ===
        total,
      30_000,
    );
    await primary.listen();
    await eventually("every message delivered", () => deliveries(primary).size === total, 60_000).catch(async (err: unknown) => {
      const left = [(await streamState(natsA, QUEUE_STREAM)).messages, (await streamState(natsB, QUEUE_STREAM)).messages];
      throw new Error(`${deliveries(primary).size} of ${total} delivered; still queued at A and B: ${left.join(", ")}: ${String(err)}`);
    });
    assert.equal(primary.messages.length, total, "no duplicates");
  });
});

describe("a site lost with a full queue: its peer takes over and delivers its mail", () => {
  let setup: SitesWithPrimary;

  before(async () => {
    setup = await SitesWithPrimary.start(
      "takeover",
      (port) => ({ domain: "lost.example", primary: { hosts: [{ host: "127.0.0.1", port }] } }),
      [],
      ["--takeover-after", "4s"],
    );
  });

  after(async () => {
    await setup?.stop();
  });

  it("delivers every message site A queued, once, after A is destroyed", async () => {
    const { primary, sites } = setup;
    const { natsA, natsB, relayA, relayB } = sites;
    // The primary defers everything: site A's queue fills up.
    primary.recipientRule = () => ({ code: 451, message: "busy" });
    const total = 40;
    for (let i = 0; i < total; i++) {
      const body = i === 3 ? `${"q".repeat(998)}\r\n`.repeat(300) : "Queued at A.\r\n";
      const { data } = await sendMail(relayA.smtpPort, {
        from: "alice@sender.test",
        to: ["bob@lost.example"],
        body: simpleMessage(`l${i}`, `lost-${i}`, body),
      });
      assert.equal(data?.code, 250);
    }
    const copiedAt = Date.now();
    await eventually("site B holds a live copy of each", async () => (await liveCopies(natsB, "site-a")) === total, 30_000);
    console.log(`# ${total} copies at site B ${Date.now() - copiedAt} ms after the last 250`);
    assert.equal(await relayB.metric("mxwarden_peer_shadow_lag_messages", 'peer="site-a"'), 0);

    // Site A is lost: its relay and its server killed, its store deleted.
    await relayA.kill9();
    await natsA.stop();
    rmSync(natsA.dir, { recursive: true, force: true });
    primary.recipientRule = () => undefined;

    await eventually("site B delivered site A's mail", () => deliveries(primary).size === total, 60_000);
    await eventually("site B's queue empty", async () => (await streamState(natsB, QUEUE_STREAM)).messages === 0, 30_000);
    assert.equal(primary.messages.length, total, "no duplicates");
    assert.equal(await relayB.metric("mxwarden_takeover_messages_total", 'peer="site-a"'), total);
    assert.ok((await relayB.metric("mxwarden_peer_last_contact_seconds", 'peer="site-a"')) >= 4);
    const large = primary.messages.find((m) => headerValue(m.body, "Message-ID") === "<lost-3@client.test>");
    assert.ok(large && large.body.length > 290_000, "the spooled body came over with its copy");
  });
});

describe("a takeover by hand: mxwarden-queue takeover --peer", () => {
  let setup: SitesWithPrimary;

  before(async () => {
    setup = await SitesWithPrimary.start("takeover-manual", (port) => ({ domain: "manual.example", primary: { hosts: [{ host: "127.0.0.1", port }] } }));
  });

  after(async () => {
    await setup?.stop();
  });

  it("queues the lost site's live copies once, however often it runs", async () => {
    const { primary, sites } = setup;
    const { natsA, natsB, relayA, relayB } = sites;
    primary.recipientRule = () => ({ code: 451, message: "busy" });
    const total = 15;
    for (let i = 0; i < total; i++) {
      const { data } = await sendMail(relayA.smtpPort, { from: "alice@sender.test", to: ["bob@manual.example"], body: simpleMessage(`h${i}`, `manual-${i}`) });
      assert.equal(data?.code, 250);
    }
    await eventually("site B holds a live copy of each", async () => (await liveCopies(natsB, "site-a")) === total, 30_000);
    await relayA.kill9();
    await natsA.stop();
    rmSync(natsA.dir, { recursive: true, force: true });
    primary.recipientRule = () => undefined;

    const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        execFile(
          join(repoRoot, "relay/bin/mxwarden-queue"),
          ["--nats", natsB.url, "--actor", "oncall", ...args],
          { timeout: 60_000 },
          (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
        );
      });
    const first = await cli(["takeover", "--peer", "site-a", "--json"]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(JSON.parse(first.stdout), { taken: total, already: 0, failed: 0 });
    assert.match(first.stderr, /"actor":"oncall"/, "the takeover is in the audit log with who ran it");
    const again = await cli(["takeover", "--peer", "site-a", "--json"]);
    assert.deepEqual(JSON.parse(again.stdout), { taken: 0, already: total, failed: 0 });
    await eventually("site B delivered site A's mail", () => deliveries(primary).size === total, 60_000);
    await eventually("site B's queue empty", async () => (await streamState(natsB, QUEUE_STREAM)).messages === 0, 30_000);
    assert.equal(primary.messages.length, total, "no duplicates");
    const unknown = await cli(["takeover", "--peer", "site-z"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /holds no copies of a site named "site-z"/);
  });
});

describe("a site that comes back after its peer took over", () => {
  let setup: SitesWithPrimary;

  before(async () => {
    setup = await SitesWithPrimary.start(
      "takeover-return",
      (port) => ({ domain: "back.example", primary: { hosts: [{ host: "127.0.0.1", port }] }, queue: { retry: { initialBackoff: "2s", maxBackoff: "2s" } } }),
      [],
      ["--takeover-after", "4s"],
    );
  });

  after(async () => {
    await setup?.stop();
  });

  it("does not deliver again what its peer delivered in its place", async () => {
    const { primary, sites } = setup;
    const { natsA, natsB, relayA, relayB } = sites;
    primary.recipientRule = () => ({ code: 451, message: "busy" });
    const total = 20;
    for (let i = 0; i < total; i++) {
      const { data } = await sendMail(relayA.smtpPort, { from: "alice@sender.test", to: ["bob@back.example"], body: simpleMessage(`b${i}`, `back-${i}`) });
      assert.equal(data?.code, 250);
    }
    await eventually("site B holds a live copy of each", async () => (await liveCopies(natsB, "site-a")) === total, 30_000);
    // Site A goes dark with its store intact (a power cut, a network gone for long).
    await relayA.kill9();
    await natsA.pause();
    primary.recipientRule = () => undefined;
    await eventually("site B delivered site A's mail", () => deliveries(primary).size === total, 60_000);

    // Site A comes back with its old queue: its retries find B's took markers and deliver nothing.
    await natsA.resume();
    sites.relayA = await sites.startRelayA();
    await sites.relayA.ready();
    await eventually("site A's old queue settled", async () => (await streamState(natsA, QUEUE_STREAM)).messages === 0, 60_000);
    assert.equal(primary.messages.length, total, "nothing delivered twice");
    assert.equal(await sites.relayA.metric("mxwarden_delivery_attempts_total", 'result="taken_over_by_peer"'), total);
  });
});

describe("a site that gets a name keeps the mail it queued without one", () => {
  const dir = tempDir("site-upgrade");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let relay: RelayProcess | undefined;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"), { domain: "site-a" });
    primary = await TestPrimary.start();
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await nats?.stop();
  });

  it("delivers mail queued under the unscoped subjects after the relay restarts with --site", async () => {
    const domainsPath = join(dir.path, "domains.yaml");
    // The primary refuses for now: the mail stays queued (deferred) under the unscoped subjects.
    primary.recipientRule = () => ({ code: 451, message: "try later" });
    writeDomains(domainsPath, [
      { domain: "up.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, queue: { retry: { initialBackoff: "1s", maxBackoff: "2s" } } },
    ]);
    mkdirSync(join(dir.path, "relay"));
    relay = await RelayProcess.start({ dir: join(dir.path, "relay"), domainsPath, nats: nats.url });
    await relay.ready();
    const bodies = ["Small.\r\n", `${"z".repeat(998)}\r\n`.repeat(200)];
    for (const [i, body] of bodies.entries()) {
      const { data } = await sendMail(relay.smtpPort, { from: "alice@sender.test", to: ["bob@up.example"], body: simpleMessage(`u${i}`, `up-${i}`, body) });
      assert.equal(data?.code, 250);
    }
    await eventually(
      "both messages deferred once",
      async () => (await streamState(nats, QUEUE_STREAM)).subjects.filter((s) => s.startsWith("mxw.queue.defer.")).length === 2,
    );
    await relay.stop();

    primary.recipientRule = () => undefined;
    relay = await RelayProcess.start({ dir: join(dir.path, "relay"), domainsPath, nats: nats.url, args: ["--site", "site-a"] });
    await relay.ready();
    await eventually("both messages delivered", () => deliveries(primary).size === 2, 30_000);
    const large = primary.messages.find((m) => headerValue(m.body, "Message-ID") === "<up-1@client.test>");
    assert.ok(large && large.body.length > 190_000, "the spooled body was read from its unscoped subjects");
    await eventually(
      "queue and spool empty",
      async () => (await streamState(nats, QUEUE_STREAM)).messages === 0 && (await streamState(nats, SPOOL_STREAM)).messages === 0,
    );
    assert.equal(primary.messages.length, 2, "no duplicates");
  });
});
