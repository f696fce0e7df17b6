// A small labelled corpus through every filter at once, with the real engines: clamd, rspamd, a DNS
// server with SPF/DKIM/DMARC and a block list, and a primary that knows its users. It prints the
// accept/reject matrix and requires no false positive on the ham.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { dkimSign } from "mailauth";
import { EICAR } from "../harness/clamd.ts";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { GTUBE } from "../harness/rspamd.ts";
import { SmtpDialogue } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { signingDomain: "news.test", selector: "s1", privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };

interface Sample {
  name: string;
  label: "ham" | "bad";
  client: string;
  sender: string;
  recipient: string;
  body: () => Promise<string>;
}

function mail(from: string, subject: string, body: string, extraHeaders = ""): string {
  return (
    `From: Sender <${from}>\r\nTo: <user@corp.example>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W+/g, "-")}@${from.split("@")[1] ?? "x"}>\r\n` +
    `Date: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\n${extraHeaders}Content-Type: text/plain; charset=utf-8\r\n\r\n${body}`
  );
}

const corpus: Sample[] = [
  {
    name: "ham: signed newsletter",
    label: "ham",
    client: "127.0.0.7",
    sender: "letters@news.test",
    recipient: "alice@corp.example",
    body: async () => {
      const unsigned = mail("letters@news.test", "Monthly update", "Hello Alice,\r\n\r\nHere is what happened this month.\r\n");
      const signed = await dkimSign(unsigned, { ...signingKey, signatureData: [signingKey] });
      return signed.signatures + unsigned;
    },
  },
  {
    name: "ham: colleague, SPF pass",
    label: "ham",
    client: "127.0.0.7",
    sender: "bob@news.test",
    recipient: "alice@corp.example",
    body: async () => mail("bob@news.test", "Lunch on Friday", "Shall we meet at noon? Bob\r\n"),
  },
  {
    name: "ham: unauthenticated domain",
    label: "ham",
    client: "127.0.0.8",
    sender: "carol@plain.test",
    recipient: "alice@corp.example",
    body: async () => mail("carol@plain.test", "Invoice 2026-11", "Please find the figures below.\r\n\r\nTotal: 120 EUR\r\n"),
  },
  {
    name: "spam: GTUBE",
    label: "bad",
    client: "127.0.0.8",
    sender: "promo@plain.test",
    recipient: "alice@corp.example",
    body: async () => mail("promo@plain.test", "Offer", `${GTUBE}\r\n`),
  },
  {
    name: "virus: EICAR attachment",
    label: "bad",
    client: "127.0.0.8",
    sender: "carol@plain.test",
    recipient: "alice@corp.example",
    body: async () => mail("carol@plain.test", "Document", `${EICAR}\r\n`),
  },
  {
    name: "spoofed: DMARC p=reject domain",
    label: "bad",
    client: "127.0.0.8",
    sender: "ceo@bank.test",
    recipient: "alice@corp.example",
    body: async () => mail("ceo@bank.test", "Urgent transfer", "Please wire the money today.\r\n"),
  },
  {
    name: "listed client IP",
    label: "bad",
    client: "127.0.0.2",
    sender: "carol@plain.test",
    recipient: "alice@corp.example",
    body: async () => mail("carol@plain.test", "Hello", "Hi.\r\n"),
  },
  {
    name: "unknown recipient",
    label: "bad",
    client: "127.0.0.8",
    sender: "carol@plain.test",
    recipient: "nobody@corp.example",
    body: async () => mail("carol@plain.test", "Hello", "Hi.\r\n"),
  },
];

describe("filter corpus: every filter, real engines", () => {
  const dir = tempDir("corpus");
  let stopStack: RelayStack["stop"] | undefined;
  let relay: RelayProcess;

  before(
    async () => {
      const zones = {
        "news.test": { txt: ["v=spf1 ip4:127.0.0.7 -all"] },
        "s1._domainkey.news.test": { txt: [`v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`] },
        "_dmarc.news.test": { txt: ["v=DMARC1; p=reject"] },
        "bank.test": { txt: ["v=spf1 ip4:192.0.2.10 -all"] },
        "_dmarc.bank.test": { txt: ["v=DMARC1; p=reject"] },
        "plain.test": { a: ["192.0.2.20"] },
        "2.0.0.127.bl.test": { a: ["127.0.0.2"] },
      };
      ({ relay, stop: stopStack } = await startRelayStack({ dir: dir.path, dns: zones, nats: true, clamd: true, rspamd: true, primary: true }, (peers) => {
        peers.primary.recipientRule = (address) => (address.startsWith("alice@") ? undefined : { code: 550, message: "5.1.1 User unknown" });
        return {
          domains: [
            {
              domain: "corp.example",
              primary: { hosts: [{ host: "127.0.0.1", port: peers.primary.port }] },
              recipients: { mode: "verify" },
              dnsbl: { zones: ["bl.test"] },
            },
          ],
          args: ["--sender-auth"],
        };
      }));
    },
    { timeout: 180_000 },
  );

  after(() => stopStack?.());

  it("accepts all ham and refuses all bad mail during the dialogue", async (t) => {
    const rows: string[] = [];
    const mistakes: string[] = [];
    for (const sample of corpus) {
      const { dialogue } = await SmtpDialogue.open(relay.smtpPort, "127.0.0.1", sample.client);
      let verdict: string;
      try {
        await dialogue.command("EHLO client.test");
        await dialogue.command(`MAIL FROM:<${sample.sender}>`);
        const rcpt = await dialogue.command(`RCPT TO:<${sample.recipient}>`);
        const final = rcpt.code === 250 ? await dialogue.data(await sample.body()) : rcpt;
        verdict = `${final.code} ${final.status ?? ""}`.trim();
        const accepted = final.code === 250;
        if (accepted !== (sample.label === "ham")) mistakes.push(`${sample.name}: ${final.code} ${final.text}`);
      } finally {
        dialogue.destroy();
      }
      rows.push(`${sample.label.padEnd(4)} ${sample.name.padEnd(34)} ${verdict}`);
    }
    t.diagnostic(`accept/reject matrix:\n${rows.join("\n")}`);
    assert.deepEqual(mistakes, [], "no false positive on ham, no bad message accepted");
  });
});
