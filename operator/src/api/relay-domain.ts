// RelayDomain (namespaced): one per mail domain a platform team wants a backup MX for. The spec is
// what the relay itself reads (relay/src/config/relay-domain.ts validates the same fields at load
// time), plus `sites`, which only the operator uses. The schema below is the one source of the CRD.

import { array, boolean, byteSize, conditions, duration, hostname, integer, number, object, oneOf, port, string, type Schema } from "./schema.ts";
import type { Condition } from "./conditions.ts";

export const GROUP = "mxwarden.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
}

export interface RelayDomainSpec {
  domain: string;
  primary?: { hosts?: { host: string; port?: number }[]; tls?: { mode?: "opportunistic" | "required"; verifyCertificate?: boolean } };
  recipients?: { mode?: "any" | "list" | "verify"; list?: string[]; verify?: { positiveTtl?: string; negativeTtl?: string; whenUnavailable?: "tempfail" | "accept" } };
  maxMessageSize?: string | number;
  queue?: { lifetime?: string; retry?: { initialBackoff?: string; maxBackoff?: string }; deletionGracePeriod?: string };
  antivirus?: { enabled?: boolean; onError?: "tempfail" | "accept"; maxScanSize?: string | number; onOversize?: "accept" | "tempfail" | "reject" };
  antispam?: { enabled?: boolean; onError?: "tempfail" | "accept"; rejectScore?: number; addHeaderScore?: number };
  greylisting?: { enabled?: boolean; delay?: string; expiry?: string; autoAllow?: string; allowClients?: string[]; allowSenderDomains?: string[] };
  dnsbl?: { zones?: string[]; allowZones?: string[]; onError?: "accept" | "tempfail" };
  authentication?: { enabled?: boolean; rejectDmarcReject?: boolean; rejectSpfFail?: boolean };
  rateLimits?: { perClient?: string; perSenderDomain?: string; perDomain?: string };
  clientChecks?: { rejectHeloOurName?: boolean; rejectInvalidHelo?: boolean; reverseDns?: "off" | "tempfail" | "reject" };
  /** Names of the RelaySites that serve this domain; absent means all of them. Operator only. */
  sites?: string[];
}

/** What one site reports for this domain. */
export interface DomainSiteStatus {
  name: string;
  /** metadata.generation of this RelayDomain that the site's relays have loaded. */
  appliedGeneration?: number;
  readyRelays: number;
  queuedMessages?: number;
  oldestQueuedSeconds?: number;
}

export interface RelayDomainStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  sites?: DomainSiteStatus[];
  /** "ready/total" sites, for the printer column. */
  sitesReady?: string;
  queuedMessages?: number;
}

export interface RelayDomain {
  apiVersion: typeof API_VERSION;
  kind: "RelayDomain";
  metadata: ObjectMeta;
  spec: RelayDomainSpec;
  status?: RelayDomainStatus;
}

/** Fields of the spec the relay does not read; stripped from the document relays load. */
export const OPERATOR_ONLY_SPEC_FIELDS = ["sites"] as const;
/** Default time queued mail of a deleted domain still gets before it is bounced. */
export const DEFAULT_DELETION_GRACE = "1d";

const rate = (what: string): Schema => string(`At most N recipients per window ${what}, such as "100/1m" (windows of 1s to 1d)`, { pattern: "^[0-9]{1,9}/([0-9]+(ms|s|m|h|d))+$" });
const onError = (what: string): Schema => oneOf(`${what} cannot answer: tempfail (451, fail closed) or accept (fail open)`, ["tempfail", "accept"], "tempfail");
const zoneList = (description: string): Schema => array(description, hostname("A DNS zone"), { maxItems: 32 });

export const relayDomainSpecSchema: Schema = object("Desired backup MX service for one mail domain", {
  domain: hostname("The mail domain (IDN allowed); immutable"),
  primary: object("Where accepted mail goes", {
    hosts: array("Explicit next hops tried in order; empty means the domain's MX records ranked above our sites", object("A next hop", {
      host: string("Host name or IP address", { minLength: 1, maxLength: 253, pattern: "^[^\\s/]+$" }),
      port: port("SMTP port", 25),
    }, { required: ["host"] }), { maxItems: 16 }),
    tls: object("Outbound TLS to the primary", {
      mode: oneOf("opportunistic: STARTTLS when offered; required: defer (4.7.5) rather than send in clear", ["opportunistic", "required"], "opportunistic"),
      verifyCertificate: boolean("Check the primary's certificate and name (default: true when mode is required)"),
    }),
  }),
  recipients: object("Recipient validation: the defence against backscatter", {
    mode: oneOf("any: accept every local part; list: only the listed ones; verify: ask the primary (RCPT TO callout, cached)", ["any", "list", "verify"], "any"),
    list: array("Accepted local parts or addresses (mode list)", string("local part or address in the domain", { minLength: 1, maxLength: 320 }), { maxItems: 100000 }),
    verify: object("Callout settings (mode verify)", {
      positiveTtl: duration("How long an existing recipient is remembered"),
      negativeTtl: duration("How long an unknown recipient is remembered"),
      whenUnavailable: oneOf("No cached answer and the primary cannot answer: tempfail or accept", ["tempfail", "accept"], "tempfail"),
    }),
  }, {
    "x-kubernetes-validations": [
      { rule: "self.mode == 'list' ? has(self.list) && size(self.list) > 0 : !has(self.list)", message: "list is required with mode list and only valid with it", fieldPath: ".list" },
      { rule: "!has(self.verify) || self.mode == 'verify'", message: "verify is only valid with mode verify", fieldPath: ".verify" },
    ],
  }),
  maxMessageSize: byteSize("Largest message accepted (SIZE), from 1Ki to 200Mi; default 50Mi"),
  queue: object("How long and how often delivery is retried", {
    lifetime: duration("Time after which undeliverable mail is bounced (at most 30d; default 5d)"),
    retry: object("Exponential backoff between attempts", {
      initialBackoff: duration("First retry delay (default 1m)"),
      maxBackoff: duration("Longest retry delay (default 1h)"),
    }),
    deletionGracePeriod: duration("After the RelayDomain is deleted, queued mail is still delivered for this long, then bounced (default 1d)"),
  }),
  antivirus: object("clamd scanning of this domain's mail (relays started with --clamd)", {
    enabled: boolean("Scan messages (default true)"),
    onError: onError("clamd"),
    maxScanSize: byteSize("Messages above this are not scanned (default 25Mi)"),
    onOversize: oneOf("What happens to a message above maxScanSize", ["accept", "tempfail", "reject"], "accept"),
  }),
  antispam: object("rspamd scoring (relays started with --rspamd)", {
    enabled: boolean("Score messages (default true)"),
    onError: onError("rspamd"),
    rejectScore: number("Reject at or above this score instead of at rspamd's reject action", { minimum: -1000, maximum: 1000 }),
    addHeaderScore: number("Mark as spam at or above this score instead of at rspamd's add header action", { minimum: -1000, maximum: 1000 }),
  }, {
    "x-kubernetes-validations": [
      { rule: "!has(self.rejectScore) || !has(self.addHeaderScore) || self.addHeaderScore <= self.rejectScore", message: "addHeaderScore must not be above rejectScore", fieldPath: ".addHeaderScore" },
    ],
  }),
  greylisting: object("Temp-fail the first attempt of an unknown (client network, sender, recipient)", {
    enabled: boolean("Greylist (default false)"),
    delay: duration("Minimum wait before a retry passes (default 5m)"),
    expiry: duration("How long a first attempt is remembered (default 2d; longer than delay)"),
    autoAllow: duration("After a passed retry, the client network and sender domain pass for this long (default 35d)"),
    allowClients: array("Client networks never greylisted (CIDR)", string("Address or CIDR", { maxLength: 64 }), { maxItems: 1000 }),
    allowSenderDomains: array("Sender domains never greylisted", hostname("A domain"), { maxItems: 1000 }),
  }),
  dnsbl: object("DNS block and allow lists asked about the client address", {
    zones: zoneList("Block list zones: a listed client is refused (554 5.7.1)"),
    allowZones: zoneList("Allow list zones: a listed client skips the block lists"),
    onError: oneOf("A list cannot be asked: accept or tempfail", ["accept", "tempfail"], "accept"),
  }),
  authentication: object("SPF, DKIM, DMARC and ARC", {
    enabled: boolean("Check and record Authentication-Results (default true)"),
    rejectDmarcReject: boolean("Refuse DMARC failures of domains publishing p=reject (default true)"),
    rejectSpfFail: boolean("Refuse SPF -all failures (default false: forwarding breaks SPF)"),
  }),
  rateLimits: object("Recipients accepted per window, counted by all relays together", {
    perClient: rate("per client address"),
    perSenderDomain: rate("per sender domain"),
    perDomain: rate("for the whole domain"),
  }),
  clientChecks: object("HELO and reverse DNS checks", {
    rejectHeloOurName: boolean("Refuse HELO with the relay's own name (default true)"),
    rejectInvalidHelo: boolean("Refuse HELO that is neither a FQDN nor an address literal (default false)"),
    reverseDns: oneOf("Forward-confirmed reverse DNS required: off, tempfail or reject", ["off", "tempfail", "reject"], "off"),
  }),
  sites: array("RelaySites serving this domain; absent means every site", string("RelaySite name", { maxLength: 63 }), { maxItems: 16, "x-kubernetes-list-type": "set" }),
}, {
  required: ["domain"],
  "x-kubernetes-validations": [
    { rule: "self.domain == oldSelf.domain", message: "domain is immutable; create a new RelayDomain", fieldPath: ".domain" },
  ],
});

export const relayDomainStatusSchema: Schema = object("Observed state, written by the operator", {
  observedGeneration: integer("metadata.generation the status reflects", { minimum: 0 }),
  conditions: conditions(),
  sitesReady: string("Ready sites out of the sites serving this domain"),
  queuedMessages: integer("Messages queued for this domain across all sites", { minimum: 0 }),
  sites: array("Per-site figures", object("One site", {
    name: string("RelaySite name"),
    appliedGeneration: integer("Generation of this RelayDomain the site's relays have loaded", { minimum: 0 }),
    readyRelays: integer("Relay pods ready at the site", { minimum: 0 }),
    queuedMessages: integer("Messages queued for this domain at the site", { minimum: 0 }),
    oldestQueuedSeconds: integer("Age of the oldest queued message at the site", { minimum: 0 }),
  }, { required: ["name", "readyRelays"] }), { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
});
