// Opt-in per-domain queue gauges from a real relay and nats-server: with --domain-metrics 2, three
// domains whose primary is down and mail waiting for two of them, those two get series (the one
// with the older mail first) and the idle third is left out and counted.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

describe("per-domain queue metrics (--domain-metrics)", () => {
  const dir = tempDir("domain-metrics");
  let stopStack: RelayStack["stop"] | undefined;
  let relay: RelayProcess;

  before(async () => {
    // Nothing listens on the primaries' port: the mail stays queued.
    const hosts = [{ host: "127.0.0.1", port: await freePort() }];
    ({ relay, stop: stopStack } = await startRelayStack(
      { dir: dir.path, nats: true },
      {
        domains: [
          { domain: "older.example", primary: { hosts } },
          { domain: "newer.example", primary: { hosts } },
          { domain: "empty.example", primary: { hosts } },
        ],
        args: ["--domain-metrics", "2"],
      },
    ));
  });

  after(() => stopStack?.());

  it("exports the domains with the oldest mail, up to the cap, and counts the rest", async () => {
    const first = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@older.example"], body: simpleMessage("first", "dm-1") });
    assert.equal(first.data?.code, 250);
    await eventually(
      "older.example's mail is a second old",
      async () => (await relay.metric("mxwarden_domain_queue_oldest_message_age_seconds", 'domain="older.example"')) >= 1,
      30_000,
      250,
    );
    for (const id of ["dm-2", "dm-3"]) {
      const later = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@newer.example"], body: simpleMessage("later", id) });
      assert.equal(later.data?.code, 250);
    }
    await eventually(
      "newer.example's queue counted",
      async () => (await relay.metric("mxwarden_domain_queue_messages", 'domain="newer.example"')) === 2,
      30_000,
      250,
    );
    const text = await relay.metricsText();
    assert.match(text, /^mxwarden_domain_queue_messages\{domain="older\.example"\} 1$/m);
    assert.doesNotMatch(text, /domain="empty\.example"/);
    assert.equal(await relay.metric("mxwarden_domain_metrics_omitted"), 1);
  });
});
