// RelayDomain (namespaced): one per mail domain a platform team wants a backup MX for. This file is
// the one definition of its spec: the TypeScript type, the CRD schema (crds.ts) and the relay's
// validation (validate.ts, used by relay/src/config/relay-domain.ts) all come from it. The filters'
// sections live in filter-policies.ts, one per filter.

import { Type, type Static } from "@sinclair/typebox";
import type { Condition } from "./conditions.ts";
import {
  acceptWhenPolicy,
  accessPolicy,
  antispamPolicy,
  antivirusPolicy,
  authenticationPolicy,
  clientChecksPolicy,
  dnsblPolicy,
  greylistingPolicy,
  rateLimitsPolicy,
} from "./filter-policies.ts";
import { MAX_MESSAGE_BYTES_LIMIT, MAX_QUEUE_LIFETIME_MS } from "./limits.ts";
import { parseDuration } from "./quantities.ts";
import { array, boolean, byteSize, celDurationMs, conditions, duration, hostname, integer, object, oneOf, port, rule, string } from "./schema.ts";

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

/** Default spec.queue.lifetime. */
export const DEFAULT_QUEUE_LIFETIME = "5d";
/** Default time queued mail of a deleted domain still gets before it is bounced. */
export const DEFAULT_DELETION_GRACE = "1d";

const { Optional } = Type;
const ms = (text: string): number => parseDuration(text) ?? Number.NaN;

const primarySchema = object("Where accepted mail goes", {
  hosts: Optional(
    array(
      "Explicit next hops tried in order; empty means the domain's MX records ranked above our sites",
      object("A next hop", {
        host: string("Host name or IP address", { minLength: 1, maxLength: 253, pattern: "^[^\\s/]+$", message: "must be a host name or IP address" }),
        port: Optional(port("SMTP port", 25)),
      }),
      { maxItems: 16 },
    ),
  ),
  tls: Optional(
    object("Outbound TLS to the primary", {
      mode: Optional(
        oneOf("opportunistic: STARTTLS when offered; required: defer (4.7.5) rather than send in clear", ["opportunistic", "required"], "opportunistic"),
      ),
      verifyCertificate: Optional(boolean("Check the primary's certificate and name (default: true when mode is required)")),
    }),
  ),
});

export const recipientsPolicy = object(
  "Recipient validation: the defence against backscatter",
  {
    mode: Optional(
      oneOf("any: accept every local part; list: only the listed ones; verify: ask the primary (RCPT TO callout, cached)", ["any", "list", "verify"], "any"),
    ),
    // A pattern rather than CEL: the CRD's CEL budget counts every rule once per possible entry.
    list: Optional(
      array(
        "Accepted local parts or addresses (mode list), at most 10,000; use mode verify for more",
        string("local part (1 to 64 characters) or address in the domain", {
          maxLength: 320,
          pattern: "^([^@]{1,64}|.{1,64}@[^@]*)$",
          message: "must be a local part of 1-64 characters, or an address with one",
        }),
        { maxItems: 10000 },
      ),
    ),
    verify: Optional(
      object("Callout settings (mode verify)", {
        positiveTtl: Optional(duration("How long an existing recipient is remembered", { default: "1d" })),
        negativeTtl: Optional(duration("How long an unknown recipient is remembered", { default: "1h" })),
        whenUnavailable: Optional(oneOf("No cached answer and the primary cannot answer: tempfail or accept", ["tempfail", "accept"], "tempfail")),
      }),
    ),
  },
  [
    rule<{ mode: string; list?: string[] }>(
      "self.mode != 'list' || (has(self.list) && size(self.list) > 0)",
      "must be a non-empty list when mode is list",
      (self) => self.mode !== "list" || (self.list?.length ?? 0) > 0,
      ".list",
    ),
    rule<{ mode: string; list?: string[] }>(
      "self.mode == 'list' || !has(self.list)",
      "is only valid with mode: list",
      (self) => self.mode === "list" || self.list === undefined,
      ".list",
    ),
    rule<{ mode: string; verify?: object }>(
      "!has(self.verify) || self.mode == 'verify'",
      "is only valid with mode: verify",
      (self) => self.verify === undefined || self.mode === "verify",
      ".verify",
    ),
  ],
);

const queueSchema = object(
  "How long and how often delivery is retried",
  {
    lifetime: Optional(
      duration("Time after which undeliverable mail is bounced (at most 30d)", { default: DEFAULT_QUEUE_LIFETIME, maxMs: MAX_QUEUE_LIFETIME_MS }),
    ),
    delayWarning: Optional(
      duration(
        "Tell the sender once, with an RFC 3464 delayed DSN, when a message is still queued this long after it was accepted (Postfix's delay_warning_time); absent means never. Shorter than lifetime",
      ),
    ),
    retry: Optional(
      object(
        "Exponential backoff between attempts",
        {
          initialBackoff: Optional(duration("First retry delay", { default: "1m" })),
          maxBackoff: Optional(duration("Longest retry delay (default 1h, or initialBackoff when that is longer)")),
        },
        [
          rule<{ initialBackoff: string; maxBackoff?: string }>(
            `!has(self.maxBackoff) || ${celDurationMs("self.maxBackoff")} >= ${celDurationMs("self.initialBackoff")}`,
            "must not be shorter than initialBackoff",
            (self) => self.maxBackoff === undefined || ms(self.maxBackoff) >= ms(self.initialBackoff),
            ".maxBackoff",
          ),
        ],
      ),
    ),
    deletionGracePeriod: Optional(
      duration("After the RelayDomain is deleted, queued mail is still delivered for this long, then bounced", {
        default: DEFAULT_DELETION_GRACE,
        maxMs: MAX_QUEUE_LIFETIME_MS,
      }),
    ),
  },
  [
    rule<{ lifetime: string; delayWarning?: string }>(
      `!has(self.delayWarning) || ${celDurationMs("self.delayWarning")} < ${celDurationMs("self.lifetime")}`,
      "must be shorter than lifetime",
      (self) => self.delayWarning === undefined || ms(self.delayWarning) < ms(self.lifetime),
      ".delayWarning",
    ),
  ],
);

// RFC 3339 as the relay and the API server both read it: a full date and time with a zone. The
// seconds stop at 59 (Date.parse has no leap second), and month and day ranges are checked here.
const RFC3339_PATTERN =
  "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

const holdSchema = object("Maintenance hold: mail is accepted and queued as usual, but nothing is delivered before `until` or until the hold is removed", {
  until: string("End of the hold, an RFC 3339 time such as 2026-12-24T06:00:00Z; a message is never held past four fifths of its queue lifetime", {
    pattern: RFC3339_PATTERN,
    maxLength: 40,
    message: "must be an RFC 3339 time such as 2026-12-24T06:00:00Z",
  }),
});

export const relayDomainSpecSchema = object(
  "Desired backup MX service for one mail domain",
  {
    domain: hostname("The mail domain (IDN allowed); immutable", "is not a valid mail domain"),
    primary: Optional(primarySchema),
    recipients: Optional(recipientsPolicy),
    maxMessageSize: Optional(
      byteSize("Largest message accepted (SIZE), from 1Ki to 200Mi", {
        default: "50Mi",
        min: 1024,
        max: MAX_MESSAGE_BYTES_LIMIT,
        message: `must be a size from 1Ki to 200Mi such as "25Mi"`,
      }),
    ),
    queue: Optional(queueSchema),
    hold: Optional(holdSchema),
    acceptWhen: Optional(acceptWhenPolicy),
    access: Optional(accessPolicy),
    antivirus: Optional(antivirusPolicy),
    antispam: Optional(antispamPolicy),
    greylisting: Optional(greylistingPolicy),
    dnsbl: Optional(dnsblPolicy),
    authentication: Optional(authenticationPolicy),
    rateLimits: Optional(rateLimitsPolicy),
    clientChecks: Optional(clientChecksPolicy),
    sites: Optional(
      array("RelaySites serving this domain; absent means every site", string("RelaySite name", { maxLength: 63 }), { maxItems: 16, listType: "set" }),
    ),
  },
  [
    // Only the API server sees the old object; the relay reads one generation at a time.
    { rule: "self.domain == oldSelf.domain", message: "domain is immutable; create a new RelayDomain", fieldPath: ".domain", holds: () => true },
    rule<{ domain: string; recipients?: { list?: string[] } }>(
      "!has(self.recipients) || !has(self.recipients.list) || self.recipients.list.all(e, !e.contains('@') || e.lowerAscii().endsWith('@' + self.domain.lowerAscii()))",
      "addresses must be in spec.domain, written as it is written there",
      (self) => (self.recipients?.list ?? []).every((e) => !e.includes("@") || lowerAscii(e).endsWith(`@${lowerAscii(self.domain)}`)),
      ".recipients.list",
    ),
  ],
);

// CEL's lowerAscii, so that relay and API server compare IDN addresses the same way.
function lowerAscii(text: string): string {
  return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

export type RelayDomainSpec = Static<typeof relayDomainSpecSchema>;

export const relayDomainStatusSchema = object("Observed state, written by the operator", {
  observedGeneration: Optional(integer("metadata.generation the status reflects", { minimum: 0 })),
  conditions: Optional(conditions()),
  sitesReady: Optional(string("Ready sites out of the sites serving this domain")),
  hold: Optional(
    object("The maintenance hold as the relays apply it (spec.hold), while it lasts", {
      until: string("spec.hold.until, in UTC"),
      maxHold: string("The longest any one message is held: four fifths of spec.queue.lifetime, counted from when the message is accepted"),
      capped: boolean("until is more than maxHold away: mail accepted now is released maxHold after it arrived, before until"),
    }),
  ),
  queuedMessages: Optional(integer("Messages queued for this domain across all sites", { minimum: 0 })),
  sites: Optional(
    array(
      "Per-site figures",
      object("One site", {
        name: string("RelaySite name"),
        appliedGeneration: Optional(integer("Generation of this RelayDomain the site's relays have loaded", { minimum: 0 })),
        readyRelays: integer("Relay pods ready at the site", { minimum: 0 }),
        queuedMessages: Optional(integer("Messages queued for this domain at the site", { minimum: 0 })),
        oldestQueuedSeconds: Optional(integer("Age of the oldest queued message at the site", { minimum: 0 })),
      }),
      { listType: "map", listMapKeys: ["name"] },
    ),
  ),
});

/** What one site reports for this domain. */
export type DomainSiteStatus = NonNullable<RelayDomainStatus["sites"]>[number];
export type RelayDomainStatus = Omit<Static<typeof relayDomainStatusSchema>, "conditions"> & { conditions?: Condition[] };

export interface RelayDomain {
  apiVersion: typeof API_VERSION;
  kind: "RelayDomain";
  metadata: ObjectMeta;
  spec: RelayDomainSpec;
  status?: RelayDomainStatus;
}

/** Fields of the spec the relay does not read; stripped from the document relays load. */
export const OPERATOR_ONLY_SPEC_FIELDS = ["sites"] as const;
