// Greylisting shared by two relay processes through one NATS KV bucket: the first attempt is
// temp-failed, the retry passes even when it reaches the other relay, and then the sender passes.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { rcptReply, type Reply } from "../harness/smtp-dialogue.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

const rcpt = (port: number, from: string, to: string): Promise<Reply> => rcptReply(port, { from, to });

describe("greylisting (NATS KV, two relays)", () => {
  const dir = tempDir("greylisting");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let relayA: RelayProcess;
  let relayB: RelayProcess;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    primary = await TestPrimary.start();
    const hosts = [{ host: "127.0.0.1", port: primary.port }];
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "grey.example", primary: { hosts }, greylisting: { enabled: true, delay: "2s", expiry: "1h", allowSenderDomains: ["partner.example"] } },
      { domain: "trusted.example", primary: { hosts }, greylisting: { enabled: true, delay: "1h", expiry: "2h", allowClients: ["127.0.0.0/8"] } },
      { domain: "plain.example", primary: { hosts } },
    ]);
    const options = { domainsPath: join(dir.path, "domains.yaml"), nats: nats.url };
    relayA = await RelayProcess.start({ ...options, dir: join(dir.path) });
    relayB = await RelayProcess.start({ ...options, dir: tempDir("greylisting-b").path });
    await Promise.all([relayA.ready(), relayB.ready()]);
  });

  after(async () => {
    await relayA?.stop();
    await relayB?.stop();
    await primary?.close();
    await nats?.stop();
  });

  it("temp-fails the first attempt and accepts the retry after the delay on the other relay", async () => {
    const first = await rcpt(relayA.smtpPort, "alice@sender.example", "bob@grey.example");
    const firstAt = Date.now();
    assert.equal(first.code, 451);
    assert.equal(first.status, "4.7.1");
    assert.match(first.text, /Greylisted/);
    // Relay B shares the triplet: too early there as well.
    assert.equal((await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example")).code, 451);
    const retry = await eventually("the retry to pass on relay B", async () => {
      const reply = await rcpt(relayB.smtpPort, "alice@sender.example", "bob@grey.example");
      return reply.code === 250 ? reply : undefined;
    }, 20_000, 250);
    assert.equal(retry.code, 250);
    assert.ok(Date.now() - firstAt >= 2000, "not before the delay");
    // Auto-allow: the same client network and sender domain now pass for other recipients, on either relay.
    assert.equal((await rcpt(relayA.smtpPort, "carol@sender.example", "dave@grey.example")).code, 250);
    assert.ok(await relayA.metric("mxwarden_filter_verdicts_total", 'filter="greylist",verdict="tempfail"') >= 1);
  });

  it("never greylists allowed clients, allowed sender domains or domains without greylisting", async () => {
    assert.equal((await rcpt(relayA.smtpPort, "x@new-sender.example", "y@trusted.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@partner.example", "y@grey.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@another.example", "y@plain.example")).code, 250);
    assert.equal((await rcpt(relayA.smtpPort, "x@another.example", "y@grey.example")).code, 451);
  });
});
