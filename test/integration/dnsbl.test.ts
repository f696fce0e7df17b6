// DNS block and allow lists through a real DNS server started by the test: clients connect from
// different loopback addresses (127.0.0.0/8), some of them listed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { TestDnsServer } from "../harness/dns-server.ts";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { rcptReply, type Reply } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

describe("DNS block and allow lists", () => {
  const dir = tempDir("dnsbl");
  let stopStack: RelayStack["stop"] | undefined;
  let dns: TestDnsServer;
  let relay: RelayProcess;

  before(async () => {
    const zones = {
      "2.0.0.127.bl.test": { a: ["127.0.0.2"] }, // listed (the conventional test entry)
      "3.0.0.127.bl.test": { a: ["127.255.255.254"] }, // "query refused": an error code, not a listing
      "4.0.0.127.bl.test": { a: ["127.0.0.2"] }, // listed, but also on the allow list
      "4.0.0.127.wl.test": { a: ["127.0.10.1"] },
      "1.0.0.127.broken.test": { servfail: true }, // a list that cannot answer
    };
    const hosts = [{ host: "127.0.0.1", port: 9 }];
    ({
      dns,
      relay,
      stop: stopStack,
    } = await startRelayStack(
      { dir: dir.path, dns: zones, nats: true },
      {
        domains: [
          { domain: "guarded.example", primary: { hosts }, dnsbl: { zones: ["bl.test"], allowZones: ["wl.test"] } },
          { domain: "open.example", primary: { hosts } },
          { domain: "careful.example", primary: { hosts }, dnsbl: { zones: ["broken.test"], onError: "tempfail" } },
          { domain: "trusting.example", primary: { hosts }, dnsbl: { zones: ["broken.test"] } },
        ],
      },
    ));
  });

  after(() => stopStack?.());

  const rcptFrom = (client: string, to: string): Promise<Reply> => rcptReply(relay.smtpPort, { client, from: "s@client.test", to });

  it("refuses a listed client with 554 5.7.1 naming the list", async () => {
    const reply = await rcptFrom("127.0.0.2", "a@guarded.example");
    assert.equal(reply.code, 554);
    assert.equal(reply.status, "5.7.1");
    assert.match(reply.text, /\[127\.0\.0\.2\] blocked using bl\.test/);
  });

  it("does not take a list's error code for a listing", async () => {
    assert.equal((await rcptFrom("127.0.0.3", "a@guarded.example")).code, 250);
  });

  it("lets an allow-listed client through the block list", async () => {
    assert.equal((await rcptFrom("127.0.0.4", "a@guarded.example")).code, 250);
  });

  it("accepts unlisted clients, and listed ones for domains without lists", async () => {
    assert.equal((await rcptFrom("127.0.0.1", "a@guarded.example")).code, 250);
    assert.equal((await rcptFrom("127.0.0.2", "a@open.example")).code, 250);
    assert.ok(dns.queries.includes("A 2.0.0.127.bl.test"));
  });

  it("fails open by default when a list cannot answer, or temp-fails where the domain asks", async () => {
    const careful = await rcptFrom("127.0.0.1", "a@careful.example");
    assert.equal(careful.code, 451);
    assert.equal(careful.status, "4.7.1");
    assert.equal((await rcptFrom("127.0.0.1", "a@trusting.example")).code, 250);
  });
});
