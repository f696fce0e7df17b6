// The receiving side against real peers: relay policy (never an open relay), SIZE, loops,
// ESMTP extensions, STARTTLS and the Received header, through a real relay process, a real
// nats-server and, for the client side, raw dialogues and swaks.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { swaks } from "../harness/swaks.ts";
import { headerValue, type TestPrimary } from "../harness/test-primary.ts";
import { selfSignedCertificate } from "../harness/tls-certificate.ts";
import { tempDir } from "../harness/workspace.ts";

describe("receiving", () => {
  const dir = tempDir("receiving");
  let stopStack: RelayStack["stop"] | undefined;
  let primary: TestPrimary;
  let relay: RelayProcess;

  before(async () => {
    const tls = selfSignedCertificate(dir.path, "backup-mx.test", 2);
    ({
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => {
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "example.com", primary: { hosts } },
          { domain: "list.example", primary: { hosts }, recipients: { mode: "list", list: ["alice", "bob"] } },
          { domain: "bücher.example", primary: { hosts } },
          { domain: "small.example", primary: { hosts }, maxMessageSize: "10Ki" },
        ],
        args: ["--tls-cert", tls.certPath, "--tls-key", tls.keyPath, "--max-received", "30", "--tarpit-after", "1000"],
      };
    }));
  });

  after(() => stopStack?.());

  it("advertises the ESMTP extensions a backup MX needs", async () => {
    const { dialogue, greeting } = await SmtpDialogue.open(relay.smtpPort);
    assert.equal(greeting.code, 220);
    const ehlo = await dialogue.command("EHLO client.test");
    await dialogue.quit();
    assert.equal(ehlo.code, 250);
    for (const ext of ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS"]) {
      assert.ok(ehlo.lines.includes(ext), `EHLO lacks ${ext}: ${ehlo.text}`);
    }
    assert.ok(
      ehlo.lines.some((l) => /^SIZE \d+$/.test(l)),
      "SIZE with a limit",
    );
    assert.ok(!ehlo.lines.some((l) => l.startsWith("AUTH")), "no AUTH on an MX");
  });

  // Each address is what a client writes in RCPT TO:<...>.
  const relayTricks: Array<[string, number, string]> = [
    ["user@victim.org", 550, "5.7.1"],
    ["user%victim.org@example.com", 550, "5.7.1"],
    ["victim.org!user@example.com", 550, "5.7.1"],
    ["@example.com:user@victim.org", 550, "5.7.1"],
    ["@victim.org:user@example.com", 250, "2.1.5"],
    // smtp-server refuses these as bad syntax before our policy sees them: refused either way.
    ['"user@victim.org"@example.com', 501, ""],
    ['"user%victim.org"@example.com', 550, "5.7.1"],
    ["user@example.com.victim.org", 550, "5.7.1"],
    ["user@sub.example.com", 550, "5.7.1"],
    ["user@[127.0.0.1]", 550, "5.7.1"],
    ["user@victim.org@example.com", 501, ""],
    ["user@example.com.", 501, ""],
    ["USER@EXAMPLE.COM", 250, "2.1.5"],
    ["user@xn--bcher-kva.example", 250, "2.1.5"],
    ["carol@list.example", 550, "5.1.1"],
    ["Alice@list.example", 250, "2.1.5"],
  ];
  it("refuses every classic relay trick with 550 5.7.1 and accepts only local recipients", async () => {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
    await dialogue.command("EHLO client.test");
    assert.equal((await dialogue.command("MAIL FROM:<sender@client.test>")).code, 250);
    const failures: string[] = [];
    for (const [address, code, status] of relayTricks) {
      const reply = await dialogue.command(`RCPT TO:<${address}>`);
      if (reply.code !== code || (status && reply.status !== status)) failures.push(`${address}: got ${reply.code} ${reply.text}, want ${code} ${status}`);
    }
    await dialogue.quit();
    assert.deepEqual(failures, []);
  });

  it("delivers a mixed transaction only to the recipients in configured domains", async () => {
    const id = `mixed-${Date.now()}`;
    const before = primary.messages.length;
    const result = await sendMail(relay.smtpPort, {
      from: "sender@client.test",
      to: ["a@example.com", "x@victim.org", "bob@list.example", "y%victim.org@example.com"],
      body: simpleMessage("mixed", id),
    });
    assert.deepEqual(
      result.rcpts.map((r) => r.code),
      [250, 550, 250, 550],
    );
    assert.equal(result.data?.code, 250);
    const queueId = /queued as ([0-9A-Z]+)/.exec(result.data?.text ?? "")?.[1];
    assert.ok(queueId, result.data?.text);
    await primary.waitForMessages(before + 2);
    const got = primary.messages.filter((m) => headerValue(m.body, "Message-ID") === `<${id}@client.test>`);
    assert.deepEqual(got.flatMap((m) => m.to).sort(), ["a@example.com", "bob@list.example"]);
    for (const message of got) assert.ok(!message.to.some((to) => to.includes("victim")));
  });

  it("accepts SMTPUTF8 mail for an IDN domain", async () => {
    const before = primary.messages.length;
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
    await dialogue.command("EHLO client.test");
    assert.equal((await dialogue.command("MAIL FROM:<sender@client.test> SMTPUTF8")).code, 250);
    assert.equal((await dialogue.command("RCPT TO:<jörg@bücher.example>")).code, 250);
    assert.equal((await dialogue.data(simpleMessage("idn", "idn-1"))).code, 250);
    await dialogue.quit();
    const [message] = (await primary.waitForMessages(before + 1)).slice(before);
    // The relay sends the A-label; smtp-server at the primary turns it back into Unicode.
    assert.deepEqual(message?.to, ["jörg@bücher.example"]);
  });

  it("enforces the domain's SIZE at MAIL FROM and during DATA with 552 5.3.4", async () => {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
    await dialogue.command("EHLO client.test");
    assert.equal((await dialogue.command("MAIL FROM:<s@client.test> SIZE=20000")).code, 250);
    const declared = await dialogue.command("RCPT TO:<a@small.example>");
    assert.equal(declared.code, 552);
    assert.equal(declared.status, "5.3.4");
    await dialogue.command("RSET");
    const global = await dialogue.command(`MAIL FROM:<s@client.test> SIZE=${1024 ** 3}`);
    assert.equal(global.code, 552, "beyond every domain's limit already at MAIL");
    await dialogue.command("RSET");
    assert.equal((await dialogue.command("MAIL FROM:<s@client.test>")).code, 250);
    assert.equal((await dialogue.command("RCPT TO:<a@small.example>")).code, 250);
    const big = await dialogue.data(simpleMessage("big", "big-1", "x".repeat(76) + "\r\n".repeat(1) + `${"y".repeat(78)}\r\n`.repeat(200)));
    assert.equal(big.code, 552);
    assert.equal(big.status, "5.3.4");
    // The session is still usable after the refusal.
    assert.equal((await dialogue.command("MAIL FROM:<s@client.test>")).code, 250);
    await dialogue.quit();
    assert.ok((await relay.metric("mxwarden_messages_rejected_total", 'reason="size"')) >= 1);
  });

  it("refuses a mail loop with 554 5.4.6", async () => {
    const received = Array.from({ length: 31 }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; ${new Date().toUTCString()}\r\n`).join("");
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: received + simpleMessage("loop", "loop-1") });
    assert.equal(result.data?.code, 554);
    assert.equal(result.data?.status, "5.4.6");
  });

  it("prepends an RFC 5321 Received header and keeps the message intact", async () => {
    const before = primary.messages.length;
    const body = simpleMessage("trace", "trace-1", "line one\r\n.leading dot\r\nlast\r\n");
    const result = await swaks(["--server", `127.0.0.1:${relay.smtpPort}`, "--ehlo", "client.test", "--from", "s@client.test", "--to", "a@example.com"]);
    assert.equal(result.exitCode, 0, result.transcript);
    const viaDialogue = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["only@example.com"], body });
    assert.equal(viaDialogue.data?.code, 250);
    const queueId = /queued as ([0-9A-Z]+)/.exec(viaDialogue.data?.text ?? "")?.[1];
    const messages = await primary.waitForMessages(before + 2);
    const message = messages.find((m) => m.to[0] === "only@example.com");
    assert.ok(message);
    const text = message.body.toString("utf8");
    const trace = headerValue(message.body, "Received") ?? "";
    assert.match(
      trace,
      /^from client\.test \(unknown \[127\.0\.0\.1\]\) by backup-mx\.test \(mxwarden\) with ESMTP id [0-9A-Z]+ for <only@example\.com>; \w{3}, \d{2} \w{3} \d{4}/,
    );
    assert.ok(trace.includes(`id ${queueId}`));
    assert.ok(text.startsWith("Received: "), "Received is the first header");
    assert.ok(text.endsWith(body), "original message unchanged after the trace header");
  });

  it("offers STARTTLS with the configured certificate and records ESMTPS", async () => {
    const before = primary.messages.length;
    const result = await swaks([
      "--server",
      `127.0.0.1:${relay.smtpPort}`,
      "--tls",
      "--ehlo",
      "client.test",
      "--from",
      "s@client.test",
      "--to",
      "tls@example.com",
    ]);
    assert.equal(result.exitCode, 0, result.transcript);
    assert.match(result.transcript, /~> MAIL FROM/, "the transaction ran inside TLS");
    const messages = await primary.waitForMessages(before + 1);
    const message = messages.find((m) => m.to[0] === "tls@example.com");
    assert.match(headerValue(message?.body ?? Buffer.alloc(0), "Received") ?? "", / with ESMTPS id .*\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)/);
  });

  it("turns bare LF line endings into CRLF (no SMTP smuggling)", async () => {
    const before = primary.messages.length;
    const smuggle = "Subject: smuggle\r\nMessage-ID: <smuggle@client.test>\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.test>\nlast\r\n";
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["smuggle@example.com"], body: smuggle });
    assert.equal(result.data?.code, 250);
    const message = (await primary.waitForMessages(before + 1)).find((m) => m.to[0] === "smuggle@example.com");
    const text = message?.body.toString("latin1") ?? "";
    assert.doesNotMatch(text, /[^\r]\n/, "every LF is part of a CRLF");
    assert.ok(text.includes("first\r\n.\r\nMAIL FROM"), JSON.stringify(text));
  });

  it("declares BODY=8BITMIME to the primary for a body with 8-bit octets, even when the client did not", async () => {
    const before = primary.messages.length;
    const eightBit = simpleMessage("8bit", "eight-bit", "Grüße aus der Küche\r\n");
    const sevenBit = simpleMessage("7bit", "seven-bit", "plain ASCII only\r\n");
    assert.equal((await sendMail(relay.smtpPort, { from: "s@client.test", to: ["eight@example.com"], body: eightBit })).data?.code, 250);
    assert.equal((await sendMail(relay.smtpPort, { from: "s@client.test", to: ["seven@example.com"], body: sevenBit })).data?.code, 250);
    const messages = await primary.waitForMessages(before + 2);
    const eight = messages.find((m) => m.to[0] === "eight@example.com");
    const seven = messages.find((m) => m.to[0] === "seven@example.com");
    assert.equal(eight?.bodyType, "8bitmime");
    assert.ok(eight?.body.toString("utf8").endsWith(eightBit), "8-bit octets arrive unchanged");
    assert.equal(seven?.bodyType, "7bit");
  });

  it("answers malformed commands with 5xx and keeps the session", async () => {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
    await dialogue.command("EHLO client.test");
    assert.equal((await dialogue.command("RCPT TO:<a@example.com>")).code, 503, "RCPT before MAIL");
    assert.equal((await dialogue.command("MAIL FROM:<broken")).code, 501);
    assert.equal((await dialogue.command(`MAIL FROM:<${"a".repeat(2000)}@client.test>`)).code >= 500, true);
    assert.equal((await dialogue.command("MAIL FROM:<ok@client.test>")).code, 250);
    await dialogue.quit();
  });

  it("removes Authentication-Results that claim this relay's name (RFC 8601 section 5)", async () => {
    const before = primary.messages.length;
    const forged = [
      "Authentication-Results: backup-mx.test; dmarc=pass header.from=bank.test\r\n",
      "Authentication-Results: mx.elsewhere.test; dmarc=fail\r\n",
      "Authentication-Results: backup-mx.test;\r\n spf=pass\r\n",
    ].join("");
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["forged@example.com"], body: forged + simpleMessage("forged", "forged-ar") });
    assert.equal(result.data?.code, 250);
    const message = (await primary.waitForMessages(before + 1)).find((m) => m.to[0] === "forged@example.com");
    const text = message?.body.toString("latin1") ?? "";
    assert.doesNotMatch(text, /Authentication-Results: backup-mx\.test/);
    assert.match(text, /Authentication-Results: mx\.elsewhere\.test; dmarc=fail\r\n/);
    assert.match(text, /Subject: forged\r\n/);
  });

  it("refuses a header section longer than 256 KiB with 552 5.3.4", async () => {
    const huge = Array.from({ length: 4000 }, (_, i) => `X-Filler-${i}: ${"y".repeat(70)}\r\n`).join("");
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: huge + simpleMessage("huge", "huge-header") });
    assert.equal(result.data?.code, 552);
    assert.equal(result.data?.status, "5.3.4");
  });
});
