// SPF, DKIM and DMARC with mailauth against a real DNS server started by the test, which serves
// the SPF policies, the DKIM public key and the DMARC records; clients connect from several
// loopback addresses so that SPF can pass for one and fail for another.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dkimSign } from "mailauth";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue, type Reply } from "../harness/smtp-dialogue.ts";
import { headerValue, type TestPrimary } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const dkimKey = publicKey.export({ type: "spki", format: "der" }).toString("base64");

function message(from: string, id: string): string {
  return `From: <${from}>\r\nTo: <user@example.com>\r\nSubject: ${id}\r\nMessage-ID: <${id}@client.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\nHello.\r\n`;
}

describe("sender authentication (SPF, DKIM, DMARC)", () => {
  const dir = tempDir("sender-auth");
  let stopStack: RelayStack["stop"] | undefined;
  let primary: TestPrimary;
  let relay: RelayProcess;

  before(async () => {
    const zones = {
      "signer.test": { txt: ["v=spf1 ip4:127.0.0.7 -all"] },
      "sel._domainkey.signer.test": { txt: [`v=DKIM1; k=rsa; p=${dkimKey}`] },
      "_dmarc.signer.test": { txt: ["v=DMARC1; p=reject"] },
      "spoofed.test": { txt: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.spoofed.test": { txt: ["v=DMARC1; p=reject"] },
      "relaxed.test": { txt: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.relaxed.test": { txt: ["v=DMARC1; p=none"] },
    };
    ({
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, dns: zones, nats: true, primary: true }, (peers) => {
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "example.com", primary: { hosts } },
          { domain: "spf-strict.example", primary: { hosts }, authentication: { rejectSpfFail: true } },
          { domain: "auth-off.example", primary: { hosts }, authentication: { enabled: false } },
        ],
        args: ["--sender-auth"],
      };
    }));
  });

  after(() => stopStack?.());

  async function send(client: string, sender: string, to: string, body: string): Promise<Reply | undefined> {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort, "127.0.0.1", client);
    try {
      await dialogue.command("EHLO client.test");
      await dialogue.command(`MAIL FROM:<${sender}>`);
      if ((await dialogue.command(`RCPT TO:<${to}>`)).code !== 250) return undefined;
      return await dialogue.data(body);
    } finally {
      dialogue.destroy();
    }
  }

  it("passes a signed message from an SPF-permitted host and tells the primary so", async () => {
    const unsigned = message("news@signer.test", "signed");
    const key = { signingDomain: "signer.test", selector: "sel", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
    // The declared type wants the key at the top; the implementation reads signatureData.
    const signed = await dkimSign(unsigned, { ...key, signatureData: [key] });
    assert.deepEqual(signed.errors, []);
    const reply = await send("127.0.0.7", "news@signer.test", "user@example.com", signed.signatures + unsigned);
    assert.equal(reply?.code, 250, reply?.text);
    const delivered = await eventually("signed message delivered", () => primary.messages.find((m) => headerValue(m.body, "Subject") === "signed"));
    const results = headerValue(delivered.body, "Authentication-Results") ?? "";
    assert.match(results, /^backup-mx\.test;/);
    assert.match(results, /dkim=pass header\.i=@signer\.test/);
    assert.match(results, /spf=pass/);
    assert.match(results, /dmarc=pass/);
    assert.match(headerValue(delivered.body, "Received-SPF") ?? "", /^pass/);
  });

  it("refuses a spoofed From of a p=reject domain with 550 5.7.1", async () => {
    const reply = await send("127.0.0.5", "ceo@spoofed.test", "user@example.com", message("ceo@spoofed.test", "spoofed"));
    assert.equal(reply?.code, 550);
    assert.equal(reply?.status, "5.7.1");
    assert.match(reply?.text ?? "", /DMARC policy of spoofed\.test/);
  });

  it("accepts an SPF failure of a p=none domain with the result in the header, unless the domain rejects SPF fails", async () => {
    const accepted = await send("127.0.0.5", "info@relaxed.test", "user@example.com", message("info@relaxed.test", "relaxed"));
    assert.equal(accepted?.code, 250);
    const delivered = await eventually("relaxed message delivered", () => primary.messages.find((m) => headerValue(m.body, "Subject") === "relaxed"));
    assert.match(headerValue(delivered.body, "Authentication-Results") ?? "", /spf=fail.*dmarc=fail/s);
    const strict = await send("127.0.0.5", "info@relaxed.test", "user@spf-strict.example", message("info@relaxed.test", "strict"));
    assert.equal(strict?.code, 550);
    assert.equal(strict?.status, "5.7.23");
  });

  it("leaves domains that switch it off alone", async () => {
    const reply = await send("127.0.0.5", "ceo@spoofed.test", "user@auth-off.example", message("ceo@spoofed.test", "unchecked"));
    assert.equal(reply?.code, 250);
  });
});
