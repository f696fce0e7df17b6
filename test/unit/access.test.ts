import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { parseRelayDomain, type DomainPolicy } from "../../relay/src/config/relay-domain.ts";
import { AccessFilter } from "../../relay/src/filter/access.ts";
import type { AnyFilter, MessageUnderScan, RecipientUnderCheck, Verdict } from "../../relay/src/filter/filter.ts";
import { FilterPipeline } from "../../relay/src/filter/pipeline.ts";
import { createLogger } from "../../relay/src/log.ts";
import { RelayMetrics } from "../../relay/src/metrics.ts";

const policy: DomainPolicy = parseRelayDomain({
  apiVersion: "mxwarden.io/v1alpha1",
  kind: "RelayDomain",
  metadata: { name: "example-com" },
  spec: {
    domain: "example.com",
    access: {
      allow: { clients: ["198.51.100.0/24", "2001:db8::/32"], senders: ["Partner@Bücher.example"], senderDomains: ["trusted.example"] },
      block: { clients: ["198.51.100.66"], senders: ["spam@partner.example"], senderDomains: ["spam.example"] },
    },
  },
});

const rcpt = (clientAddress: string, sender: string): RecipientUnderCheck => ({
  clientAddress,
  heloName: "client.test",
  sender,
  recipient: "a@example.com",
  domain: "example.com",
});
const access = new AccessFilter((domain) => (domain === "example.com" ? policy.access : undefined));

describe("access filter (spec.access)", () => {
  const cases: Array<[string, RecipientUnderCheck, Verdict["action"] | "allow"]> = [
    ["an allowed network", rcpt("198.51.100.7", "x@anywhere.example"), "allow"],
    ["an allowed IPv6 network", rcpt("2001:db8::25", "x@anywhere.example"), "allow"],
    ["an allowed sender, in another case and with a U-label domain", rcpt("203.0.113.1", "PARTNER@bücher.example"), "allow"],
    ["a subdomain of an allowed sender domain", rcpt("203.0.113.1", "bounce@mail.trusted.example"), "allow"],
    ["a domain that only ends like an allowed one", rcpt("203.0.113.1", "x@untrusted.example"), "continue"],
    ["a blocked address inside an allowed network: the block wins", rcpt("198.51.100.66", "x@anywhere.example"), "reject"],
    ["a blocked sender domain from an allowed network", rcpt("198.51.100.7", "x@mx.spam.example"), "reject"],
    ["a blocked sender", rcpt("203.0.113.1", "Spam@partner.example"), "reject"],
    ["the null sender from an unlisted client", rcpt("203.0.113.1", ""), "continue"],
  ];
  for (const [name, recipient, expected] of cases) {
    it(name, async () => {
      assert.equal((await access.check(recipient)).action, expected);
    });
  }

  it("refuses with 550 5.7.1 and says what matched in the log reason", async () => {
    const verdict = await access.check(rcpt("198.51.100.66", "x@anywhere.example"));
    assert.equal(verdict.action, "reject");
    if (verdict.action !== "reject") return;
    assert.deepEqual([verdict.reply.code, verdict.reply.enhanced], [550, "5.7.1"]);
    assert.match(verdict.reply.text, /\[198\.51\.100\.66\]/);
    assert.equal(verdict.reason, "block list: client 198.51.100.66");
  });

  it("lets a domain without lists through", async () => {
    assert.equal((await access.check({ ...rcpt("198.51.100.66", "spam@partner.example"), domain: "other.example" })).action, "continue");
  });
});

describe("the pipeline and the allow verdict", () => {
  const calls: string[] = [];
  const rcptFilter = (name: string, action: "continue" | "allow" | "reject", bypassedByAllowList?: boolean): AnyFilter => ({
    name,
    stage: "rcpt",
    ...(bypassedByAllowList ? { bypassedByAllowList } : {}),
    check: () => {
      calls.push(name);
      return Promise.resolve(
        action === "reject"
          ? { action, reason: name, reply: { code: 554, enhanced: "5.7.1", text: name } }
          : action === "allow"
            ? { action, reason: name }
            : { action },
      );
    },
  });
  const dataFilter = (name: string, bypassedByAllowList?: boolean): AnyFilter => ({
    name,
    stage: "data",
    ...(bypassedByAllowList ? { bypassedByAllowList } : {}),
    check: () => {
      calls.push(name);
      return Promise.resolve({ action: "reject", reason: name, reply: { code: 554, enhanced: "5.7.1", text: name } });
    },
  });
  const log = createLogger({}, "error", () => undefined);
  const message = (allowed: boolean): MessageUnderScan => ({
    queueId: "q",
    allowed,
    clientAddress: "198.51.100.7",
    heloName: "h",
    sender: "s@x.example",
    recipients: ["a@example.com"],
    domains: ["example.com"],
    size: 1,
    open: () => Readable.from([]),
  });

  it("skips the covered filters after an allow, runs the others, and answers allow", async () => {
    calls.length = 0;
    const metrics = new RelayMetrics();
    const pipeline = new FilterPipeline([rcptFilter("access", "allow"), rcptFilter("dnsbl", "reject", true), rcptFilter("rate", "continue")], metrics, log);
    const verdict = await pipeline.runRcpt(rcpt("198.51.100.7", "x@anywhere.example"));
    assert.equal(verdict.action, "allow");
    assert.deepEqual(calls, ["access", "rate"]);
    assert.equal((await metrics.filterVerdicts.get()).values.find((v) => v.labels.filter === "access")?.labels.verdict, "allow");
  });

  it("still refuses on a filter the allow list does not cover", async () => {
    calls.length = 0;
    const pipeline = new FilterPipeline([rcptFilter("access", "allow"), rcptFilter("rate", "reject")], new RelayMetrics(), log);
    assert.equal((await pipeline.runRcpt(rcpt("198.51.100.7", "x@anywhere.example"))).action, "reject");
  });

  it("at DATA, skips the covered filters only when every recipient was allowed", async () => {
    const pipeline = new FilterPipeline([dataFilter("antivirus"), dataFilter("antispam", true)], new RelayMetrics(), log);
    calls.length = 0;
    assert.equal((await pipeline.runData(message(true))).filter, "antivirus");
    assert.deepEqual(calls, ["antivirus"]);
    calls.length = 0;
    await pipeline.runData(message(false));
    assert.deepEqual(calls.sort(), ["antispam", "antivirus"]);
  });
});
