// Antivirus at the door with a real clamd (Debian clamav-daemon) and a signature database the
// test writes: infected mail is refused during the SMTP dialogue, never bounced later.

import assert from "node:assert/strict";
import { crc32, deflateRawSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { EICAR, TEST_PATTERN, type TestClamd } from "../harness/clamd.ts";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { headerValue, type TestPrimary } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

/** A zip archive holding one deflated file, so its content shows only once clamd unpacks it. */
function zipOf(name: string, content: Buffer): Buffer {
  const fileName = Buffer.from(name);
  const crc = crc32(content);
  const packed = deflateRawSync(content);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(8, 8); // deflate
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(packed.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(fileName.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10); // deflate
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(packed.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(fileName.length, 28);
  const centralOffset = local.length + fileName.length + packed.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + fileName.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  return Buffer.concat([local, fileName, packed, central, fileName, end]);
}

function withAttachment(id: string, fileName: string, content: Buffer): string {
  const base64 = content.toString("base64").replace(/.{76}/g, "$&\r\n");
  return [
    "From: sender@client.test",
    "To: someone@example.com",
    `Message-ID: <${id}@client.test>`,
    "Subject: attachment",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="part"',
    "",
    "--part",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "Please see the attachment.",
    "--part",
    "Content-Type: application/octet-stream",
    `Content-Disposition: attachment; filename="${fileName}"`,
    "Content-Transfer-Encoding: base64",
    "",
    base64,
    "--part--",
    "",
  ].join("\r\n");
}

describe("antivirus (clamd)", () => {
  const dir = tempDir("antivirus");
  let stopStack: RelayStack["stop"] | undefined;
  let clamd: TestClamd;
  let primary: TestPrimary;
  let relay: RelayProcess;

  before(async () => {
    ({
      clamd,
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, clamd: true, primary: true }, (peers) => {
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "example.com", primary: { hosts } },
          { domain: "open.example", primary: { hosts }, antivirus: { onError: "accept" } },
          { domain: "off.example", primary: { hosts }, antivirus: { enabled: false } },
          { domain: "small.example", primary: { hosts }, antivirus: { maxScanSize: "8Ki", onOversize: "reject" } },
        ],
      };
    }));
  });

  after(() => stopStack?.());

  const delivered = (id: string): boolean => primary.messages.some((m) => headerValue(m.body, "Message-ID") === `<${id}@client.test>`);

  it("accepts and delivers a clean message", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("clean", "clean-1") });
    assert.equal(result.data?.code, 250);
    await eventually("clean message delivered", () => delivered("clean-1"));
  });

  const infected: Array<[string, () => string, RegExp]> = [
    ["the EICAR file as the body", () => simpleMessage("plain", "virus-plain", `${EICAR}\r\n`), /Eicar-Test-/],
    ["EICAR in a base64 MIME attachment", () => withAttachment("virus-mime", "eicar.com", Buffer.from(EICAR)), /Eicar-Test-/],
    ["EICAR inside a zip attachment", () => withAttachment("virus-zip", "eicar.zip", zipOf("eicar.com", Buffer.from(EICAR))), /Eicar-Test-/],
    ["a pattern from our own signature file", () => simpleMessage("pattern", "virus-pattern", `text ${TEST_PATTERN} text\r\n`), /Mxwarden\.Test\.Pattern/],
  ];
  for (const [name, build, signature] of infected) {
    it(`refuses ${name} with 554 5.7.1 and the signature name`, async () => {
      const accepted = await relay.metric("mxwarden_messages_accepted_total");
      const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: build() });
      assert.equal(result.data?.code, 554, result.data?.text);
      assert.equal(result.data?.status, "5.7.1");
      assert.match(result.data?.text ?? "", signature);
      assert.equal(await relay.metric("mxwarden_messages_accepted_total"), accepted, "nothing queued");
    });
  }

  it("lets a domain switch scanning off", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@off.example"], body: simpleMessage("off", "virus-off", `${EICAR}\r\n`) });
    assert.equal(result.data?.code, 250);
    await eventually("unscanned message delivered", () => delivered("virus-off"));
  });

  it("applies the domain's policy for messages above its scan limit", async () => {
    const result = await sendMail(relay.smtpPort, {
      from: "s@client.test",
      to: ["a@small.example"],
      body: simpleMessage("big", "too-big-to-scan", "x".repeat(76).concat("\r\n").repeat(200)),
    });
    assert.equal(result.data?.code, 552);
    assert.equal(result.data?.status, "5.3.4");
  });

  it("answers 451 4.7.1 while clamd is down, unless the domain fails open", async () => {
    assert.ok((await relay.metric("mxwarden_filter_verdicts_total", 'filter="antivirus",verdict="reject"')) >= 4);
    await clamd.stop();
    try {
      const closed = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("down", "clamd-down") });
      assert.equal(closed.data?.code, 451);
      assert.equal(closed.data?.status, "4.7.1");
      const open = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@open.example"], body: simpleMessage("open", "fail-open") });
      assert.equal(open.data?.code, 250);
      await eventually("fail-open message delivered", () => delivered("fail-open"));
      assert.ok(!delivered("clamd-down"));
    } finally {
      await clamd.resume();
    }
    const again = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["a@example.com"], body: simpleMessage("back", "clamd-back") });
    assert.equal(again.data?.code, 250);
  });
});
