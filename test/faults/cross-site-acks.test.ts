// Why the fault suite lost mail at two sites (docs/architecture.md, "Failure matrix"): a JetStream
// acknowledgement is a message on `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`, with
// no site in it, and the leafnode that joins the sites carries it. While both sites' delivery
// consumers had the same name (mxw-deliver on MXW_QUEUE), a site's acks reached the other site's
// consumer, which took them for acks of its own jobs with those sequence numbers: in a work-queue
// stream, an acknowledged job is deleted. The consumers now carry the site's name
// (QueueLayout.deliverConsumer); this test keeps it so. Loopback, one server per site, no netns.
//
// Site B's relay is stopped and B's delivery consumer hands ten jobs out (as to a relay busy with
// them); then site A's relay delivers mail, acknowledging jobs with the same sequence numbers.
// B's ten jobs must still be in B's queue.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { QUEUE_STREAM, QueueLayout } from "../../relay/src/queue/index.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { smtpSource } from "../harness/postfix-tools.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

const DOMAIN = "example.com";
const PARKED = 10;

describe("two sites joined by a leafnode: one site's acknowledgements and the other's queue", () => {
  const dir = tempDir("cross-site-acks");
  let natsA: TestNatsServer;
  let natsB: TestNatsServer;
  let primary: TestPrimary;
  let relayA: RelayProcess;
  let relayB: RelayProcess | undefined;
  let ncB: NatsConnection | undefined;

  before(async () => {
    const leafnodePort = await freePort();
    natsA = await TestNatsServer.start(join(dir.path, "nats-a"), { domain: "a", leafnodePort });
    natsB = await TestNatsServer.start(join(dir.path, "nats-b"), { domain: "b", leafnodeRemote: `nats-leaf://127.0.0.1:${leafnodePort}` });
    primary = await TestPrimary.start();
    const domainsPath = join(dir.path, "domains.yaml");
    writeDomains(domainsPath, [{ domain: DOMAIN, primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } }]);
    for (const site of ["a", "b"]) mkdirSync(join(dir.path, site));
    relayA = await RelayProcess.start({ dir: join(dir.path, "a"), domainsPath, nats: natsA.url, args: ["--site", "a", "--peer-sites", "b"] });
    relayB = await RelayProcess.start({ dir: join(dir.path, "b"), domainsPath, nats: natsB.url, args: ["--site", "b", "--peer-sites", "a"] });
    await Promise.all([relayA.ready(), relayB.ready()]);
    // B's relay created B's queue and its consumer; now nobody at B settles anything.
    await relayB.stop();
    relayB = undefined;
  });

  after(async () => {
    await ncB?.close();
    await relayB?.stop();
    await relayA?.stop();
    await primary?.close();
    await natsB?.stop();
    await natsA?.stop();
  });

  it("leaves site B's jobs alone when site A acknowledges its own", async (t) => {
    ncB = await connect({ servers: natsB.url });
    const jsB = jetstream(ncB);
    const jsmB = await jetstreamManager(ncB);
    const layoutB = new QueueLayout("b");
    for (let i = 0; i < PARKED; i++) await jsB.publish(layoutB.readySubject(DOMAIN, `PARKED${i}`), new TextEncoder().encode("parked"));
    // Handed out and not yet acknowledged, as the jobs a relay at B is delivering.
    const handedOut: number[] = [];
    const batch = await (await jsB.consumers.get(QUEUE_STREAM, layoutB.deliverConsumer)).fetch({ max_messages: PARKED, expires: 5000 });
    for await (const msg of batch) {
      handedOut.push(msg.seq);
      if (handedOut.length === PARKED) break;
    }
    assert.deepEqual(
      handedOut,
      Array.from({ length: PARKED }, (_, i) => i + 1),
    );

    await smtpSource({ port: relayA.smtpPort, messages: 30, sessions: 3, length: 512, from: "s@client.test", to: `user@${DOMAIN}` });
    await primary.waitForMessages(30, 60_000);
    // Site A acknowledged its jobs 1..30 once each was delivered; give the last acks time to land.
    await eventually("site A's queue to be empty", async () => (await relayA.metric("mxwarden_queue_messages", 'state="ready"')) === 0, 30_000, 250);
    const remaining = (await jsmB.streams.info(QUEUE_STREAM)).state.messages;
    t.diagnostic(`site B's queue holds ${remaining} of its ${PARKED} jobs after site A's deliveries`);
    assert.equal(remaining, PARKED, "site A's acknowledgements deleted site B's jobs");
  });
});
