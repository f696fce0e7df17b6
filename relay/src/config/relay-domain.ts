// The RelayDomain resource as the relay reads it: the same YAML a user `kubectl apply`s.
// parseRelayDomain checks one untrusted document against the shared schema (#api, the one the CRD
// is generated from, defaults included) and turns it into a DomainPolicy in the relay's units, or
// throws a ConfigError that names the offending field path.

import {
  API_VERSION,
  ConfigError,
  isObject,
  normaliseDomain,
  OPERATOR_ONLY_SPEC_FIELDS,
  withAllDefaults,
  parseByteSize,
  parseCidr,
  parseDuration,
  relayDomainSpecSchema,
  validate,
  type RelayDomainSpec,
} from "#api";

export { ConfigError };
export const KIND = "RelayDomain";

export type RecipientMode = "any" | "list" | "verify";
export type OutboundTlsMode = "opportunistic" | "required";

export interface PrimaryHost {
  host: string;
  port: number;
}

/** Validated and defaulted settings for one relayed domain. */
export interface DomainPolicy {
  /** metadata.name of the resource, for logs. */
  name: string;
  /** metadata.generation of the resource (0 when absent), reported back to the operator. */
  generation: number;
  /** The mail domain in lower-case ASCII (IDNA A-label) form. */
  domain: string;
  /** Explicit next hops, tried in order; empty means "the domain's MX records ranked above us". */
  primaryHosts: PrimaryHost[];
  outboundTls: { mode: OutboundTlsMode; verifyCertificate: boolean };
  recipients: { mode: RecipientMode; localParts: Set<string>; verify: RecipientVerifyPolicy };
  maxMessageBytes: number;
  queueLifetimeMs: number;
  /** spec.queue.delayWarning: one delayed DSN to the sender when a message is still queued this long after acceptance; undefined is off. */
  delayWarningMs?: number | undefined;
  /**
   * Set while the RelayDomain is being deleted (metadata.deletionTimestamp, copied by the
   * operator): new mail is refused at once, queued mail is still delivered until bounceAtMs.
   */
  retiring?: { sinceMs: number; bounceAtMs: number } | undefined;
  retry: { initialBackoffMs: number; maxBackoffMs: number };
  /** spec.hold: nothing is delivered before this time (deliver/maintenance-hold.ts caps it per message). */
  hold?: { untilMs: number } | undefined;
  /** spec.acceptWhen: primaryDown is monitoring mode, mail is refused for now while the primary answers probes. */
  acceptWhen: "always" | "primaryDown";
  access: AccessPolicy;
  antivirus: AntivirusPolicy;
  antispam: AntispamPolicy;
  greylisting: GreylistPolicy;
  dnsbl: DnsListPolicy;
  authentication: SenderAuthPolicy;
  rateLimits: RateLimitPolicy;
  clientChecks: ClientCheckPolicy;
}

/** One list of spec.access, normalised for matching. */
export interface AccessList {
  /** Client networks as "address/bits". */
  clients: string[];
  /** Envelope senders in lower case, with A-label domains. */
  senders: string[];
  /** Envelope sender domains (A-labels); each also covers its subdomains. */
  senderDomains: string[];
}

/** spec.access: who is refused at RCPT (block) and who skips the verdicts the allow list covers (allow). */
export interface AccessPolicy {
  allow: AccessList;
  block: AccessList;
}

/** spec.clientChecks: what the client says about itself (HELO) and what DNS says about it. */
export interface ClientCheckPolicy {
  /** HELO/EHLO with this relay's own name or address: a forgery, 550 5.7.1. */
  rejectHeloOurName: boolean;
  /** HELO/EHLO that is neither a fully qualified host name nor an address literal. */
  rejectInvalidHelo: boolean;
  /** No forward-confirmed reverse DNS (PTR whose name resolves back to the client): off, tempfail or reject. */
  reverseDns: "disabled" | "tempfail" | "reject";
}

/** At most `count` recipients per `windowMs`. */
export interface RateLimit {
  count: number;
  windowMs: number;
}

/** spec.rateLimits: recipients accepted per window, counted by every relay together (NATS KV). */
export interface RateLimitPolicy {
  perClient?: RateLimit | undefined;
  perSenderDomain?: RateLimit | undefined;
  /** For the whole domain, whoever sends. */
  perDomain?: RateLimit | undefined;
}

/** spec.authentication: SPF, DKIM, DMARC and ARC checks and what refuses a message. */
export interface SenderAuthPolicy {
  enabled: boolean;
  /** Refuse when DMARC fails and the From domain publishes p=reject (not in test mode). */
  rejectDmarcReject: boolean;
  /** Refuse when SPF fails (-all); off by default because forwarding breaks SPF. */
  rejectSpfFail: boolean;
}

/** spec.dnsbl: DNS lists asked about the client address (through the relay's --resolver). */
export interface DnsListPolicy {
  /** Block lists: a listed client is refused with 554 5.7.1. */
  zones: string[];
  /** Allow lists: a client listed here skips the block lists. */
  allowZones: string[];
  /** A block list cannot be asked (timeout, SERVFAIL): accept (fail open) or temp-fail. */
  onError: "accept" | "tempfail";
}

/** spec.recipients.verify: callouts to the primary (RCPT TO) and how long their answers count. */
export interface RecipientVerifyPolicy {
  /** How long "this recipient exists" is believed. */
  positiveTtlMs: number;
  /** How long "no such recipient" is believed. */
  negativeTtlMs: number;
  /** No cached answer and the primary cannot answer: refuse for now, or accept (and risk a bounce). */
  whenUnavailable: "tempfail" | "accept";
}

/** spec.greylisting: temp-fail the first attempt of an unknown (client network, sender, recipient). */
export interface GreylistPolicy {
  enabled: boolean;
  /** How long a sender must wait before its retry is accepted. */
  delayMs: number;
  /** How long a first attempt is remembered while waiting for the retry. */
  expiryMs: number;
  /** After a successful retry, the client network and sender domain pass for this long. */
  autoAllowMs: number;
  /** Client networks never greylisted, as CIDRs. */
  allowClients: string[];
  /** Sender domains never greylisted. */
  allowSenderDomains: string[];
}

/** spec.antispam: how rspamd's verdict (--rspamd) is applied to this domain's mail. */
export interface AntispamPolicy {
  enabled: boolean;
  /** rspamd unreachable or failing: refuse for now (fail closed) or accept unscored. */
  onError: "tempfail" | "accept";
  /** Reject at or above this score instead of at rspamd's "reject" action. */
  rejectScore?: number | undefined;
  /** Mark as spam (X-Spam-Status: Yes) at or above this score instead of rspamd's "add header" action. */
  addHeaderScore?: number | undefined;
}

/** spec.antivirus: how the relay's clamd scan (--clamd) treats this domain's mail. */
export interface AntivirusPolicy {
  enabled: boolean;
  /** clamd unreachable, timing out or failing: refuse for now (fail closed) or let the message in. */
  onError: "tempfail" | "accept";
  /** Messages above this are not scanned; onOversize says what happens to them. */
  maxScanBytes: number;
  onOversize: "accept" | "tempfail" | "reject";
}

/** The defaults a relay falls back on where it has no domain policy (bounces, start-up). */
export const DEFAULTS = {
  initialBackoffMs: 60_000,
  maxBackoffMs: 3_600_000,
} as const;

type Spec = Required<RelayDomainSpec>;
type Section<K extends keyof Spec> = Required<NonNullable<Spec[K]>>;

/** Milliseconds of a duration the schema already checked. */
const ms = (text: string): number => parseDuration(text) as number;
/** Bytes of a size the schema already checked. */
const bytes = (value: string | number): number => parseByteSize(value) as number;
/** Lower-case A-label form of a name the schema already checked. */
const domainName = (text: string): string => normaliseDomain(text) as string;

function parseRate(value: string | undefined): RateLimit | undefined {
  if (value === undefined) return undefined;
  const [count = "", window = ""] = value.split("/");
  return { count: Number(count), windowMs: ms(window) };
}

/** Validate one RelayDomain document and fill in defaults. */
export function parseRelayDomain(doc: unknown): DomainPolicy {
  if (!isObject(doc)) throw new ConfigError("(document)", "must be a YAML mapping");
  if (doc.apiVersion !== API_VERSION) throw new ConfigError("apiVersion", `must be ${API_VERSION}`);
  if (doc.kind !== KIND) throw new ConfigError("kind", `must be ${KIND}`);
  const metadata = doc.metadata;
  if (metadata === undefined || metadata === null) throw new ConfigError("metadata", "is required");
  if (!isObject(metadata)) throw new ConfigError("metadata", "must be an object");
  const name = metadata.name;
  if (typeof name !== "string" || name.length === 0) throw new ConfigError("metadata.name", "is required");
  if (doc.spec === undefined || doc.spec === null) throw new ConfigError("spec", "is required");
  const valid = validate(relayDomainSpecSchema, withoutOperatorFields(doc.spec), "spec");
  const spec = withAllDefaults(relayDomainSpecSchema, valid) as Spec;

  const primary = spec.primary;
  const tlsMode = primary.tls?.mode ?? "opportunistic";
  const queue = spec.queue as Section<"queue">;
  const retry = queue.retry as NonNullable<Section<"queue">["retry"]>;
  const initialBackoffMs = ms(retry.initialBackoff as string);
  const deletionGraceMs = ms(queue.deletionGracePeriod);
  const generation = typeof metadata.generation === "number" && Number.isSafeInteger(metadata.generation) ? metadata.generation : 0;
  const domain = domainName(spec.domain);
  return {
    name,
    generation,
    domain,
    primaryHosts: (primary.hosts ?? []).map((hop) => ({ host: hop.host.toLowerCase(), port: hop.port ?? 25 })),
    outboundTls: { mode: tlsMode, verifyCertificate: primary.tls?.verifyCertificate ?? tlsMode === "required" },
    recipients: parseRecipients(spec.recipients as Section<"recipients">),
    maxMessageBytes: bytes(spec.maxMessageSize as string | number),
    queueLifetimeMs: ms(queue.lifetime),
    delayWarningMs: queue.delayWarning === undefined ? undefined : ms(queue.delayWarning),
    retiring: parseRetiring(metadata.deletionTimestamp, deletionGraceMs),
    retry: { initialBackoffMs, maxBackoffMs: retry.maxBackoff === undefined ? Math.max(DEFAULTS.maxBackoffMs, initialBackoffMs) : ms(retry.maxBackoff) },
    hold: parseHold(spec.hold),
    acceptWhen: spec.acceptWhen,
    access: { allow: parseAccessList(spec.access.allow), block: parseAccessList(spec.access.block) },
    antivirus: parseAntivirus(spec.antivirus as Section<"antivirus">),
    antispam: parseAntispam(spec.antispam as Section<"antispam">),
    greylisting: parseGreylisting(spec.greylisting as Section<"greylisting">),
    dnsbl: parseDnsLists(spec.dnsbl as Section<"dnsbl">),
    authentication: spec.authentication as Section<"authentication">,
    rateLimits: parseRateLimits(spec.rateLimits),
    clientChecks: spec.clientChecks as Section<"clientChecks">,
  };
}

/** The operator strips its own fields (`sites`) from what relays load; a hand-written file may still carry them. */
function withoutOperatorFields(spec: unknown): unknown {
  if (!isObject(spec)) return spec;
  const rest = { ...spec };
  for (const field of OPERATOR_ONLY_SPEC_FIELDS) delete rest[field];
  return rest;
}

function parseRecipients(recipients: Section<"recipients">): DomainPolicy["recipients"] {
  const verify = recipients.verify as Required<NonNullable<Section<"recipients">["verify"]>>;
  const localParts = new Set<string>();
  for (const entry of recipients.mode === "list" ? (recipients.list ?? []) : []) {
    const atSign = entry.lastIndexOf("@");
    localParts.add((atSign === -1 ? entry : entry.slice(0, atSign)).toLowerCase());
  }
  return {
    mode: recipients.mode,
    localParts,
    verify: {
      positiveTtlMs: ms(verify.positiveTtl),
      negativeTtlMs: ms(verify.negativeTtl),
      whenUnavailable: verify.whenUnavailable,
    },
  };
}

function parseRetiring(deletionTimestamp: unknown, graceMs: number): DomainPolicy["retiring"] {
  if (deletionTimestamp === undefined || deletionTimestamp === null) return undefined;
  const sinceMs = typeof deletionTimestamp === "string" ? Date.parse(deletionTimestamp) : Number.NaN;
  if (Number.isNaN(sinceMs)) throw new ConfigError("metadata.deletionTimestamp", "must be an RFC 3339 time");
  return { sinceMs, bounceAtMs: sinceMs + graceMs };
}

function parseRateLimits(limits: NonNullable<RelayDomainSpec["rateLimits"]>): RateLimitPolicy {
  return { perClient: parseRate(limits.perClient), perSenderDomain: parseRate(limits.perSenderDomain), perDomain: parseRate(limits.perDomain) };
}

function parseDnsLists(lists: Section<"dnsbl">): DnsListPolicy {
  return { zones: (lists.zones ?? []).map(domainName), allowZones: (lists.allowZones ?? []).map(domainName), onError: lists.onError };
}

function parseGreylisting(grey: Section<"greylisting">): GreylistPolicy {
  return {
    enabled: grey.enabled,
    delayMs: ms(grey.delay),
    expiryMs: ms(grey.expiry),
    autoAllowMs: ms(grey.autoAllow),
    allowClients: (grey.allowClients ?? []).map((cidr) => parseCidr(cidr) as string),
    allowSenderDomains: (grey.allowSenderDomains ?? []).map(domainName),
  };
}

/** withAllDefaults gives an absent hold as an empty object, without `until`. */
function parseHold(hold: Partial<Section<"hold">>): DomainPolicy["hold"] {
  return hold.until === undefined ? undefined : { untilMs: Date.parse(hold.until) };
}

function parseAccessList(list: NonNullable<Section<"access">["allow"]> | undefined): AccessList {
  return {
    clients: (list?.clients ?? []).map((cidr) => parseCidr(cidr) as string),
    senders: (list?.senders ?? []).map(senderAddress),
    senderDomains: (list?.senderDomains ?? []).map(domainName),
  };
}

/** An envelope sender as access lists compare it: lower case, with an A-label domain; "" (which no entry matches) for the null sender or a malformed one. */
export function senderAddress(address: string): string {
  const at = address.lastIndexOf("@");
  const domain = normaliseDomain(address.slice(at + 1));
  return at > 0 && domain !== undefined ? `${address.slice(0, at).toLowerCase()}@${domain}` : "";
}

function parseAntispam(antispam: Section<"antispam">): AntispamPolicy {
  return { enabled: antispam.enabled, onError: antispam.onError, rejectScore: antispam.rejectScore, addHeaderScore: antispam.addHeaderScore };
}

function parseAntivirus(antivirus: Section<"antivirus">): AntivirusPolicy {
  return { enabled: antivirus.enabled, onError: antivirus.onError, maxScanBytes: bytes(antivirus.maxScanSize), onOversize: antivirus.onOversize };
}
