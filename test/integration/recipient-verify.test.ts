// Recipient verification against a real primary that knows its users: unknown recipients are
// refused at RCPT (no backscatter), answers are cached in NATS KV, and while the primary is down
// the cache decides.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { rcptReplies, type Reply } from "../harness/smtp-dialogue.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { tempDir } from "../harness/workspace.ts";

describe("recipient verification (callout to the primary)", () => {
  const dir = tempDir("verify");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let relay: RelayProcess;
  const asked: string[] = [];

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    primary = await TestPrimary.start();
    primary.recipientRule = (address) => {
      asked.push(address);
      const user = address.split("@")[0] ?? "";
      return ["alice", "bob"].includes(user) ? undefined : { code: 550, message: "5.1.1 User unknown" };
    };
    const hosts = [{ host: "127.0.0.1", port: primary.port }];
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "verify.example", primary: { hosts }, recipients: { mode: "verify" } },
      { domain: "lenient.example", primary: { hosts }, recipients: { mode: "verify", verify: { whenUnavailable: "accept" } } },
    ]);
    relay = await RelayProcess.start({ dir: dir.path, domainsPath: join(dir.path, "domains.yaml"), nats: nats.url });
    await relay.ready();
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await nats?.stop();
  });

  const rcpts = (...addresses: string[]): Promise<Reply[]> => rcptReplies(relay.smtpPort, { from: "s@client.test", to: addresses });


  it("accepts known recipients and refuses unknown ones with 550 5.1.1, asking the primary once", async () => {
    const [alice, zed] = await rcpts("alice@verify.example", "zed@verify.example");
    assert.equal(alice?.code, 250);
    assert.equal(zed?.code, 550);
    assert.equal(zed?.status, "5.1.1");
    const again = await rcpts("alice@verify.example", "zed@verify.example");
    assert.deepEqual(again.map((r) => r.code), [250, 550]);
    assert.deepEqual(asked.sort(), ["alice@verify.example", "zed@verify.example"], "the second answers came from the cache");
    assert.equal(primary.messages.length, 0, "a callout delivers nothing");
  });

  it("decides from the cache while the primary is down, and temp-fails what it cannot know", async () => {
    await rcpts("bob@lenient.example");
    await primary.close();
    try {
      const [alice, zed, newcomer, lenient] = await rcpts("alice@verify.example", "zed@verify.example", "newcomer@verify.example", "newcomer@lenient.example");
      assert.equal(alice?.code, 250);
      assert.equal(zed?.code, 550);
      assert.equal(newcomer?.code, 451);
      assert.equal(newcomer?.status, "4.4.3");
      assert.equal(lenient?.code, 250, "whenUnavailable: accept");
    } finally {
      await primary.listen();
    }
    const [newcomer] = await rcpts("newcomer@verify.example");
    assert.equal(newcomer?.code, 550, "verified once the primary is back");
  });
});
