// A domain's own allow and block lists (spec.access) against the real engines: an allowed client or
// sender gets past rspamd (GTUBE), a DNS block list and greylisting, while clamd still refuses
// EICAR; a blocked one is refused at RCPT. Clients connect from different 127.0.0.0/8 addresses.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EICAR, TestClamd } from "../harness/clamd.ts";
import { startDnsServer, type TestDnsServer } from "../harness/dns-server.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { GTUBE, TestRspamd } from "../harness/rspamd.ts";
import { SmtpDialogue, simpleMessage, type Reply } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

/** A client on the DNS block list. */
const LISTED = "127.0.0.2";
/** A client no list names. */
const PLAIN = "127.0.0.5";

describe("allow and block lists (spec.access)", () => {
  const dir = tempDir("access");
  let dns: TestDnsServer;
  let nats: TestNatsServer;
  let rspamd: TestRspamd;
  let clamd: TestClamd;
  let primary: TestPrimary;
  let relay: RelayProcess;

  before(
    async () => {
      dns = await startDnsServer({ [`${LISTED.split(".").reverse().join(".")}.bl.test`]: { a: ["127.0.0.2"] } });
      nats = await TestNatsServer.start(join(dir.path, "nats"));
      rspamd = await TestRspamd.start(join(dir.path, "rspamd"));
      clamd = await TestClamd.start(join(dir.path, "clamd"));
      primary = await TestPrimary.start();
      const hosts = [{ host: "127.0.0.1", port: primary.port }];
      writeDomains(join(dir.path, "domains.yaml"), [
        {
          domain: "example.com",
          primary: { hosts },
          dnsbl: { zones: ["bl.test"] },
          greylisting: { enabled: true },
          access: {
            allow: { clients: [LISTED], senders: ["Partner@Partner.Example"], senderDomains: ["trusted.example"] },
            block: { clients: ["127.0.0.3"], senderDomains: ["spam.example"], senders: ["mallory@trusted.example"] },
          },
        },
        // The same filters without lists, one at a time, to show what the allow list gets past.
        { domain: "listed.example", primary: { hosts }, dnsbl: { zones: ["bl.test"] } },
        { domain: "grey.example", primary: { hosts }, greylisting: { enabled: true } },
        { domain: "scored.example", primary: { hosts } },
      ]);
      relay = await RelayProcess.start({
        dir: dir.path,
        domainsPath: join(dir.path, "domains.yaml"),
        nats: nats.url,
        args: ["--resolver", `127.0.0.1:${dns.port}`, "--rspamd", rspamd.url, "--clamd", `127.0.0.1:${clamd.port}`],
      });
      await relay.ready();
    },
    { timeout: 180_000 },
  );

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await clamd?.stop();
    await rspamd?.stop();
    await nats?.stop();
    await dns?.close();
  });

  /** One transaction from `client`: the RCPT reply, and the DATA reply when RCPT was taken. */
  async function send(client: string, from: string, to: string, body: string): Promise<{ rcpt: Reply; data?: Reply }> {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort, "127.0.0.1", client);
    try {
      await dialogue.command("EHLO client.test");
      await dialogue.command(`MAIL FROM:<${from}>`);
      const rcpt = await dialogue.command(`RCPT TO:<${to}>`);
      if (rcpt.code !== 250) return { rcpt };
      return { rcpt, data: await dialogue.data(body) };
    } finally {
      dialogue.destroy();
    }
  }

  const delivered = (id: string) => () => primary.messages.find((m) => headerValue(m.body, "Message-ID") === `<${id}@client.test>`);

  it("without an allow list, the listed client is refused, a new sender greylisted and GTUBE refused", async () => {
    assert.equal((await send(LISTED, "x@anywhere.example", "a@listed.example", "")).rcpt.code, 554);
    const greylisted = (await send(LISTED, "x@anywhere.example", "a@grey.example", "")).rcpt;
    assert.equal(greylisted.code, 451);
    assert.equal(greylisted.status, "4.7.1");
    const spam = await send(LISTED, "x@anywhere.example", "a@scored.example", simpleMessage("gtube", "scored-gtube", `${GTUBE}\r\n`));
    assert.equal(spam.data?.code, 554, spam.data?.text);
  });

  it("an allowed client gets past the DNS block list, greylisting and rspamd: GTUBE is delivered", async () => {
    const result = await send(LISTED, "x@anywhere.example", "a@example.com", simpleMessage("gtube", "allowed-gtube", `${GTUBE}\r\n`));
    assert.equal(result.rcpt.code, 250);
    assert.equal(result.data?.code, 250, result.data?.text);
    const message = await eventually("allowed GTUBE delivered", delivered("allowed-gtube"));
    assert.equal(headerValue(message.body, "X-Spam-Status"), undefined, "rspamd was not asked");
  });

  it("an allowed sender address (any case) and a subdomain of an allowed sender domain pass greylisting and rspamd", async () => {
    const bySender = await send(PLAIN, "PARTNER@partner.example", "a@example.com", simpleMessage("gtube", "allowed-sender", `${GTUBE}\r\n`));
    assert.equal(bySender.data?.code, 250, bySender.data?.text);
    const byDomain = await send(PLAIN, "bounces@mail.trusted.example", "a@example.com", simpleMessage("gtube", "allowed-domain", `${GTUBE}\r\n`));
    assert.equal(byDomain.data?.code, 250, byDomain.data?.text);
    await eventually("both delivered", () => delivered("allowed-sender")() && delivered("allowed-domain")());
  });

  it("antivirus still runs for allowed mail: EICAR is refused", async () => {
    const result = await send(LISTED, "x@anywhere.example", "a@example.com", simpleMessage("virus", "allowed-eicar", `${EICAR}\r\n`));
    assert.equal(result.rcpt.code, 250);
    assert.equal(result.data?.code, 554, result.data?.text);
    assert.equal(result.data?.status, "5.7.1");
    assert.match(result.data?.text ?? "", /Eicar-Test-/);
  });

  it("refuses blocked clients, sender domains and senders at RCPT with 550 5.7.1, even when also allowed", async () => {
    for (const [client, from] of [
      ["127.0.0.3", "x@anywhere.example"],
      [PLAIN, "x@mx.spam.example"],
      [LISTED, "Mallory@trusted.example"],
    ] as const) {
      const { rcpt } = await send(client, from, "a@example.com", "");
      assert.equal(rcpt.code, 550, `${client} ${from}: ${rcpt.text}`);
      assert.equal(rcpt.status, "5.7.1");
    }
  });

  it("counts both lists' verdicts", async () => {
    assert.equal(await relay.metric("mxwarden_filter_verdicts_total", 'filter="access",verdict="allow"'), 4);
    assert.equal(await relay.metric("mxwarden_filter_verdicts_total", 'filter="access",verdict="reject"'), 3);
  });
});
