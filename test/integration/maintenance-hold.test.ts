// Maintenance holds (spec.hold.until) with a real relay and primary: mail is accepted and queued as
// usual, nothing reaches the primary before `until`, everything does after it; removing the hold
// delivers at once; a hold longer than the queue lifetime allows is logged with its cap.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "../harness/relay-process.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

describe("maintenance hold (spec.hold)", () => {
  const dir = tempDir("hold");
  const domainsPath = join(dir.path, "domains.yaml");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let relay: RelayProcess;
  let hosts: Array<{ host: string; port: number }>;
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
  const specs = (until: string, lifted: boolean): RelayDomainSpec[] => [
    { domain: "held.example", primary: { hosts }, hold: { until } },
    { domain: "lifted.example", primary: { hosts }, ...(lifted ? {} : { hold: { until: tomorrow } }) },
    { domain: "capped.example", primary: { hosts }, queue: { lifetime: "1h" }, hold: { until: tomorrow } },
  ];

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    primary = await TestPrimary.start();
    hosts = [{ host: "127.0.0.1", port: primary.port }];
    writeDomains(domainsPath, specs(tomorrow, false));
    relay = await RelayProcess.start({ dir: dir.path, domainsPath, nats: nats.url });
    await relay.ready();
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await nats?.stop();
  });

  const deliveredTimes = (domain: string): number[] =>
    relay
      .logRecords("delivered")
      .filter((r) => r.domain === domain)
      .map((r) => Date.parse(String(r.time)));

  it("logs the cap of a hold that reaches past four fifths of the queue lifetime", async () => {
    const record = await eventually("cap logged", () =>
      relay
        .logRecords("maintenance hold reaches past the queue lifetime: each message is held at most four fifths of its lifetime")
        .find((r) => r.domain === "capped.example"),
    );
    assert.equal(record.until, tomorrow);
  });

  it("queues during the hold, delivers nothing before until and everything after", async () => {
    const until = new Date(Date.now() + 12_000);
    writeDomains(domainsPath, specs(until.toISOString(), false));
    await eventually("new hold loaded", () =>
      relay.logRecords("maintenance hold: mail is queued, nothing delivered before until").some((r) => r.until === until.toISOString()),
    );
    for (let i = 0; i < 5; i++) {
      const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: [`user${i}@held.example`], body: simpleMessage("held", `held-${i}`) });
      assert.equal(result.data?.code, 250, result.data?.text);
    }
    assert.ok(Date.now() < until.getTime(), "the messages were sent before the hold ended; make until later if this machine is slow");
    await eventually("all five delivered", () => primary.messages.filter((m) => headerValue(m.body, "Subject") === "held").length === 5, 60_000);
    // The relay logs "delivered" after the primary's 250 and the acknowledgement: wait for the lines too.
    await eventually("five deliveries logged", () => deliveredTimes("held.example").length >= 5);
    const times = deliveredTimes("held.example");
    assert.equal(times.length, 5);
    for (const time of times) assert.ok(time >= until.getTime(), `delivered at ${new Date(time).toISOString()}, before ${until.toISOString()}`);
    assert.ok((await relay.metric("mxwarden_delivery_attempts_total", 'result="held"')) >= 5);
  });

  it("delivers at once when the hold is removed", async () => {
    const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["user@lifted.example"], body: simpleMessage("lifted", "lifted-1") });
    assert.equal(result.data?.code, 250);
    await eventually("held for maintenance", async () => (await relay.metric("mxwarden_delivery_attempts_total", 'result="held"')) >= 6);
    assert.equal(
      primary.messages.some((m) => headerValue(m.body, "Subject") === "lifted"),
      false,
    );
    writeDomains(domainsPath, specs(new Date(Date.now() - 1000).toISOString(), true));
    await eventually("delivered after the hold was lifted", () => primary.messages.some((m) => headerValue(m.body, "Subject") === "lifted"), 30_000);
  });
});
