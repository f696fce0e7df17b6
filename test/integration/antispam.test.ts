// Content scoring with a real rspamd (Debian package, offline, stock rules): spam is refused in the
// SMTP dialogue, the score travels to the primary in X-Spam-Status, and per-domain thresholds apply.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { GTUBE, type TestRspamd } from "../harness/rspamd.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { headerValue, type ReceivedMessage, type TestPrimary } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

/** No Date and no Message-ID (MISSING_DATE 1, MISSING_MID 2.5): above the test's add-header threshold (3), far below reject (15). */
const suspicious = (id: string): string => `From: sender@client.test\r\nTo: someone@example.com\r\nSubject: ${id}\r\n\r\nHello.\r\n`;

describe("antispam (rspamd)", () => {
  const dir = tempDir("antispam");
  let stopStack: RelayStack["stop"] | undefined;
  let rspamd: TestRspamd;
  let primary: TestPrimary;
  let relay: RelayProcess;

  before(
    async () => {
      ({
        rspamd,
        primary,
        relay,
        stop: stopStack,
      } = await startRelayStack({ dir: dir.path, nats: true, rspamd: true, primary: true }, (peers) => {
        const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
        return {
          domains: [
            { domain: "example.com", primary: { hosts } },
            { domain: "strict.example", primary: { hosts }, antispam: { rejectScore: 3 } },
            { domain: "off.example", primary: { hosts }, antispam: { enabled: false } },
            { domain: "open.example", primary: { hosts }, antispam: { onError: "accept" } },
          ],
        };
      }));
    },
    { timeout: 180_000 },
  );

  after(() => stopStack?.());

  const find = (subject: string): ReceivedMessage | undefined => primary.messages.find((m) => headerValue(m.body, "Subject") === subject);

  it("refuses GTUBE with 554 5.7.1 during the dialogue", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("gtube", "gtube", `${GTUBE}\r\n`) });
    assert.equal(result.data?.code, 554);
    assert.equal(result.data?.status, "5.7.1");
    assert.equal(await relay.metric("mxwarden_filter_verdicts_total", 'filter="antispam",verdict="reject"'), 1);
  });

  it("delivers clean mail with its score in X-Spam-Status, in front of the message", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("clean", "clean") });
    assert.equal(result.data?.code, 250);
    const message = await eventually("clean message delivered", () => find("clean"));
    assert.match(headerValue(message.body, "X-Spam-Status") ?? "", /^No, score=-?\d+(\.\d+)? action=no action$/);
    assert.ok(message.body.toString("latin1").startsWith("X-Spam-Status: "), "filter headers come first");
  });

  it("marks a suspicious message as spam and delivers it", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: suspicious("suspicious") });
    assert.equal(result.data?.code, 250);
    const message = await eventually("suspicious message delivered", () => find("suspicious"));
    assert.match(headerValue(message.body, "X-Spam-Status") ?? "", /^Yes, score=\d+(\.\d+)? action=add header$/);
  });

  it("applies a domain's own reject score", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@strict.example"], body: suspicious("strict") });
    assert.equal(result.data?.code, 554);
  });

  it("lets a domain switch scoring off", async () => {
    const result = await sendMail(relay.smtpPort, {
      from: "s@client.test",
      to: ["a@off.example"],
      body: simpleMessage("unscored", "unscored", `${GTUBE}\r\n`),
    });
    assert.equal(result.data?.code, 250);
    const message = await eventually("unscored message delivered", () => find("unscored"));
    assert.equal(headerValue(message.body, "X-Spam-Status"), undefined);
  });

  it("answers 451 4.7.1 while rspamd is down, unless the domain fails open", async () => {
    await rspamd.stop();
    const closed = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("down", "down") });
    assert.equal(closed.data?.code, 451);
    assert.equal(closed.data?.status, "4.7.1");
    const open = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@open.example"], body: simpleMessage("fail-open", "fail-open") });
    assert.equal(open.data?.code, 250);
    const message = await eventually("fail-open message delivered", () => find("fail-open"));
    assert.match(headerValue(message.body, "X-Spam-Status") ?? "", /^Unknown/);
  });
});
