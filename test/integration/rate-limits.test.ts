// Rate limits counted together by two relay processes through shared JetStream counters: a sender
// cannot multiply its allowance by spreading its connections over relays.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { rcptReply, type Reply } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

describe("rate limits (JetStream counters, two relays)", () => {
  const dir = tempDir("rate-limits");
  let stopStack: RelayStack["stop"] | undefined;
  let relayA: RelayProcess;
  let relayB: RelayProcess;

  before(async () => {
    const hosts = [{ host: "127.0.0.1", port: 9 }];
    const stack = await startRelayStack(
      { dir: dir.path, nats: true },
      {
        domains: [
          { domain: "limited.example", primary: { hosts }, rateLimits: { perClient: "3/1h" } },
          { domain: "small.example", primary: { hosts }, rateLimits: { perDomain: "2/1h", perSenderDomain: "5/1h" } },
          { domain: "free.example", primary: { hosts } },
        ],
      },
    );
    stopStack = stack.stop;
    relayA = stack.relay;
    relayB = await stack.addRelay();
  });

  after(() => stopStack?.());

  const rcpt = (relay: RelayProcess, client: string, to: string): Promise<Reply> => rcptReply(relay.smtpPort, { client, from: "s@sender.test", to });

  it("counts one client's recipients across both relays", async () => {
    const codes = [
      (await rcpt(relayA, "127.0.0.31", "a@limited.example")).code,
      (await rcpt(relayB, "127.0.0.31", "b@limited.example")).code,
      (await rcpt(relayA, "127.0.0.31", "c@limited.example")).code,
    ];
    assert.deepEqual(codes, [250, 250, 250]);
    const fourth = await rcpt(relayB, "127.0.0.31", "d@limited.example");
    assert.equal(fourth.code, 451);
    assert.equal(fourth.status, "4.7.0");
    assert.equal((await rcpt(relayB, "127.0.0.32", "d@limited.example")).code, 250, "another client has its own allowance");
    assert.equal((await rcpt(relayB, "127.0.0.31", "d@free.example")).code, 250, "a domain without limits is not affected");
  });

  it("limits a whole domain whoever sends", async () => {
    assert.equal((await rcpt(relayA, "127.0.0.41", "a@small.example")).code, 250);
    assert.equal((await rcpt(relayB, "127.0.0.42", "b@small.example")).code, 250);
    assert.equal((await rcpt(relayA, "127.0.0.43", "c@small.example")).code, 451);
  });
});
