// Per-recipient outcomes at the primary: 2xx delivered, 4xx retried, 5xx bounced with one RFC 3464
// DSN to the envelope sender, and a DSN when the queue lifetime runs out. The primary is a real
// SMTP server whose answer per recipient the test scripts.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue, type ReceivedMessage } from "../harness/test-primary.ts";
import { selfSignedCertificate } from "../harness/tls-certificate.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

function isDsn(message: ReceivedMessage): boolean {
  return message.from === "" && /multipart\/report/i.test(headerValue(message.body, "Content-Type") ?? "");
}

describe("delivery outcomes", () => {
  const dir = tempDir("outcomes");
  let stopStack: RelayStack["stop"] | undefined;
  let primary: TestPrimary;
  let tlsPrimary: TestPrimary;
  let relay: RelayProcess;
  let temporaryFailures = 0;

  before(async () => {
    tlsPrimary = await TestPrimary.start(0, selfSignedCertificate(dir.path, "primary.test", 2).pem);
    ({
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, async (peers) => {
      peers.primary.recipientRule = (address) => {
        if (address.startsWith("bad@")) return { code: 550, message: "5.1.1 <bad@example.com>: Recipient address rejected: User unknown" };
        if (address.startsWith("later@") && temporaryFailures++ < 2) return { code: 451, message: "4.3.2 try again later" };
        return undefined;
      };
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      const tlsRequired = { mode: "required" as const, verifyCertificate: false };
      return {
        domains: [
          // Outbound TLS required: one primary offers STARTTLS, the other does not.
          { domain: "tls.example", primary: { hosts: [{ host: "127.0.0.1", port: tlsPrimary.port }], tls: tlsRequired } },
          { domain: "plain.example", primary: { hosts, tls: tlsRequired } },
          // Opportunistic (the default): STARTTLS whenever the primary offers it.
          { domain: "opportunistic.example", primary: { hosts: [{ host: "127.0.0.1", port: tlsPrimary.port }] } },
          { domain: "example.com", primary: { hosts }, queue: { retry: { initialBackoff: "1s", maxBackoff: "2s" } } },
          // Nothing listens on this primary; the message must come back as a DSN when its 3s lifetime ends.
          { domain: "expire.example", primary: { hosts: [{ host: "127.0.0.1", port: await freePort() }] }, queue: { lifetime: "3s" } },
        ],
        // Bounces for client.test go to the test primary, standing in for the sender's MX.
        args: ["--bounce-relay", `127.0.0.1:${peers.primary.port}`, "--probe-interval", "1s"],
      };
    }));
  });

  after(async () => {
    await stopStack?.();
    await tlsPrimary?.close();
  });

  it("delivers two recipients and bounces the one the primary rejects with one DSN", async () => {
    const id = "three-rcpts";
    const result = await sendMail(relay.smtpPort, {
      from: "sender@client.test",
      to: ["good1@example.com", "bad@example.com", "good2@example.com"],
      body: simpleMessage("three", id),
    });
    assert.equal(result.data?.code, 250);
    const original = `<${id}@client.test>`;
    const deliveries = () => primary.messages.filter((m) => headerValue(m.body, "Message-ID") === original);
    const dsns = () => primary.messages.filter((m) => isDsn(m) && m.body.toString("latin1").includes(original));
    await eventually("deliveries and the DSN", () => deliveries().flatMap((m) => m.to).length >= 2 && dsns().length >= 1, 30_000);
    assert.deepEqual(
      deliveries()
        .flatMap((m) => m.to)
        .sort(),
      ["good1@example.com", "good2@example.com"],
    );
    const [dsn, ...more] = dsns();
    assert.equal(more.length, 0, "exactly one DSN");
    assert.ok(dsn);
    assert.deepEqual(dsn.to, ["sender@client.test"]);
    const text = dsn.body.toString("latin1");
    assert.match(text, /report-type="?delivery-status"?/i);
    assert.match(text, /Final-Recipient: rfc822; ?bad@example\.com/);
    assert.match(text, /Action: failed/);
    assert.match(text, /Status: 5\.1\.1/);
    assert.match(text, /Diagnostic-Code: smtp; ?550 5\.1\.1/);
    assert.doesNotMatch(text, /Final-Recipient: rfc822; ?good/);
    assert.equal(await relay.metric("mxwarden_recipients_bounced_total", 'reason="rejected"'), 1);
  });

  it("retries a recipient the primary defers with 4xx until it is accepted", async () => {
    const id = "deferred-then-ok";
    const result = await sendMail(relay.smtpPort, { from: "sender@client.test", to: ["later@example.com"], body: simpleMessage("later", id) });
    assert.equal(result.data?.code, 250);
    const deadline = Date.now() + 60_000;
    while (!primary.messages.some((m) => headerValue(m.body, "Message-ID") === `<${id}@client.test>`)) {
      assert.ok(Date.now() < deadline, "deferred message never delivered");
      await primary.waitForMessages(primary.messages.length + 1, deadline - Date.now());
    }
    assert.equal(temporaryFailures, 3, "two 451 answers, then accepted");
    assert.ok((await relay.metric("mxwarden_delivery_attempts_total", 'result="deferred"')) >= 2);
  });

  it("bounces with a 4.4.7 DSN when the queue lifetime runs out", async () => {
    const id = "expires";
    const result = await sendMail(relay.smtpPort, { from: "sender@client.test", to: ["user@expire.example"], body: simpleMessage("expire", id) });
    assert.equal(result.data?.code, 250);
    const deadline = Date.now() + 60_000;
    const find = () => primary.messages.find((m) => isDsn(m) && m.body.toString("latin1").includes(`<${id}@client.test>`));
    while (!find()) {
      assert.ok(Date.now() < deadline, "no DSN for the expired message");
      await primary.waitForMessages(primary.messages.length + 1, deadline - Date.now());
    }
    const text = find()?.body.toString("latin1") ?? "";
    assert.match(text, /Final-Recipient: rfc822; ?user@expire\.example/);
    assert.match(text, /Status: 4\.4\.7/);
    assert.equal(await relay.metric("mxwarden_recipients_bounced_total", 'reason="expired"'), 1);
  });

  it("never bounces to the null sender", async () => {
    const dsnsBefore = await relay.metric("mxwarden_dsns_queued_total");
    const result = await sendMail(relay.smtpPort, { from: "", to: ["bad@example.com", "good3@example.com"], body: simpleMessage("null", "null-sender") });
    assert.equal(result.data?.code, 250);
    await relay.process.waitForLine(/from the null sender; no bounce is sent/);
    assert.equal(await relay.metric("mxwarden_dsns_queued_total"), dsnsBefore);
    assert.ok(primary.messages.some((m) => m.to.includes("good3@example.com")));
  });

  it("delivers over STARTTLS when the domain requires it, and never in clear text", async () => {
    const toTls = await sendMail(relay.smtpPort, {
      from: "sender@client.test",
      to: ["a@tls.example", "b@opportunistic.example"],
      body: simpleMessage("tls", "tls-required"),
    });
    assert.equal(toTls.data?.code, 250);
    const toPlain = await sendMail(relay.smtpPort, { from: "sender@client.test", to: ["a@plain.example"], body: simpleMessage("plain", "tls-refused") });
    assert.equal(toPlain.data?.code, 250);
    await eventually("both TLS deliveries", () => tlsPrimary.messages.length >= 2, 30_000);
    assert.ok(
      tlsPrimary.messages.every((m) => m.secure),
      "every delivery to the TLS primary ran inside STARTTLS",
    );
    assert.deepEqual(tlsPrimary.messages.flatMap((m) => m.to).sort(), ["a@tls.example", "b@opportunistic.example"]);
    // The primary without STARTTLS never gets the message; it stays queued for a retry.
    const deferred = await relay.process.waitForLine(/"msg":"deferred".*"domain":"plain\.example"/, 30_000);
    assert.match(deferred, /TLS|STARTTLS/i);
    assert.ok(!primary.messages.some((m) => m.to.includes("a@plain.example")));
  });
});
