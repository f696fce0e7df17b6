// Greylisting shared by two relay processes through one NATS KV bucket: the first attempt is
// temp-failed, the retry passes even when it reaches the other relay, and then the sender passes.
// Then the same between two sites: two JetStream domains joined by a leafnode, as two clusters are.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { rcptReply, type Reply } from "../harness/smtp-dialogue.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { GREYLIST_BUCKET } from "../../relay/src/filter/greylist.ts";

const rcpt = (port: number, from: string, to: string): Promise<Reply> => rcptReply(port, { from, to });

describe("greylisting (NATS KV, two relays)", () => {
  const dir = tempDir("greylisting");
  let stopStack: RelayStack["stop"] | undefined;
  let relayA: RelayProcess;
  let relayB: RelayProcess;

  before(async () => {
    const stack = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => {
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "grey.example", primary: { hosts }, greylisting: { enabled: true, delay: "2s", expiry: "1h", allowSenderDomains: ["partner.example"] } },
          { domain: "trusted.example", primary: { hosts }, greylisting: { enabled: true, delay: "1h", expiry: "2h", allowClients: ["127.0.0.0/8"] } },
          { domain: "plain.example", primary: { hosts } },
        ],
      };
    });
    stopStack = stack.stop;
    relayA = stack.relay;
    relayB = await stack.addRelay();
  });

  after(() => stopStack?.());

  it("temp-fails the first attempt and accepts the retry after the delay on the other relay", async () => {
    const first = await rcpt(relayA.smtpPort, "alice@sender.example", "bob@grey.example");
    const firstAt = Date.now();
    assert.equal(first.code, 451);
    assert.equal(first.status, "4.7.1");
    assert.match(first.text, /Greylisted/);
    // Relay B shares the triplet: too early there as well.
    assert.equal((await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example")).code, 451);
    const retry = await eventually(
      "the retry to pass on relay B",
      async () => {
        const reply = await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example");
        return reply.code === 250 ? reply : undefined;
      },
      20_000,
      250,
    );
    assert.equal(retry.code, 250);
    assert.ok(Date.now() - firstAt >= 2000, "not before the delay");
    // Auto-allow: the same client network and sender domain now pass for other recipients, on either relay.
    assert.equal((await rcpt(relayA.smtpPort, "carol@sender.example", "dave@grey.example")).code, 250);
    assert.ok((await relayA.metric("mxwarden_filter_verdicts_total", 'filter="greylist",verdict="tempfail"')) >= 1);
  });

  it("never greylists allowed clients, allowed sender domains or domains without greylisting", async () => {
    assert.equal((await rcpt(relayA.smtpPort, "x@new-sender.example", "y@trusted.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@partner.example", "y@grey.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@another.example", "y@plain.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@another.example", "y@grey.example")).code, 451);
  });
});

describe("greylisting shared between two sites (JetStream domains over a leafnode)", () => {
  const dir = tempDir("greylisting-sites");
  let natsA: TestNatsServer;
  let natsB: TestNatsServer;
  let primary: TestPrimary;
  let relayA: RelayProcess;
  let relayB: RelayProcess;

  /** The keys of one KV bucket on one site's server, read with a plain client. */
  async function bucketKeys(server: TestNatsServer, bucket: string): Promise<string[]> {
    const nc = await connect({ servers: server.url });
    try {
      const kv = await new Kvm(jetstream(nc)).open(bucket);
      const keys: string[] = [];
      for await (const key of await kv.keys()) keys.push(key);
      return keys;
    } finally {
      await nc.close();
    }
  }

  before(async () => {
    const leafnodePort = await freePort();
    natsA = await TestNatsServer.start(join(dir.path, "nats-a"), { domain: "site-a", leafnodePort });
    natsB = await TestNatsServer.start(join(dir.path, "nats-b"), { domain: "site-b", leafnodeRemote: `nats-leaf://127.0.0.1:${leafnodePort}` });
    primary = await TestPrimary.start();
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "grey.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, greylisting: { enabled: true, delay: "2s", expiry: "1h" } },
    ]);
    const domainsPath = join(dir.path, "domains.yaml");
    for (const site of ["a", "b"]) mkdirSync(join(dir.path, site));
    relayA = await RelayProcess.start({ dir: join(dir.path, "a"), domainsPath, nats: natsA.url, args: ["--site", "site-a", "--peer-sites", "site-b"] });
    relayB = await RelayProcess.start({ dir: join(dir.path, "b"), domainsPath, nats: natsB.url, args: ["--site", "site-b", "--peer-sites", "site-a"] });
    await Promise.all([relayA.ready(), relayB.ready()]);
  });

  after(async () => {
    await relayA?.stop();
    await relayB?.stop();
    await primary?.close();
    await natsB?.stop();
    await natsA?.stop();
  });

  it("lets a retry pass at the other site after the delay, and the auto-allow travels back", async () => {
    const first = await rcpt(relayA.smtpPort, "alice@sender.example", "bob@grey.example");
    const firstAt = Date.now();
    assert.equal(first.code, 451);
    // Site A wrote the triplet into its own origin bucket; site B's view sources it over the leafnode.
    await eventually("site A's triplet in site B's view", async () => (await bucketKeys(natsB, GREYLIST_BUCKET)).some((key) => key.startsWith("t.")));
    assert.equal((await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example")).code, 451, "too early at site B as well");
    const retry = await eventually(
      "the retry to pass at site B",
      async () => {
        const reply = await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example");
        return reply.code === 250 ? reply : undefined;
      },
      20_000,
      250,
    );
    assert.equal(retry.code, 250);
    assert.ok(Date.now() - firstAt >= 2000, "not before the delay");
    // Site B judged by site A's first-seen time: it never stored a triplet of its own.
    const originB = await bucketKeys(natsB, `${GREYLIST_BUCKET}-site-b`);
    assert.deepEqual(
      originB.filter((key) => key.startsWith("t.")),
      [],
    );
    assert.equal(originB.filter((key) => key.startsWith("a.")).length, 1, "site B stored the auto-allow");
    // The auto-allow written at site B lets the sender's network pass at site A too.
    await eventually(
      "the auto-allow to reach site A",
      async () => (await rcpt(relayA.smtpPort, "carol@sender.example", "dave@grey.example")).code === 250,
      20_000,
      250,
    );
  });
});
