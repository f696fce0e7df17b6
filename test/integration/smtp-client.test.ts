// The relay's outbound SMTP client against real servers: smtp-server (the test primary, with
// PIPELINING and STARTTLS) and Postfix's smtp-sink with ESMTP or PIPELINING switched off.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { SmtpClient, SmtpConnectionError, type SmtpClientOptions } from "../../relay/src/deliver/smtp-client.ts";
import { SmtpSink } from "../harness/postfix-tools.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { selfSignedCertificate } from "../harness/tls-certificate.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

const options = (port: number, tls: SmtpClientOptions["tls"] = "opportunistic"): SmtpClientOptions => ({
  host: "127.0.0.1",
  port,
  name: "relay.test",
  servername: undefined,
  tls,
  verifyCertificate: false,
  connectTimeoutMs: 5000,
  socketTimeoutMs: 10_000,
});

const envelope = (recipients: string[], size = 100) => ({ sender: "sender@client.test", recipients, size, eightBit: false });

/** A body delivered in several chunks, with dots where stuffing matters. */
function body(id: string): { chunks: Buffer[]; text: string } {
  const text = `Message-Id: <${id}@client.test>\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n`;
  const cut = text.indexOf("\r\n.") + 2;
  return { chunks: [Buffer.from(text.slice(0, cut)), Buffer.from(text.slice(cut))], text };
}

describe("outbound SMTP client", () => {
  const dir = tempDir("mxw-smtp-client-");
  let primary: TestPrimary;
  let tlsPrimary: TestPrimary;

  before(async () => {
    primary = await TestPrimary.start();
    primary.recipientRule = (address) => (address.startsWith("bad@") ? { code: 550, message: "5.1.1 user unknown" } : undefined);
    tlsPrimary = await TestPrimary.start(0, selfSignedCertificate(dir.path, "primary.test", 2).pem);
  });

  after(async () => {
    await primary.close();
    await tlsPrimary.close();
    dir.remove();
  });

  it("pipelines a transaction, reports each recipient's reply, and delivers the body byte for byte", async () => {
    const client = await SmtpClient.open(options(primary.port));
    const { chunks, text } = body("pipelined");
    const replies = await client.send(envelope(["a@example.com", "bad@example.com", "b@example.com"]), Readable.from(chunks));
    assert.equal(replies.mail.code, 250);
    assert.deepEqual(
      replies.recipients.map((r) => r.code),
      [250, 550, 250],
    );
    assert.deepEqual(replies.recipients[1] && { enhanced: replies.recipients[1].enhanced, text: replies.recipients[1].text }, {
      enhanced: "5.1.1",
      text: "user unknown",
    });
    assert.equal(replies.data?.code, 250);
    const received = primary.messages.at(-1);
    assert.deepEqual(received?.to, ["a@example.com", "b@example.com"]);
    assert.equal(received?.body.toString("latin1"), text);
    assert.equal(received?.heloName, "relay.test");
    client.quit();
  });

  it("resets after an envelope refused for every recipient and keeps the connection for the next message", async () => {
    const client = await SmtpClient.open(options(primary.port));
    const refused = await client.send(envelope(["bad@example.com"]), Readable.from([Buffer.from("Subject: x\r\n\r\nnever\r\n")]));
    assert.equal(refused.recipients[0]?.code, 550);
    assert.equal(refused.data, undefined, "no message was sent");
    const before = primary.messages.length;
    const { chunks, text } = body("after-reset");
    const replies = await client.send(envelope(["c@example.com"]), Readable.from(chunks));
    assert.equal(replies.data?.code, 250);
    assert.equal(client.transactions, 2);
    assert.equal(primary.messages.length, before + 1);
    assert.equal(primary.messages.at(-1)?.body.toString("latin1"), text);
    client.quit();
  });

  it("abandons a transaction whose time is up before the final dot, so the message is not accepted", async () => {
    const client = await SmtpClient.open(options(primary.port));
    const before = primary.messages.length;
    await assert.rejects(
      client.send({ ...envelope(["late@example.com"]), finishBy: Date.now() - 1 }, Readable.from(body("too-late").chunks)),
      (err: unknown) => err instanceof SmtpConnectionError && err.code === "ETIMEDOUT",
    );
    assert.equal(client.closed, true, "the only way out of DATA without a dot is closing the connection");
    const next = await SmtpClient.open(options(primary.port));
    const replies = await next.send({ ...envelope(["in-time@example.com"]), finishBy: Date.now() + 60_000 }, Readable.from(body("in-time").chunks));
    assert.equal(replies.data?.code, 250);
    assert.deepEqual(
      primary.messages.slice(before).map((m) => m.to),
      [["in-time@example.com"]],
      "only the message sent in time arrived",
    );
    next.quit();
  });

  it("starts TLS when offered, and refuses to go on in clear text when TLS is required but not offered", async () => {
    const secure = await SmtpClient.open(options(tlsPrimary.port, "required"));
    assert.equal(secure.secure, true);
    const replies = await secure.send(envelope(["d@example.com"]), Readable.from([Buffer.from("Subject: tls\r\n\r\nsecret\r\n")]));
    assert.equal(replies.data?.code, 250);
    assert.equal(tlsPrimary.messages.at(-1)?.secure, true);
    secure.quit();
    await assert.rejects(SmtpClient.open(options(primary.port, "required")), (err: unknown) => err instanceof SmtpConnectionError && err.code === "ETLS");
  });

  it("hangs up when clear text follows the STARTTLS reply, which TLS would otherwise read as replies", async () => {
    // A server (or a man in the middle) that answers STARTTLS and appends a reply of its own.
    const injecting = createServer((socket) => {
      socket.write("220 injector.test ESMTP\r\n");
      socket.on("data", (data: Buffer) => {
        const command = data.toString("latin1").trim().toUpperCase();
        if (command.startsWith("EHLO")) socket.write("250-injector.test\r\n250 STARTTLS\r\n");
        else if (command === "STARTTLS") socket.write("220 2.0.0 Ready\r\n250 2.1.0 injected\r\n");
      });
    });
    await new Promise<void>((resolve) => injecting.listen(0, "127.0.0.1", resolve));
    try {
      const port = (injecting.address() as AddressInfo).port;
      await assert.rejects(
        SmtpClient.open(options(port)),
        (err: unknown) => err instanceof SmtpConnectionError && err.code === "ETLS" && /after its STARTTLS reply/.test(err.message),
      );
    } finally {
      injecting.close();
    }
  });

  it("speaks HELO and one command at a time to a server without ESMTP", async () => {
    const sink = await SmtpSink.start(undefined, ["-e"]);
    try {
      const client = await SmtpClient.open(options(sink.port));
      for (const id of ["helo-1", "helo-2"]) {
        const replies = await client.send(envelope(["e@example.com", "f@example.com"]), Readable.from(body(id).chunks));
        assert.deepEqual([replies.mail.code, ...replies.recipients.map((r) => r.code), replies.data?.code], [250, 250, 250, 250]);
      }
      client.quit();
      await eventually("both messages dumped", () => sink.dumpCount() === 2, 10_000, 50);
      assert.deepEqual(sink.messageIds().sort(), ["<helo-1@client.test>", "<helo-2@client.test>"]);
    } finally {
      await sink.stop();
    }
  });

  it("notices a connection the server dropped, and fails a refused connection with ECONNECTION", async () => {
    const sink = await SmtpSink.start(undefined, ["-p"]);
    const client = await SmtpClient.open(options(sink.port));
    const replies = await client.send(envelope(["g@example.com"]), Readable.from(body("no-pipelining").chunks));
    assert.equal(replies.data?.code, 250);
    await sink.stop();
    await eventually("the client to see the connection closed", () => client.closed, 10_000, 20);
    await assert.rejects(SmtpClient.open(options(sink.port)), (err: unknown) => err instanceof SmtpConnectionError && err.code === "ECONNECTION");
  });
});
