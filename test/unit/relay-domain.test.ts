import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { API_VERSION, MAX_MESSAGE_BYTES_LIMIT, MAX_QUEUE_LIFETIME_MS, normaliseDomain } from "#api";
import { ConfigError, KIND, parseRelayDomain } from "../../relay/src/config/relay-domain.ts";

type Doc = Record<string, unknown>;

function doc(spec: Doc, extra: Doc = {}): Doc {
  return { apiVersion: "mxwarden.io/v1alpha1", kind: "RelayDomain", metadata: { name: "example" }, spec: { domain: "example.com", ...spec }, ...extra };
}

/** Asserts that parsing throws a ConfigError for `path`, optionally with a message fragment. */
function assertConfigError(input: unknown, path: string, message?: RegExp): void {
  assert.throws(
    () => parseRelayDomain(input),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.equal(err.path, path);
      assert.equal(err.name, "ConfigError");
      assert.ok(err.message.startsWith(`${path}: `), `message ${JSON.stringify(err.message)} names the path`);
      if (message) assert.match(err.message, message);
      return true;
    },
  );
}

describe("parseRelayDomain: defaults", () => {
  it("fills in defaults for a minimal document", () => {
    const policy = parseRelayDomain(doc({}));
    assert.equal(API_VERSION, "mxwarden.io/v1alpha1");
    assert.equal(KIND, "RelayDomain");
    assert.equal(policy.name, "example");
    assert.equal(policy.domain, "example.com");
    assert.deepEqual(policy.primaryHosts, []);
    assert.deepEqual(policy.outboundTls, { mode: "opportunistic", verifyCertificate: false });
    assert.equal(policy.recipients.mode, "any");
    assert.equal(policy.recipients.localParts.size, 0);
    assert.equal(policy.maxMessageBytes, 50 * 1024 * 1024);
    assert.equal(policy.queueLifetimeMs, 5 * 86_400_000);
    assert.deepEqual(policy.retry, { initialBackoffMs: 60_000, maxBackoffMs: 3_600_000 });
  });

  it("defaults a host's port to 25 and lower-cases the host", () => {
    const policy = parseRelayDomain(doc({ primary: { hosts: [{ host: "MX1.Example.COM" }, { host: "10.0.0.5", port: 2525 }] } }));
    assert.deepEqual(policy.primaryHosts, [
      { host: "mx1.example.com", port: 25 },
      { host: "10.0.0.5", port: 2525 },
    ]);
  });

  it("tls mode required verifies certificates by default", () => {
    assert.deepEqual(parseRelayDomain(doc({ primary: { tls: { mode: "required" } } })).outboundTls, { mode: "required", verifyCertificate: true });
    assert.deepEqual(parseRelayDomain(doc({ primary: { tls: { mode: "required", verifyCertificate: false } } })).outboundTls, {
      mode: "required",
      verifyCertificate: false,
    });
    assert.deepEqual(parseRelayDomain(doc({ primary: { tls: { verifyCertificate: true } } })).outboundTls, { mode: "opportunistic", verifyCertificate: true });
  });

  it("normalises spec.domain to lower-case A-labels", () => {
    assert.equal(parseRelayDomain(doc({ domain: "Example.COM" })).domain, "example.com");
    assert.equal(parseRelayDomain(doc({ domain: "bücher.example" })).domain, "xn--bcher-kva.example");
  });

  it("accepts status and other top-level Kubernetes fields", () => {
    assert.equal(parseRelayDomain(doc({}, { status: { ready: true }, metadata: { name: "n", namespace: "mail", labels: { a: "b" } } })).name, "n");
  });
});

describe("parseRelayDomain: document shape", () => {
  it("refuses something that is not a mapping", () => {
    for (const bad of [null, undefined, "text", 42, []]) assertConfigError(bad, "(document)");
  });

  it("refuses a wrong apiVersion", () => {
    assertConfigError(doc({}, { apiVersion: "mxwarden.io/v1" }), "apiVersion", /mxwarden\.io\/v1alpha1/);
    assertConfigError(doc({}, { apiVersion: undefined }), "apiVersion");
  });

  it("refuses a wrong kind", () => {
    assertConfigError(doc({}, { kind: "RelayDomains" }), "kind", /RelayDomain/);
    assertConfigError(doc({}, { kind: "relaydomain" }), "kind");
  });

  it("requires metadata.name", () => {
    assertConfigError(doc({}, { metadata: {} }), "metadata.name", /required/);
    assertConfigError(doc({}, { metadata: { name: "" } }), "metadata.name");
    assertConfigError(doc({}, { metadata: { name: 7 } }), "metadata.name");
  });

  it("names missing metadata and spec by their field path", () => {
    assertConfigError(doc({}, { metadata: undefined }), "metadata", /required/);
    assertConfigError(doc({}, { spec: undefined }), "spec", /required/);
    assertConfigError(doc({}, { spec: "example.com" }), "spec", /object/);
  });

  it("refuses missing metadata and spec (whatever the path)", () => {
    assert.throws(() => parseRelayDomain(doc({}, { metadata: undefined })), ConfigError);
    assert.throws(() => parseRelayDomain(doc({}, { spec: undefined })), ConfigError);
    assert.throws(() => parseRelayDomain(doc({}, { spec: [] })), ConfigError);
  });
});

describe("parseRelayDomain: unknown keys", () => {
  const cases: Array<[string, Doc, string]> = [
    ["in spec", { domian: "typo.example" }, "spec.domian"],
    ["in spec.primary", { primary: { host: "mx.example.com" } }, "spec.primary.host"],
    ["in a primary host", { primary: { hosts: [{ host: "a.example" }, { host: "b.example", prot: 25 }] } }, "spec.primary.hosts[1].prot"],
    ["in spec.primary.tls", { primary: { tls: { mode: "required", verify: true } } }, "spec.primary.tls.verify"],
    ["in spec.recipients", { recipients: { mode: "any", users: ["a"] } }, "spec.recipients.users"],
    ["in spec.queue", { queue: { lifetme: "5d" } }, "spec.queue.lifetme"],
    ["in spec.queue.retry", { queue: { retry: { initialBackoff: "1m", maxBackof: "1h" } } }, "spec.queue.retry.maxBackof"],
  ];
  for (const [name, spec, path] of cases) {
    it(`refuses an unknown key ${name}`, () => assertConfigError(doc(spec), path, /not a known field/));
  }
});

describe("parseRelayDomain: domain and hosts", () => {
  for (const bad of [
    "",
    "localhost",
    "example.com.",
    "-bad.example",
    "bad-.example",
    "exa_mple.com",
    "exa mple.com",
    "a..example",
    `${"a".repeat(64)}.example`,
    "[127.0.0.1]",
    "user@example.com",
  ]) {
    it(`refuses spec.domain ${JSON.stringify(bad)}`, () => assertConfigError(doc({ domain: bad }), "spec.domain", /not a valid mail domain/));
  }
  it("requires spec.domain as a string", () => {
    assertConfigError(doc({ domain: undefined }), "spec.domain", /required/);
    assertConfigError(doc({ domain: 42 }), "spec.domain", /not a valid mail domain/);
  });
  it("refuses a percent-encoded spec.domain", () => {
    assertConfigError(doc({ domain: "exa%6dple.com" }), "spec.domain");
  });

  for (const port of [0, -1, 65536, 1.5, "25", Number.NaN]) {
    it(`refuses port ${String(port)}`, () => {
      assertConfigError(doc({ primary: { hosts: [{ host: "mx.example.com", port }] } }), "spec.primary.hosts[0].port", /1 to 65535/);
    });
  }
  it("treats port null (YAML `port: ~`) as not set", () => {
    assert.equal(parseRelayDomain(doc({ primary: { hosts: [{ host: "mx.example.com", port: null }] } })).primaryHosts[0]?.port, 25);
  });
  it("accepts the port range ends", () => {
    const policy = parseRelayDomain(
      doc({
        primary: {
          hosts: [
            { host: "a.example", port: 1 },
            { host: "b.example", port: 65535 },
          ],
        },
      }),
    );
    assert.deepEqual(
      policy.primaryHosts.map((h) => h.port),
      [1, 65535],
    );
  });
  it("refuses bad hosts", () => {
    assertConfigError(doc({ primary: { hosts: [{ host: "" }] } }), "spec.primary.hosts[0].host");
    assertConfigError(doc({ primary: { hosts: [{ host: "mx example" }] } }), "spec.primary.hosts[0].host");
    assertConfigError(doc({ primary: { hosts: [{ host: "mx.example\r\n" }] } }), "spec.primary.hosts[0].host");
    assertConfigError(doc({ primary: { hosts: [{ host: "smtp://mx.example" }] } }), "spec.primary.hosts[0].host");
    assertConfigError(doc({ primary: { hosts: ["mx.example.com"] } }), "spec.primary.hosts[0]");
    assertConfigError(doc({ primary: { hosts: { host: "mx.example.com" } } }), "spec.primary.hosts", /list/);
  });
  it("refuses a bad tls mode or verifyCertificate", () => {
    assertConfigError(doc({ primary: { tls: { mode: "always" } } }), "spec.primary.tls.mode");
    assertConfigError(doc({ primary: { tls: { verifyCertificate: "yes" } } }), "spec.primary.tls.verifyCertificate");
    assertConfigError(doc({ primary: { tls: "required" } }), "spec.primary.tls", /object/);
  });
});

describe("parseRelayDomain: recipients", () => {
  it("mode list keeps lower-cased local parts, also from full addresses in the domain", () => {
    const policy = parseRelayDomain(doc({ recipients: { mode: "list", list: ["alice", "Bob", "Carol@EXAMPLE.com"] } }));
    assert.equal(policy.recipients.mode, "list");
    assert.deepEqual([...policy.recipients.localParts].sort(), ["alice", "bob", "carol"]);
  });
  it("mode list without a list is refused", () => {
    assertConfigError(doc({ recipients: { mode: "list" } }), "spec.recipients.list", /non-empty list/);
    assertConfigError(doc({ recipients: { mode: "list", list: [] } }), "spec.recipients.list", /non-empty list/);
    assertConfigError(doc({ recipients: { mode: "list", list: "alice" } }), "spec.recipients.list");
  });
  it("refuses bad list entries with their index", () => {
    assertConfigError(doc({ recipients: { mode: "list", list: ["alice", ""] } }), "spec.recipients.list[1]");
    assertConfigError(doc({ recipients: { mode: "list", list: ["alice", 5] } }), "spec.recipients.list[1]");
    assertConfigError(doc({ recipients: { mode: "list", list: ["alice@victim.org"] } }), "spec.recipients.list", /must be in spec\.domain/);
    assertConfigError(doc({ recipients: { mode: "list", list: ["@example.com"] } }), "spec.recipients.list[0]", /1-64/);
    assertConfigError(doc({ recipients: { mode: "list", list: ["a".repeat(65)] } }), "spec.recipients.list[0]", /1-64/);
  });
  it("a list with mode any is refused", () => {
    assertConfigError(doc({ recipients: { list: ["alice"] } }), "spec.recipients.list", /only valid with mode: list/);
  });
  it("mode verify takes callout cache lifetimes and what to do when the primary cannot answer", () => {
    assert.deepEqual(parseRelayDomain(doc({ recipients: { mode: "verify" } })).recipients.verify, {
      positiveTtlMs: 86_400_000,
      negativeTtlMs: 3_600_000,
      whenUnavailable: "tempfail",
    });
    const policy = parseRelayDomain(doc({ recipients: { mode: "verify", verify: { positiveTtl: "7d", negativeTtl: "10m", whenUnavailable: "accept" } } }));
    assert.equal(policy.recipients.mode, "verify");
    assert.deepEqual(policy.recipients.verify, { positiveTtlMs: 7 * 86_400_000, negativeTtlMs: 600_000, whenUnavailable: "accept" });
    assertConfigError(doc({ recipients: { mode: "any", verify: {} } }), "spec.recipients.verify", /only valid with mode: verify/);
    assertConfigError(doc({ recipients: { mode: "verify", verify: { whenUnavailable: "bounce" } } }), "spec.recipients.verify.whenUnavailable");
  });
  it("an unknown mode is refused", () => {
    assertConfigError(doc({ recipients: { mode: "all" } }), "spec.recipients.mode", /any, list, verify/);
  });
});

describe("parseRelayDomain: sizes and durations", () => {
  it("accepts maxMessageSize up to the limit", () => {
    assert.equal(MAX_MESSAGE_BYTES_LIMIT, 200 * 1024 * 1024);
    assert.equal(parseRelayDomain(doc({ maxMessageSize: "200Mi" })).maxMessageBytes, MAX_MESSAGE_BYTES_LIMIT);
    assert.equal(parseRelayDomain(doc({ maxMessageSize: "25Mi" })).maxMessageBytes, 25 * 1024 * 1024);
    assert.equal(parseRelayDomain(doc({ maxMessageSize: 1024 })).maxMessageBytes, 1024);
    assert.equal(parseRelayDomain(doc({ maxMessageSize: "20M" })).maxMessageBytes, 20_000_000);
  });
  for (const size of ["201Mi", MAX_MESSAGE_BYTES_LIMIT + 1, "1Gi", 1023, "1k", 0, -1, "1Ti", "lots", true]) {
    it(`refuses maxMessageSize ${JSON.stringify(size)}`, () => assertConfigError(doc({ maxMessageSize: size }), "spec.maxMessageSize"));
  }

  it("accepts a queue lifetime up to 30d", () => {
    assert.equal(MAX_QUEUE_LIFETIME_MS, 30 * 86_400_000);
    assert.equal(parseRelayDomain(doc({ queue: { lifetime: "30d" } })).queueLifetimeMs, MAX_QUEUE_LIFETIME_MS);
    assert.equal(parseRelayDomain(doc({ queue: { lifetime: "36h" } })).queueLifetimeMs, 36 * 3_600_000);
  });
  it("refuses a queue lifetime above 30d", () => {
    assertConfigError(doc({ queue: { lifetime: "31d" } }), "spec.queue.lifetime", /at most 30d/);
    assertConfigError(doc({ queue: { lifetime: "30d1ms" } }), "spec.queue.lifetime", /at most 30d/);
  });
  it("refuses a malformed or zero queue lifetime", () => {
    for (const lifetime of ["5", "0d", "", 5, "1.5d"]) assertConfigError(doc({ queue: { lifetime } }), "spec.queue.lifetime", /duration/);
  });

  it("delay warnings are off unless spec.queue.delayWarning is set", () => {
    assert.equal(parseRelayDomain(doc({})).delayWarningMs, undefined);
    assert.equal(parseRelayDomain(doc({ queue: { lifetime: "1d" } })).delayWarningMs, undefined);
    assert.equal(parseRelayDomain(doc({ queue: { delayWarning: "4h" } })).delayWarningMs, 4 * 3_600_000);
  });
  it("refuses a delayWarning that is not shorter than the queue lifetime, or not a duration", () => {
    assertConfigError(doc({ queue: { lifetime: "1d", delayWarning: "1d" } }), "spec.queue.delayWarning", /shorter than lifetime/);
    assertConfigError(doc({ queue: { delayWarning: "6d" } }), "spec.queue.delayWarning", /shorter than lifetime/);
    for (const delayWarning of ["0s", "4", "", 4]) assertConfigError(doc({ queue: { delayWarning } }), "spec.queue.delayWarning", /duration/);
  });

  it("parses retry backoffs", () => {
    assert.deepEqual(parseRelayDomain(doc({ queue: { retry: { initialBackoff: "30s", maxBackoff: "10m" } } })).retry, {
      initialBackoffMs: 30_000,
      maxBackoffMs: 600_000,
    });
    assert.deepEqual(parseRelayDomain(doc({ queue: { retry: { initialBackoff: "5m" } } })).retry, { initialBackoffMs: 300_000, maxBackoffMs: 3_600_000 });
    assert.deepEqual(parseRelayDomain(doc({ queue: { retry: { maxBackoff: "2h" } } })).retry, { initialBackoffMs: 60_000, maxBackoffMs: 7_200_000 });
    assert.deepEqual(parseRelayDomain(doc({ queue: { retry: { initialBackoff: "1m", maxBackoff: "1m" } } })).retry, {
      initialBackoffMs: 60_000,
      maxBackoffMs: 60_000,
    });
  });
  it("an initialBackoff above the default maximum raises the maximum with it", () => {
    assert.deepEqual(parseRelayDomain(doc({ queue: { retry: { initialBackoff: "2h" } } })).retry, { initialBackoffMs: 7_200_000, maxBackoffMs: 7_200_000 });
  });
  it("refuses a maxBackoff shorter than initialBackoff", () => {
    assertConfigError(doc({ queue: { retry: { initialBackoff: "10m", maxBackoff: "5m" } } }), "spec.queue.retry.maxBackoff", /not be shorter/);
    assertConfigError(doc({ queue: { retry: { maxBackoff: "30s" } } }), "spec.queue.retry.maxBackoff", /not be shorter/);
  });
  it("refuses malformed retry durations", () => {
    assertConfigError(doc({ queue: { retry: { initialBackoff: "0s" } } }), "spec.queue.retry.initialBackoff");
    assertConfigError(doc({ queue: { retry: { initialBackoff: 60 } } }), "spec.queue.retry.initialBackoff");
    assertConfigError(doc({ queue: { retry: { maxBackoff: "1 hour" } } }), "spec.queue.retry.maxBackoff");
    assertConfigError(doc({ queue: { retry: "fast" } }), "spec.queue.retry", /object/);
  });
});

describe("normaliseDomain", () => {
  const cases: Array<[string, string | undefined]> = [
    ["example.com", "example.com"],
    ["EXAMPLE.Com", "example.com"],
    ["bücher.example", "xn--bcher-kva.example"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["a-b.example", "a-b.example"],
    [`${"a".repeat(63)}.example`, `${"a".repeat(63)}.example`],
    [`${"a".repeat(64)}.example`, undefined],
    ["example.com.", undefined],
    ["", undefined],
    ["com", undefined],
    [".example.com", undefined],
    ["example..com", undefined],
    ["-a.example", undefined],
    ["a-.example", undefined],
    ["exa_mple.com", undefined],
    ["example\u3002com", undefined],
    ["example.com\uff0evictim.org", undefined],
    [`${"a.".repeat(127)}ab`, undefined],
  ];
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(normaliseDomain(input), expected);
    });
  }
});

describe("parseRelayDomain: spec.antivirus", () => {
  it("scans by default, fails closed and accepts what is too large to scan", () => {
    assert.deepEqual(parseRelayDomain(doc({})).antivirus, {
      enabled: true,
      onError: "tempfail",
      maxScanBytes: 25 * 1024 * 1024,
      onOversize: "accept",
    });
  });
  it("takes every setting", () => {
    const policy = parseRelayDomain(doc({ antivirus: { enabled: false, onError: "accept", maxScanSize: "10Mi", onOversize: "reject" } }));
    assert.deepEqual(policy.antivirus, { enabled: false, onError: "accept", maxScanBytes: 10 * 1024 * 1024, onOversize: "reject" });
  });
  it("refuses bad values with their field path", () => {
    assertConfigError(doc({ antivirus: { enabled: "yes" } }), "spec.antivirus.enabled");
    assertConfigError(doc({ antivirus: { onError: "ignore" } }), "spec.antivirus.onError", /tempfail, accept/);
    assertConfigError(doc({ antivirus: { onOversize: "drop" } }), "spec.antivirus.onOversize");
    assertConfigError(doc({ antivirus: { maxScanSize: "1Ti" } }), "spec.antivirus.maxScanSize");
    assertConfigError(doc({ antivirus: { action: "reject" } }), "spec.antivirus.action", /not a known field/);
  });
});

describe("parseRelayDomain: spec.antispam", () => {
  it("scores by default with rspamd's own actions and fails closed", () => {
    assert.deepEqual(parseRelayDomain(doc({})).antispam, { enabled: true, onError: "tempfail", rejectScore: undefined, addHeaderScore: undefined });
  });
  it("takes a domain's thresholds", () => {
    const policy = parseRelayDomain(doc({ antispam: { onError: "accept", rejectScore: 12, addHeaderScore: 5.5 } }));
    assert.deepEqual(policy.antispam, { enabled: true, onError: "accept", rejectScore: 12, addHeaderScore: 5.5 });
  });
  it("refuses thresholds out of order or of the wrong type", () => {
    assertConfigError(doc({ antispam: { rejectScore: 5, addHeaderScore: 8 } }), "spec.antispam.addHeaderScore", /not be above rejectScore/);
    assertConfigError(doc({ antispam: { rejectScore: "high" } }), "spec.antispam.rejectScore");
    assertConfigError(doc({ antispam: { onError: "drop" } }), "spec.antispam.onError");
    assertConfigError(doc({ antispam: { greylist: true } }), "spec.antispam.greylist", /not a known field/);
  });
});

describe("parseRelayDomain: spec.greylisting", () => {
  it("is off by default with Postgrey's timings", () => {
    assert.deepEqual(parseRelayDomain(doc({})).greylisting, {
      enabled: false,
      delayMs: 300_000,
      expiryMs: 2 * 86_400_000,
      autoAllowMs: 35 * 86_400_000,
      allowClients: [],
      allowSenderDomains: [],
    });
  });
  it("takes timings and allowlists, normalised", () => {
    const policy = parseRelayDomain(
      doc({
        greylisting: {
          enabled: true,
          delay: "2m",
          expiry: "1d",
          autoAllow: "7d",
          allowClients: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"],
          allowSenderDomains: ["Partner.Example"],
        },
      }),
    );
    assert.deepEqual(policy.greylisting, {
      enabled: true,
      delayMs: 120_000,
      expiryMs: 86_400_000,
      autoAllowMs: 7 * 86_400_000,
      allowClients: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"],
      allowSenderDomains: ["partner.example"],
    });
  });
  it("refuses bad networks, domains and timings with their path", () => {
    assertConfigError(doc({ greylisting: { allowClients: ["192.0.2.0/33"] } }), "spec.greylisting.allowClients[0]");
    assertConfigError(doc({ greylisting: { allowClients: ["example.com"] } }), "spec.greylisting.allowClients[0]");
    assertConfigError(doc({ greylisting: { allowSenderDomains: ["not a domain"] } }), "spec.greylisting.allowSenderDomains[0]");
    assertConfigError(doc({ greylisting: { delay: "2h", expiry: "1h" } }), "spec.greylisting.expiry", /longer than delay/);
    assertConfigError(doc({ greylisting: { delay: "soon" } }), "spec.greylisting.delay");
  });
});

describe("parseRelayDomain: spec.dnsbl", () => {
  it("has no lists by default and takes normalised zones", () => {
    assert.deepEqual(parseRelayDomain(doc({})).dnsbl, { zones: [], allowZones: [], onError: "accept" });
    assert.deepEqual(parseRelayDomain(doc({ dnsbl: { zones: ["ZEN.Spamhaus.org"], allowZones: ["list.dnswl.org"], onError: "tempfail" } })).dnsbl, {
      zones: ["zen.spamhaus.org"],
      allowZones: ["list.dnswl.org"],
      onError: "tempfail",
    });
  });
  it("refuses what is not a zone", () => {
    assertConfigError(doc({ dnsbl: { zones: ["not a zone"] } }), "spec.dnsbl.zones[0]");
    assertConfigError(doc({ dnsbl: { zones: "zen.spamhaus.org" } }), "spec.dnsbl.zones");
    assertConfigError(doc({ dnsbl: { block: [] } }), "spec.dnsbl.block", /not a known field/);
    assertConfigError(doc({ dnsbl: { onError: "reject" } }), "spec.dnsbl.onError");
  });
});

describe("parseRelayDomain: spec.authentication", () => {
  it("honours DMARC p=reject and leaves SPF fails to DMARC by default", () => {
    assert.deepEqual(parseRelayDomain(doc({})).authentication, { enabled: true, rejectDmarcReject: true, rejectSpfFail: false });
    assert.deepEqual(parseRelayDomain(doc({ authentication: { rejectSpfFail: true, rejectDmarcReject: false } })).authentication, {
      enabled: true,
      rejectDmarcReject: false,
      rejectSpfFail: true,
    });
  });
  it("refuses non-boolean switches and unknown fields", () => {
    assertConfigError(doc({ authentication: { rejectSpfFail: "yes" } }), "spec.authentication.rejectSpfFail");
    assertConfigError(doc({ authentication: { dkim: true } }), "spec.authentication.dkim", /not a known field/);
  });
});

describe("parseRelayDomain: spec.rateLimits", () => {
  it("has no limits by default and parses recipients per window", () => {
    assert.deepEqual(parseRelayDomain(doc({})).rateLimits, { perClient: undefined, perSenderDomain: undefined, perDomain: undefined });
    assert.deepEqual(parseRelayDomain(doc({ rateLimits: { perClient: "100/1m", perDomain: "50000/1d" } })).rateLimits, {
      perClient: { count: 100, windowMs: 60_000 },
      perSenderDomain: undefined,
      perDomain: { count: 50_000, windowMs: 86_400_000 },
    });
  });
  it("refuses malformed rates", () => {
    for (const bad of ["100", "100/", "x/1m", "0/1m", "10/500ms", "10/2d", 100]) {
      assertConfigError(doc({ rateLimits: { perClient: bad } }), "spec.rateLimits.perClient", /rate such as/);
    }
    assertConfigError(doc({ rateLimits: { perIp: "1/1m" } }), "spec.rateLimits.perIp", /not a known field/);
  });
});

describe("parseRelayDomain: spec.clientChecks", () => {
  it("refuses forged HELOs by default and nothing else", () => {
    assert.deepEqual(parseRelayDomain(doc({})).clientChecks, { rejectHeloOurName: true, rejectInvalidHelo: false, reverseDns: "disabled" });
  });
  it("takes every setting and refuses bad ones", () => {
    assert.deepEqual(parseRelayDomain(doc({ clientChecks: { rejectHeloOurName: false, rejectInvalidHelo: true, reverseDns: "tempfail" } })).clientChecks, {
      rejectHeloOurName: false,
      rejectInvalidHelo: true,
      reverseDns: "tempfail",
    });
    assertConfigError(doc({ clientChecks: { reverseDns: "strict" } }), "spec.clientChecks.reverseDns");
    assertConfigError(doc({ clientChecks: { fcrdns: true } }), "spec.clientChecks.fcrdns", /not a known field/);
  });
});

describe("parseRelayDomain: a domain being deleted", () => {
  it("is retiring from metadata.deletionTimestamp, bounced after the grace period", () => {
    const policy = parseRelayDomain(
      doc({ queue: { deletionGracePeriod: "2h" } }, { metadata: { name: "example", deletionTimestamp: "2026-11-23T10:00:00Z" } }),
    );
    assert.deepEqual(policy.retiring, { sinceMs: Date.parse("2026-11-23T10:00:00Z"), bounceAtMs: Date.parse("2026-11-23T12:00:00Z") });
  });
  it("defaults the grace period to one day and is not retiring without a deletionTimestamp", () => {
    assert.equal(parseRelayDomain(doc({})).retiring, undefined);
    const policy = parseRelayDomain(doc({}, { metadata: { name: "example", deletionTimestamp: "2026-11-23T10:00:00Z" } }));
    assert.equal(policy.retiring?.bounceAtMs, Date.parse("2026-11-23T10:00:00Z") + 86_400_000);
  });
  it("refuses a malformed deletionTimestamp and an over-long grace period", () => {
    assertConfigError(doc({}, { metadata: { name: "example", deletionTimestamp: "yesterday" } }), "metadata.deletionTimestamp");
    assertConfigError(doc({ queue: { deletionGracePeriod: "31d" } }), "spec.queue.deletionGracePeriod", /30d/);
  });
});

describe("parseRelayDomain: spec.access", () => {
  it("is empty by default", () => {
    const empty = { clients: [], senders: [], senderDomains: [] };
    assert.deepEqual(parseRelayDomain(doc({})).access, { allow: empty, block: empty });
  });
  it("normalises networks, addresses and domains for matching", () => {
    const policy = parseRelayDomain(
      doc({ access: { allow: { clients: ["192.0.2.1", "2001:db8::/32"], senders: ["Alice@Bücher.Example"], senderDomains: ["Partner.Example"] } } }),
    );
    assert.deepEqual(policy.access.allow, {
      clients: ["192.0.2.1/32", "2001:db8::/32"],
      senders: ["alice@xn--bcher-kva.example"],
      senderDomains: ["partner.example"],
    });
  });
  it("refuses bad entries with their path", () => {
    assertConfigError(doc({ access: { block: { clients: ["192.0.2.0/33"] } } }), "spec.access.block.clients[0]", /address or CIDR/);
    assertConfigError(doc({ access: { block: { senders: ["no-at-sign.example"] } } }), "spec.access.block.senders[0]", /mail address/);
    assertConfigError(doc({ access: { allow: { senders: ["a@b@example.com"] } } }), "spec.access.allow.senders[0]", /mail address/);
    assertConfigError(doc({ access: { allow: { senders: [`${"a".repeat(65)}@example.com`] } } }), "spec.access.allow.senders[0]", /mail address/);
    assertConfigError(doc({ access: { allow: { senderDomains: ["localhost"] } } }), "spec.access.allow.senderDomains[0]", /valid domain/);
    assertConfigError(doc({ access: { deny: {} } }), "spec.access.deny", /not a known field/);
  });
});

describe("parseRelayDomain: spec.hold", () => {
  it("has no hold by default", () => {
    assert.equal(parseRelayDomain(doc({})).hold, undefined);
  });
  it("takes an RFC 3339 time with any zone", () => {
    assert.deepEqual(parseRelayDomain(doc({ hold: { until: "2026-12-24T07:00:00.5+01:00" } })).hold, { untilMs: Date.parse("2026-12-24T06:00:00.500Z") });
  });
  it("refuses what is not an RFC 3339 time, and a hold without until", () => {
    for (const until of ["2026-12-24", "2026-12-24 06:00:00Z", "2026-13-01T00:00:00Z", "2026-12-24T06:00:60Z", "tomorrow"]) {
      assertConfigError(doc({ hold: { until } }), "spec.hold.until", /RFC 3339/);
    }
    assertConfigError(doc({ hold: {} }), "spec.hold.until", /required/);
  });
});

describe("parseRelayDomain: spec.acceptWhen", () => {
  it("accepts always by default, and takes monitoring mode", () => {
    assert.equal(parseRelayDomain(doc({})).acceptWhen, "always");
    assert.equal(parseRelayDomain(doc({ acceptWhen: "primaryDown" })).acceptWhen, "primaryDown");
  });
  it("refuses another value", () => {
    assertConfigError(doc({ acceptWhen: "never" }), "spec.acceptWhen", /always, primaryDown/);
  });
});
