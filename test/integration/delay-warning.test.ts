// spec.queue.delayWarning against a real relay and real primaries: a message still queued after
// the duration sends exactly one RFC 3464 "delayed" DSN to its sender's domain (here a second
// test primary, through --bounce-relay), however often it is deferred afterwards, and the message
// itself is still delivered once its primary comes back. First the primary is down (the job is
// re-deferred without an attempt while the domain is marked down), then it answers 451 twice per
// recipient (deferrals after an attempt, with 1-2 s backoffs), then it accepts. A message from
// the null sender, deferred as long, gets no warning.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue, type ReceivedMessage } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

function isDsn(message: ReceivedMessage): boolean {
  return message.from === "" && /multipart\/report/i.test(headerValue(message.body, "Content-Type") ?? "");
}

describe("delay warning", () => {
  const dir = tempDir("delay-warning");
  let stopStack: RelayStack["stop"] | undefined;
  /** The sender's MX: DSNs arrive here. */
  let senderMx: TestPrimary;
  /** The recipient domain's primary: down at first, then deferring, then accepting. */
  let recipientPrimary: TestPrimary;
  let relay: RelayProcess;
  /** 451 answers per recipient address so far: two each, then accepted. */
  const deferrals = new Map<string, number>();

  before(async () => {
    recipientPrimary = await TestPrimary.start();
    recipientPrimary.recipientRule = (address) => {
      const count = deferrals.get(address) ?? 0;
      if (count >= 2) return undefined;
      deferrals.set(address, count + 1);
      return { code: 451, message: "4.3.2 primary busy, try again later" };
    };
    await recipientPrimary.close();
    ({
      primary: senderMx,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => ({
      domains: [
        {
          domain: "delayed.example",
          primary: { hosts: [{ host: "127.0.0.1", port: recipientPrimary.port }] },
          queue: { delayWarning: "2s", retry: { initialBackoff: "1s", maxBackoff: "2s" } },
        },
      ],
      args: ["--bounce-relay", `127.0.0.1:${peers.primary.port}`, "--probe-interval", "1s"],
    })));
  });

  after(async () => {
    await stopStack?.();
    await recipientPrimary?.close();
  });

  it("sends one delayed DSN while the primary is down or deferring, and delivers the message when it comes back", async () => {
    const id = "delayed-once";
    const original = `<${id}@client.test>`;
    const result = await sendMail(relay.smtpPort, { from: "sender@client.test", to: ["user@delayed.example"], body: simpleMessage("delayed", id) });
    assert.equal(result.data?.code, 250);
    const nullId = `<delayed-null@client.test>`;
    const fromNull = await sendMail(relay.smtpPort, { from: "", to: ["other@delayed.example"], body: simpleMessage("null", "delayed-null") });
    assert.equal(fromNull.data?.code, 250);
    const warnings = () => senderMx.messages.filter((m) => isDsn(m) && m.body.toString("latin1").includes(original));

    // The primary is down: the warning goes out from a deferral without an attempt.
    const [dsn] = await eventually("the delayed DSN", () => (warnings().length > 0 ? warnings() : undefined), 90_000);
    assert.ok(dsn);
    assert.deepEqual(dsn.to, ["sender@client.test"]);
    const text = dsn.body.toString("latin1");
    assert.match(headerValue(dsn.body, "Subject") ?? "", /Delayed Mail/);
    assert.match(text, /report-type="?delivery-status"?/i);
    assert.match(text, /Final-Recipient: rfc822; ?user@delayed\.example/);
    assert.match(text, /Action: delayed/);
    assert.match(text, /Status: 4\.\d{1,3}\.\d{1,3}/);
    assert.match(text, /Diagnostic-Code: smtp; ?\S/);
    assert.match(text, /Will-Retry-Until: /);
    assert.doesNotMatch(text, /Action: failed/);
    assert.equal(
      senderMx.messages.some((m) => headerValue(m.body, "Message-ID") === original),
      false,
    );

    // The primary answers again, but defers each recipient twice, each time after an attempt.
    await recipientPrimary.listen();
    const delivered = (messageId: string) => recipientPrimary.messages.some((m) => headerValue(m.body, "Message-ID") === messageId);
    await eventually("both deliveries", () => delivered(original) && delivered(nullId), 90_000);
    assert.deepEqual([...deferrals.values()], [2, 2], "each recipient deferred twice after the primary came back");

    assert.equal(warnings().length, 1, "exactly one DSN about the message");
    assert.equal(senderMx.messages.filter(isDsn).length, 1, "none about the null sender's message");
    assert.equal(await relay.metric("mxwarden_delay_warnings_queued_total"), 1);
    assert.equal(await relay.metric("mxwarden_dsns_queued_total"), 1);
    assert.equal(await relay.metric("mxwarden_recipients_bounced_total", 'reason="expired"'), 0);
  });
});
