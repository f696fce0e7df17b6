// One RelayDomain contract, two enforcers: the API server (the generated CRD, through kubectl, as a
// user applies it) and the relay (its own YAML reader and validation). Every document of the table
// goes through both, written as YAML text, so kubectl's YAML 1.1 reading (a plain off/on/yes/no is a
// boolean) is part of the test. The two must accept and refuse exactly the same documents.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { KUBECTL, run } from "../harness/helm.ts";
import { repoRoot } from "../harness/workspace.ts";
import { loadDomainDocuments } from "../../relay/src/config/domain-store.ts";

interface Case {
  name: string;
  /** The spec's lines below `spec:`, as a user writes them (two-space indent is added). */
  spec: string;
  valid: boolean;
}

const cases: Case[] = [
  { name: "minimal", spec: "domain: example.com", valid: true },
  { name: "IDN domain", spec: "domain: bücher.example", valid: true },
  { name: "upper-case domain", spec: "domain: Example.COM", valid: true },
  { name: "single label", spec: "domain: localhost", valid: false },
  { name: "domain with a space", spec: "domain: not a domain", valid: false },
  { name: "domain with a leading hyphen", spec: "domain: -bad.example", valid: false },
  { name: "domain with an underscore", spec: "domain: a_b.example", valid: false },
  { name: "reverseDns disabled", spec: "domain: example.com\nclientChecks:\n  reverseDns: disabled", valid: true },
  { name: "reverseDns reject", spec: "domain: example.com\nclientChecks:\n  reverseDns: reject", valid: true },
  { name: "reverseDns plain off (a YAML 1.1 boolean)", spec: "domain: example.com\nclientChecks:\n  reverseDns: off", valid: false },
  { name: "reverseDns quoted off", spec: 'domain: example.com\nclientChecks:\n  reverseDns: "off"', valid: false },
  { name: "reverseDns plain no", spec: "domain: example.com\nclientChecks:\n  reverseDns: no", valid: false },
  { name: "reverseDns plain on", spec: "domain: example.com\nclientChecks:\n  reverseDns: on", valid: false },
  { name: "boolean written yes (YAML 1.1 true)", spec: "domain: example.com\nauthentication:\n  rejectSpfFail: yes", valid: true },
  { name: "boolean written off (YAML 1.1 false)", spec: "domain: example.com\ngreylisting:\n  enabled: off", valid: true },
  { name: "boolean as a quoted string", spec: 'domain: example.com\nauthentication:\n  enabled: "yes"', valid: false },
  { name: "unknown field", spec: "domain: example.com\nantivirus:\n  scanEverything: true", valid: false },
  { name: "unknown top-level field", spec: "domain: example.com\nfcrdns: true", valid: false },
  { name: "lifetime 30d", spec: "domain: example.com\nqueue:\n  lifetime: 30d", valid: true },
  { name: "lifetime 720h", spec: "domain: example.com\nqueue:\n  lifetime: 720h", valid: true },
  { name: "lifetime 1h30m", spec: "domain: example.com\nqueue:\n  lifetime: 1h30m", valid: true },
  { name: "lifetime 31d", spec: "domain: example.com\nqueue:\n  lifetime: 31d", valid: false },
  { name: "lifetime 30d1ms", spec: "domain: example.com\nqueue:\n  lifetime: 30d1ms", valid: false },
  { name: "lifetime 0d", spec: "domain: example.com\nqueue:\n  lifetime: 0d", valid: false },
  { name: "lifetime without a unit", spec: 'domain: example.com\nqueue:\n  lifetime: "5"', valid: false },
  { name: "lifetime 1.5d", spec: "domain: example.com\nqueue:\n  lifetime: 1.5d", valid: false },
  { name: "grace period 31d", spec: "domain: example.com\nqueue:\n  deletionGracePeriod: 31d", valid: false },
  { name: "equal backoffs", spec: "domain: example.com\nqueue:\n  retry:\n    initialBackoff: 1m\n    maxBackoff: 1m", valid: true },
  { name: "maxBackoff below initialBackoff", spec: "domain: example.com\nqueue:\n  retry:\n    initialBackoff: 10m\n    maxBackoff: 5m", valid: false },
  { name: "maxBackoff below the default initialBackoff", spec: "domain: example.com\nqueue:\n  retry:\n    maxBackoff: 30s", valid: false },
  { name: "delayWarning under the default lifetime", spec: "domain: example.com\nqueue:\n  delayWarning: 4h", valid: true },
  { name: "delayWarning under a set lifetime", spec: "domain: example.com\nqueue:\n  lifetime: 1d\n  delayWarning: 23h59m", valid: true },
  { name: "delayWarning equal to the lifetime", spec: "domain: example.com\nqueue:\n  lifetime: 1d\n  delayWarning: 24h", valid: false },
  { name: "delayWarning beyond the default lifetime", spec: "domain: example.com\nqueue:\n  delayWarning: 6d", valid: false },
  { name: "delayWarning of zero", spec: "domain: example.com\nqueue:\n  delayWarning: 0s", valid: false },
  { name: "delayWarning not a duration", spec: "domain: example.com\nqueue:\n  delayWarning: soon", valid: false },
  { name: "size 200Mi", spec: "domain: example.com\nmaxMessageSize: 200Mi", valid: true },
  { name: "size 1Ki", spec: "domain: example.com\nmaxMessageSize: 1Ki", valid: true },
  { name: "size as bytes", spec: "domain: example.com\nmaxMessageSize: 52428800", valid: true },
  { name: "size 20M", spec: "domain: example.com\nmaxMessageSize: 20M", valid: true },
  { name: "size 201Mi", spec: "domain: example.com\nmaxMessageSize: 201Mi", valid: false },
  { name: "size 1023", spec: "domain: example.com\nmaxMessageSize: 1023", valid: false },
  { name: "size 1k", spec: "domain: example.com\nmaxMessageSize: 1k", valid: false },
  { name: "size 1Ti", spec: "domain: example.com\nmaxMessageSize: 1Ti", valid: false },
  { name: "scan size 300Mi", spec: "domain: example.com\nantivirus:\n  maxScanSize: 300Mi", valid: false },
  { name: "rate 100/1m", spec: "domain: example.com\nrateLimits:\n  perClient: 100/1m", valid: true },
  { name: "rate per day", spec: "domain: example.com\nrateLimits:\n  perDomain: 5/1d", valid: true },
  { name: "rate of zero", spec: "domain: example.com\nrateLimits:\n  perClient: 0/1m", valid: false },
  { name: "rate window below 1s", spec: "domain: example.com\nrateLimits:\n  perClient: 1/500ms", valid: false },
  { name: "rate window above 1d", spec: "domain: example.com\nrateLimits:\n  perClient: 1/2d", valid: false },
  { name: "rate without a window", spec: 'domain: example.com\nrateLimits:\n  perClient: "100"', valid: false },
  {
    name: "greylisting with allowlists",
    spec: "domain: example.com\ngreylisting:\n  enabled: true\n  allowClients: [192.0.2.0/24, 192.0.2.7, 2001:db8::/32]\n  allowSenderDomains: [partner.example]",
    valid: true,
  },
  { name: "greylisting expiry not after delay", spec: "domain: example.com\ngreylisting:\n  delay: 2h\n  expiry: 1h", valid: false },
  { name: "greylisting autoAllow 61d", spec: "domain: example.com\ngreylisting:\n  autoAllow: 61d", valid: false },
  { name: "greylisting bad address", spec: "domain: example.com\ngreylisting:\n  allowClients: [300.1.1.1]", valid: false },
  { name: "greylisting prefix too long", spec: "domain: example.com\ngreylisting:\n  allowClients: [192.0.2.0/33]", valid: false },
  { name: "greylisting bad sender domain", spec: 'domain: example.com\ngreylisting:\n  allowSenderDomains: ["not a domain"]', valid: false },
  { name: "recipients list", spec: "domain: example.com\nrecipients:\n  mode: list\n  list: [alice, Bob@Example.com]", valid: true },
  { name: "recipients list at an IDN domain", spec: "domain: bücher.example\nrecipients:\n  mode: list\n  list: [alice@bücher.example]", valid: true },
  { name: "recipients list in another domain", spec: "domain: example.com\nrecipients:\n  mode: list\n  list: [alice@victim.org]", valid: false },
  { name: "recipients list without mode list", spec: "domain: example.com\nrecipients:\n  list: [alice]", valid: false },
  { name: "recipients mode list without a list", spec: "domain: example.com\nrecipients:\n  mode: list", valid: false },
  { name: "recipients empty local part", spec: 'domain: example.com\nrecipients:\n  mode: list\n  list: ["@example.com"]', valid: false },
  { name: "recipients local part of 65", spec: `domain: example.com\nrecipients:\n  mode: list\n  list: [${"a".repeat(65)}]`, valid: false },
  {
    name: "recipients verify",
    spec: "domain: example.com\nrecipients:\n  mode: verify\n  verify:\n    positiveTtl: 7d\n    whenUnavailable: accept",
    valid: true,
  },
  { name: "recipients verify with mode any", spec: "domain: example.com\nrecipients:\n  mode: any\n  verify: {}", valid: false },
  { name: "recipients unknown mode", spec: "domain: example.com\nrecipients:\n  mode: all", valid: false },
  { name: "antispam thresholds", spec: "domain: example.com\nantispam:\n  rejectScore: 15\n  addHeaderScore: 6.5", valid: true },
  { name: "antispam thresholds reversed", spec: "domain: example.com\nantispam:\n  rejectScore: 5\n  addHeaderScore: 8", valid: false },
  { name: "antispam score out of range", spec: "domain: example.com\nantispam:\n  rejectScore: 5000", valid: false },
  {
    name: "primary hosts",
    spec: "domain: example.com\nprimary:\n  hosts:\n    - host: mx1.example.com\n    - host: 192.0.2.10\n      port: 2525",
    valid: true,
  },
  { name: "primary port 0", spec: "domain: example.com\nprimary:\n  hosts:\n    - host: mx1.example.com\n      port: 0", valid: false },
  { name: "primary port 70000", spec: "domain: example.com\nprimary:\n  hosts:\n    - host: mx1.example.com\n      port: 70000", valid: false },
  { name: "primary host with a space", spec: 'domain: example.com\nprimary:\n  hosts:\n    - host: "mx1 example"', valid: false },
  { name: "primary tls mode", spec: "domain: example.com\nprimary:\n  tls:\n    mode: sometimes", valid: false },
  { name: "dnsbl zones", spec: "domain: example.com\ndnsbl:\n  zones: [zen.example]\n  onError: tempfail", valid: true },
  { name: "dnsbl bad zone", spec: 'domain: example.com\ndnsbl:\n  zones: ["zen example"]', valid: false },
  { name: "sites (operator only)", spec: "domain: example.com\nsites: [site-a]", valid: true },
  {
    name: "access lists",
    spec: "domain: example.com\naccess:\n  allow:\n    clients: [198.51.100.0/24, 2001:db8::/32, 192.0.2.7]\n    senders: [Invoices@Partner.example, alice@bücher.example]\n    senderDomains: [partner.example]\n  block:\n    clients: [203.0.113.7]\n    senderDomains: [spam.example]",
    valid: true,
  },
  { name: "access bad network", spec: "domain: example.com\naccess:\n  block:\n    clients: [192.0.2.0/33]", valid: false },
  { name: "access sender without @", spec: "domain: example.com\naccess:\n  allow:\n    senders: [partner.example]", valid: false },
  { name: "access sender with two @", spec: 'domain: example.com\naccess:\n  allow:\n    senders: ["a@b@partner.example"]', valid: false },
  { name: "access sender with a space", spec: 'domain: example.com\naccess:\n  allow:\n    senders: ["a b@partner.example"]', valid: false },
  { name: "access sender local part of 65", spec: `domain: example.com\naccess:\n  allow:\n    senders: [${"a".repeat(65)}@partner.example]`, valid: false },
  { name: "access sender in a single-label domain", spec: "domain: example.com\naccess:\n  block:\n    senders: [root@localhost]", valid: false },
  { name: "access bad sender domain", spec: 'domain: example.com\naccess:\n  block:\n    senderDomains: ["spam example"]', valid: false },
  { name: "access unknown list", spec: "domain: example.com\naccess:\n  deny:\n    clients: [192.0.2.1]", valid: false },
  { name: "hold until, plain (a YAML timestamp, read as a string)", spec: "domain: example.com\nhold:\n  until: 2026-12-24T06:00:00Z", valid: true },
  { name: "hold until with an offset and fraction", spec: 'domain: example.com\nhold:\n  until: "2026-12-24T07:00:00.250+01:00"', valid: true },
  { name: "hold until a date only", spec: "domain: example.com\nhold:\n  until: 2026-12-24", valid: false },
  { name: "hold until with a space", spec: 'domain: example.com\nhold:\n  until: "2026-12-24 06:00:00Z"', valid: false },
  { name: "hold until month 13", spec: 'domain: example.com\nhold:\n  until: "2026-13-24T06:00:00Z"', valid: false },
  { name: "hold until a leap second", spec: 'domain: example.com\nhold:\n  until: "2026-12-31T23:59:60Z"', valid: false },
  { name: "hold without until", spec: "domain: example.com\nhold: {}", valid: false },
  { name: "acceptWhen primaryDown", spec: "domain: example.com\nacceptWhen: primaryDown", valid: true },
  { name: "acceptWhen never", spec: "domain: example.com\nacceptWhen: never", valid: false },
];

function documentYaml(name: string, spec: string): string {
  const body = spec
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
  return `apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata:\n  name: ${name}\n  namespace: team\nspec:\n${body}\n`;
}

describe("the RelayDomain contract: the CRD (through kubectl) and the relay refuse the same documents", () => {
  let plane: TestControlPlane;
  const dir = join(repoRoot, ".tmp", "contract-parity");

  before(async () => {
    plane = await TestControlPlane.start({ name: "contract-parity" });
    await plane.installCrds([join(repoRoot, "crds/relaydomains.mxwarden.io.yaml")]);
    const namespace = run(KUBECTL, ["--kubeconfig", plane.kubeconfigPath, "create", "namespace", "team"]);
    assert.equal(namespace.status, 0, namespace.stderr);
  });
  after(async () => {
    await plane?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  cases.forEach((testCase, index) => {
    it(`${testCase.valid ? "accepts" : "refuses"}: ${testCase.name}`, async () => {
      const yaml = documentYaml(`case-${index}`, testCase.spec);
      const kubectl = run(KUBECTL, ["--kubeconfig", plane.kubeconfigPath, "apply", "--dry-run=server", "-f", "-"], yaml);
      const caseDir = join(dir, String(index));
      mkdirSync(caseDir, { recursive: true });
      writeFileSync(join(caseDir, "domain.yaml"), yaml);
      const relay = await loadDomainDocuments(caseDir);
      const relayProblem = relay.problems[0]?.message;
      assert.equal(kubectl.status === 0, testCase.valid, `kubectl: ${kubectl.stderr.trim() || kubectl.stdout.trim()}`);
      assert.equal(relayProblem === undefined && relay.policies.length === 1, testCase.valid, `relay: ${relayProblem ?? "accepted"}`);
    });
  });
});
