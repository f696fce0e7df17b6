// Checks of the client itself, per domain: a HELO claiming to be this relay, a HELO that is no
// host name, and forward-confirmed reverse DNS, against a real DNS server with PTR records.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { rcptReply, type Reply } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

describe("client checks: HELO and reverse DNS", () => {
  const dir = tempDir("client-checks");
  let stopStack: RelayStack["stop"] | undefined;
  let relay: RelayProcess;

  before(async () => {
    const zones = {
      "51.0.0.127.in-addr.arpa": { ptr: ["mail.good.test"] },
      "mail.good.test": { a: ["127.0.0.51"] },
      "52.0.0.127.in-addr.arpa": { ptr: ["mail.liar.test"] }, // the name points elsewhere
      "mail.liar.test": { a: ["192.0.2.99"] },
    };
    const hosts = [{ host: "127.0.0.1", port: 9 }];
    ({ relay, stop: stopStack } = await startRelayStack(
      { dir: dir.path, dns: zones, nats: true },
      {
        domains: [
          { domain: "strict.example", primary: { hosts }, clientChecks: { rejectInvalidHelo: true, reverseDns: "reject" } },
          { domain: "lax.example", primary: { hosts }, clientChecks: { rejectHeloOurName: false } },
          { domain: "example.com", primary: { hosts } },
        ],
      },
    ));
  });

  after(() => stopStack?.());

  const rcpt = (client: string, helo: string, to: string): Promise<Reply> => rcptReply(relay.smtpPort, { client, helo, from: "s@client.test", to });

  it("refuses a HELO with this relay's own name, unless the domain allows it", async () => {
    const forged = await rcpt("127.0.0.51", "backup-mx.test", "a@example.com");
    assert.equal(forged.code, 550);
    assert.match(forged.text, /not me/);
    assert.equal((await rcpt("127.0.0.51", "backup-mx.test", "a@lax.example")).code, 250);
  });

  it("refuses a HELO that is no host name where the domain asks for it", async () => {
    assert.equal((await rcpt("127.0.0.51", "localhost", "a@strict.example")).code, 550);
    assert.equal((await rcpt("127.0.0.51", "mail.good.test", "a@strict.example")).code, 250);
    assert.equal((await rcpt("127.0.0.51", "[127.0.0.51]", "a@strict.example")).code, 250, "an address literal is valid");
    assert.equal((await rcpt("127.0.0.51", "localhost", "a@example.com")).code, 250, "off by default");
  });

  it("requires forward-confirmed reverse DNS where the domain asks for it", async () => {
    const liar = await rcpt("127.0.0.52", "mail.liar.test", "a@strict.example");
    assert.equal(liar.code, 550);
    assert.equal(liar.status, "5.7.25");
    const none = await rcpt("127.0.0.53", "mail.none.test", "a@strict.example");
    assert.equal(none.code, 550, "no PTR at all");
    assert.equal((await rcpt("127.0.0.53", "mail.none.test", "a@example.com")).code, 250, "off by default");
  });
});
