// RFC 5321 §4.5.1: a bare RCPT TO:<Postmaster> must be accepted. The relay sends it on as
// postmaster@ its postmaster domain (--postmaster-domain, else the first configured domain in
// A-label order), and postmaster@ a domain passes that domain's recipient list.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { tempDir } from "../harness/workspace.ts";

describe("Postmaster", () => {
  const dir = tempDir("postmaster");
  let nats: TestNatsServer;
  let first: TestPrimary;
  let chosen: TestPrimary;
  let byDefault: RelayProcess;
  let configured: RelayProcess;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    first = await TestPrimary.start();
    chosen = await TestPrimary.start();
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "zulu.example", primary: { hosts: [{ host: "127.0.0.1", port: chosen.port }] }, recipients: { mode: "list", list: ["alice"] } },
      { domain: "alpha.example", primary: { hosts: [{ host: "127.0.0.1", port: first.port }] } },
    ]);
    for (const relay of ["default", "configured"]) mkdirSync(join(dir.path, relay));
    // Two relays of one site, configured differently: either may deliver the other's mail, and both send postmaster mail the same way.
    byDefault = await RelayProcess.start({ dir: join(dir.path, "default"), domainsPath: join(dir.path, "domains.yaml"), nats: nats.url });
    configured = await RelayProcess.start({
      dir: join(dir.path, "configured"),
      domainsPath: join(dir.path, "domains.yaml"),
      nats: nats.url,
      args: ["--postmaster-domain", "Zulu.Example"],
    });
    await Promise.all([byDefault.ready(), configured.ready()]);
  });

  after(async () => {
    await byDefault?.stop();
    await configured?.stop();
    await first?.close();
    await chosen?.close();
    await nats?.stop();
  });

  it("accepts the bare Postmaster and delivers it to the first domain's primary by default", async () => {
    const result = await sendMail(byDefault.smtpPort, { from: "someone@client.test", to: ["Postmaster"], body: simpleMessage("to-postmaster", "pm1") });
    assert.equal(result.rcpts[0]?.code, 250);
    assert.equal(result.data?.code, 250);
    const [message] = await first.waitForMessages(1);
    assert.deepEqual(message?.to, ["postmaster@alpha.example"]);
    assert.equal(headerValue(message?.body ?? "", "Subject"), "to-postmaster");
  });

  it("delivers it to the --postmaster-domain's primary, past that domain's recipient list", async () => {
    const result = await sendMail(configured.smtpPort, { from: "someone@client.test", to: ["postmaster"], body: simpleMessage("configured", "pm2") });
    assert.equal(result.data?.code, 250);
    const [message] = await chosen.waitForMessages(1);
    assert.deepEqual(message?.to, ["postmaster@zulu.example"]);
  });

  it("accepts postmaster@ a list domain, still refusing unlisted local parts", async () => {
    const result = await sendMail(byDefault.smtpPort, {
      from: "someone@client.test",
      to: ["PostMaster@zulu.example", "bob@zulu.example"],
      body: simpleMessage("listed", "pm3"),
    });
    assert.equal(result.rcpts[0]?.code, 250);
    assert.equal(result.rcpts[1]?.code, 550);
    const messages = await chosen.waitForMessages(2);
    assert.deepEqual(messages[1]?.to, ["PostMaster@zulu.example"]);
  });
});
