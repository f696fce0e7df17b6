import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseRelayDomain, type DomainPolicy } from "../../relay/src/config/relay-domain.ts";
import { checkRecipient, splitAddress } from "../../relay/src/receive/recipient-policy.ts";
import type { SmtpReply } from "../../relay/src/smtp/index.ts";
import { replies } from "../../relay/src/receive/smtp-reply.ts";

function relayDomain(name: string, domain: string, recipients?: Record<string, unknown>): DomainPolicy {
  return parseRelayDomain({
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayDomain",
    metadata: { name },
    spec: {
      domain,
      primary: { hosts: [{ host: `mx.${name}.internal`, port: 25 }] },
      ...(recipients ? { recipients } : {}),
    },
  });
}

const configured = [
  relayDomain("example-com", "example.com", { mode: "any" }),
  relayDomain("list-example", "list.example", { mode: "list", list: ["alice", "Bob"] }),
  relayDomain("buecher", "bücher.example"),
];
const byDomain = new Map(configured.map((p) => [p.domain, p]));

/** A lookup like the domain store's: exact match on the normalised domain; records what it was asked. */
function recordingLookup(): { lookup: (domain: string) => DomainPolicy | undefined; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    lookup: (domain) => {
      asked.push(domain);
      return byDomain.get(domain);
    },
  };
}

type Expectation = { reply: SmtpReply } | { accept: { address: string; localPart: string; domain: string; policy: string } };

const cases: Array<{ name: string; address: string; expect: Expectation }> = [
  // Sender-specified routing inside a configured domain: the primary might honour it.
  { name: "percent hack", address: "user%victim.org@example.com", expect: { reply: replies.routingDenied } },
  { name: "bang path", address: "victim.org!user@example.com", expect: { reply: replies.routingDenied } },
  { name: "quoted local part holding @", address: '"user@victim.org"@example.com', expect: { reply: replies.routingDenied } },
  { name: "quoted local part holding %", address: '"user%victim.org"@example.com', expect: { reply: replies.routingDenied } },
  { name: "backslash escape in local part", address: "user\\@victim.org@example.com", expect: { reply: replies.routingDenied } },
  // smtp-server strips an RFC 5321 source route ("@relay:") before the application sees the
  // address (RFC 5321 §4.1.2 / appendix C: accept and ignore it), so "<@example.com:user@victim.org>"
  // arrives as "user@victim.org" and must be judged on its real destination: not ours.
  { name: "source route, as smtp-server hands it over", address: "user@victim.org", expect: { reply: replies.relayDenied } },
  // Should a parser ever pass the route through, the last @ still decides: victim.org.
  { name: "source route, unstripped", address: "@example.com:user@victim.org", expect: { reply: replies.relayDenied } },
  { name: "source route via another host to us, unstripped", address: "@victim.org:user@example.com", expect: { reply: replies.routingDenied } },
  // Domain syntax and normalisation.
  { name: "trailing dot", address: "user@example.com.", expect: { reply: replies.badAddress } },
  {
    name: "upper-case domain",
    address: "user@EXAMPLE.COM",
    expect: { accept: { address: "user@example.com", localPart: "user", domain: "example.com", policy: "example-com" } },
  },
  {
    name: "local part case is kept",
    address: "User.Name@Example.Com",
    expect: { accept: { address: "User.Name@example.com", localPart: "User.Name", domain: "example.com", policy: "example-com" } },
  },
  {
    name: "IDN A-label",
    address: "user@xn--bcher-kva.example",
    expect: { accept: { address: "user@xn--bcher-kva.example", localPart: "user", domain: "xn--bcher-kva.example", policy: "buecher" } },
  },
  {
    name: "IDN U-label",
    address: "user@bücher.example",
    expect: { accept: { address: "user@xn--bcher-kva.example", localPart: "user", domain: "xn--bcher-kva.example", policy: "buecher" } },
  },
  {
    name: "IDN U-label upper case",
    address: "user@BÜCHER.example",
    expect: { accept: { address: "user@xn--bcher-kva.example", localPart: "user", domain: "xn--bcher-kva.example", policy: "buecher" } },
  },
  { name: "look-alike dot (U+3002) is not a dot", address: "user@example\u3002com", expect: { reply: replies.relayDenied } },
  { name: "configured domain as prefix of a foreign one", address: "user@example.com.victim.org", expect: { reply: replies.relayDenied } },
  { name: "foreign domain", address: "user@victim.org", expect: { reply: replies.relayDenied } },
  { name: "IPv4 literal", address: "user@[127.0.0.1]", expect: { reply: replies.relayDenied } },
  { name: "IPv6 literal", address: "user@[IPv6:::1]", expect: { reply: replies.relayDenied } },
  { name: "subdomain of a configured domain", address: "user@sub.example.com", expect: { reply: replies.relayDenied } },
  { name: "underscore in domain", address: "user@exa_mple.com", expect: { reply: replies.relayDenied } },
  { name: "single-label domain", address: "user@localhost", expect: { reply: replies.relayDenied } },
  { name: "empty label", address: "user@example..com", expect: { reply: replies.relayDenied } },
  // Address shape.
  { name: "no @", address: "someone", expect: { reply: replies.badAddress } },
  { name: "empty local part", address: "@example.com", expect: { reply: replies.badAddress } },
  { name: "empty domain", address: "user@", expect: { reply: replies.badAddress } },
  { name: "local part of 65 characters", address: `${"a".repeat(65)}@example.com`, expect: { reply: replies.badAddress } },
  {
    name: "local part of 64 characters",
    address: `${"a".repeat(64)}@example.com`,
    expect: { accept: { address: `${"a".repeat(64)}@example.com`, localPart: "a".repeat(64), domain: "example.com", policy: "example-com" } },
  },
  { name: "leading dot in local part", address: ".user@example.com", expect: { reply: replies.badAddress } },
  { name: "double dot in local part", address: "us..er@example.com", expect: { reply: replies.badAddress } },
  { name: "space in local part", address: "us er@example.com", expect: { reply: replies.badAddress } },
  // Recipient lists: matched case-insensitively on the local part.
  {
    name: "listed recipient",
    address: "alice@list.example",
    expect: { accept: { address: "alice@list.example", localPart: "alice", domain: "list.example", policy: "list-example" } },
  },
  {
    name: "listed recipient, upper case",
    address: "ALICE@list.example",
    expect: { accept: { address: "ALICE@list.example", localPart: "ALICE", domain: "list.example", policy: "list-example" } },
  },
  {
    name: "list entry with capitals matches lower case",
    address: "bob@list.example",
    expect: { accept: { address: "bob@list.example", localPart: "bob", domain: "list.example", policy: "list-example" } },
  },
  { name: "unlisted recipient", address: "carol@list.example", expect: { reply: replies.unknownUser } },
  {
    name: "listed name used in a mode-any domain is irrelevant",
    address: "carol@example.com",
    expect: { accept: { address: "carol@example.com", localPart: "carol", domain: "example.com", policy: "example-com" } },
  },
  { name: "routing trick in a list domain is refused before the list", address: "alice%victim.org@list.example", expect: { reply: replies.routingDenied } },
];

describe("checkRecipient: open-relay tricks and domain policy", () => {
  for (const c of cases) {
    it(`${c.name}: ${JSON.stringify(c.address)}`, () => {
      const { lookup, asked } = recordingLookup();
      const verdict = checkRecipient(c.address, lookup);
      if ("reply" in c.expect) {
        assert.equal(verdict.accept, false, `expected refusal, got ${JSON.stringify(verdict)}`);
        if (verdict.accept) return;
        assert.deepEqual(verdict.reply, c.expect.reply);
        assert.equal(verdict.reply.code, c.expect.reply.code);
        assert.equal(verdict.reply.enhanced, c.expect.reply.enhanced);
      } else {
        assert.equal(verdict.accept, true, `expected acceptance, got ${JSON.stringify(verdict)}`);
        if (!verdict.accept) return;
        assert.equal(verdict.address, c.expect.accept.address);
        assert.equal(verdict.localPart, c.expect.accept.localPart);
        assert.equal(verdict.domain, c.expect.accept.domain);
        assert.equal(verdict.policy.name, c.expect.accept.policy);
      }
      // The store is only ever asked for normalised (lower-case ASCII) domains.
      for (const domain of asked) assert.match(domain, /^[a-z0-9.-]+$/);
    });
  }

  it("replies used here are the documented codes", () => {
    assert.equal(replies.relayDenied.code, 550);
    assert.equal(replies.relayDenied.enhanced, "5.7.1");
    assert.equal(replies.routingDenied.code, 550);
    assert.equal(replies.routingDenied.enhanced, "5.7.1");
    assert.equal(replies.badAddress.code, 501);
    assert.equal(replies.badAddress.enhanced, "5.1.3");
    assert.equal(replies.unknownUser.code, 550);
    assert.equal(replies.unknownUser.enhanced, "5.1.1");
  });

  it("an unconfigured domain is refused without looking at the local part", () => {
    const verdict = checkRecipient("user%other@victim.org", () => undefined);
    assert.equal(verdict.accept, false);
    if (!verdict.accept) assert.equal(verdict.reply, replies.relayDenied);
  });

  it("the lookup is asked for the normalised domain", () => {
    const { lookup, asked } = recordingLookup();
    checkRecipient("user@BÜCHER.Example", lookup);
    assert.deepEqual(asked, ["xn--bcher-kva.example"]);
  });

  it("percent-encoded domain is not decoded into a configured one", () => {
    const verdict = checkRecipient("user@exa%6dple.com", (d) => byDomain.get(d));
    assert.equal(verdict.accept, false);
    if (!verdict.accept) assert.equal(verdict.reply, replies.relayDenied);
  });
});

describe("checkRecipient: a domain being deleted", () => {
  it("answers 450 4.7.1 so senders keep the mail for the primary", () => {
    const retiring = parseRelayDomain({
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "gone", deletionTimestamp: new Date().toISOString() },
      spec: { domain: "gone.example" },
    });
    const verdict = checkRecipient("alice@gone.example", () => retiring);
    assert.equal(verdict.accept, false);
    assert.deepEqual(!verdict.accept && verdict.reply, replies.domainRetiring);
    assert.equal(replies.domainRetiring.code, 450);
  });
});

describe("checkRecipient: Postmaster (RFC 5321 §4.5.1)", () => {
  const lookup = (domain: string): DomainPolicy | undefined => byDomain.get(domain);

  it("sends the bare Postmaster, in any case, to postmaster@ the postmaster domain", () => {
    for (const address of ["Postmaster", "postmaster", "POSTMASTER"]) {
      const verdict = checkRecipient(address, lookup, () => "list.example");
      assert.equal(verdict.accept, true, address);
      if (!verdict.accept) return;
      assert.equal(verdict.address, "postmaster@list.example");
      assert.equal(verdict.policy.name, "list-example");
    }
  });

  it("answers 451 4.3.0 while there is no served domain to send it to", () => {
    for (const domain of [undefined, "not-served.example"]) {
      const verdict = checkRecipient("Postmaster", lookup, () => domain);
      assert.equal(verdict.accept, false);
      assert.deepEqual(!verdict.accept && verdict.reply, replies.postmasterUnavailable);
    }
    assert.equal(replies.postmasterUnavailable.code, 451);
    assert.equal(replies.postmasterUnavailable.enhanced, "4.3.0");
  });

  it("accepts postmaster@ a domain whose recipient list leaves it out, and only postmaster", () => {
    const verdict = checkRecipient("PostMaster@list.example", lookup);
    assert.equal(verdict.accept, true);
    assert.equal(checkRecipient("hostmaster@list.example", lookup).accept, false);
  });
});

describe("splitAddress", () => {
  it("splits at the last @", () => {
    assert.deepEqual(splitAddress('"a@b"@example.com'), { localPart: '"a@b"', domain: "example.com" });
  });
  it("refuses an address without local part or domain", () => {
    assert.equal(splitAddress("@example.com"), undefined);
    assert.equal(splitAddress("user@"), undefined);
    assert.equal(splitAddress("user"), undefined);
  });
});
