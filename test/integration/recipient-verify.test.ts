// Recipient verification against a real primary that knows its users: unknown recipients are
// refused at RCPT (no backscatter), answers are cached in NATS KV, and while the primary is down
// the cache decides.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { rcptReplies, type Reply } from "../harness/smtp-dialogue.ts";
import type { TestPrimary } from "../harness/test-primary.ts";
import { tempDir } from "../harness/workspace.ts";

describe("recipient verification (callout to the primary)", () => {
  const dir = tempDir("verify");
  let stopStack: RelayStack["stop"] | undefined;
  let primary: TestPrimary;
  let relay: RelayProcess;
  const asked: string[] = [];

  before(async () => {
    ({
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => {
      peers.primary.recipientRule = (address) => {
        asked.push(address);
        const user = address.split("@")[0] ?? "";
        return ["alice", "bob"].includes(user) ? undefined : { code: 550, message: "5.1.1 User unknown" };
      };
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "verify.example", primary: { hosts }, recipients: { mode: "verify" } },
          { domain: "lenient.example", primary: { hosts }, recipients: { mode: "verify", verify: { whenUnavailable: "accept" } } },
        ],
      };
    }));
  });

  after(() => stopStack?.());

  const rcpts = (...addresses: string[]): Promise<Reply[]> => rcptReplies(relay.smtpPort, { from: "s@client.test", to: addresses });

  it("accepts known recipients and refuses unknown ones with 550 5.1.1, asking the primary once", async () => {
    const [alice, zed] = await rcpts("alice@verify.example", "zed@verify.example");
    assert.equal(alice?.code, 250);
    assert.equal(zed?.code, 550);
    assert.equal(zed?.status, "5.1.1");
    const again = await rcpts("alice@verify.example", "zed@verify.example");
    assert.deepEqual(
      again.map((r) => r.code),
      [250, 550],
    );
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
