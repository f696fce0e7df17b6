// The RelayDomain resource as the relay reads it: the same YAML a user `kubectl apply`s.
// parseRelayDomain turns one untrusted document into a validated, defaulted DomainPolicy, or
// throws a ConfigError that names the offending field path.

import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import { parseByteSize, parseDuration } from "./quantities.ts";

export const API_VERSION = "mxwarden.io/v1alpha1";
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
  /**
   * Set while the RelayDomain is being deleted (metadata.deletionTimestamp, copied by the
   * operator): new mail is refused at once, queued mail is still delivered until bounceAtMs.
   */
  retiring?: { sinceMs: number; bounceAtMs: number } | undefined;
  retry: { initialBackoffMs: number; maxBackoffMs: number };
  antivirus: AntivirusPolicy;
  antispam: AntispamPolicy;
  greylisting: GreylistPolicy;
  dnsbl: DnsListPolicy;
  authentication: SenderAuthPolicy;
  rateLimits: RateLimitPolicy;
  clientChecks: ClientCheckPolicy;
}

/** spec.clientChecks: what the client says about itself (HELO) and what DNS says about it. */
export interface ClientCheckPolicy {
  /** HELO/EHLO with this relay's own name or address: a forgery, 550 5.7.1. */
  rejectHeloOurName: boolean;
  /** HELO/EHLO that is neither a fully qualified host name nor an address literal. */
  rejectInvalidHelo: boolean;
  /** No forward-confirmed reverse DNS (PTR whose name resolves back to the client): off, tempfail or reject. */
  reverseDns: "off" | "tempfail" | "reject";
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

export const DEFAULTS = {
  port: 25,
  maxMessageBytes: 50 * 1024 * 1024,
  queueLifetimeMs: 5 * 86_400_000,
  initialBackoffMs: 60_000,
  maxBackoffMs: 3_600_000,
  /** Debian's clamd default StreamMaxLength. */
  maxScanBytes: 25 * 1024 * 1024,
  /** Postgrey's defaults: a 5 minute delay, first attempts kept 2 days, auto-allow for 35 days. */
  greylistDelayMs: 300_000,
  greylistExpiryMs: 2 * 86_400_000,
  greylistAutoAllowMs: 35 * 86_400_000,
  verifyPositiveTtlMs: 86_400_000,
  verifyNegativeTtlMs: 3_600_000,
  deletionGraceMs: 86_400_000,
} as const;

/** Upper bound of spec.maxMessageSize; the queue and scanners are sized for it. */
export const MAX_MESSAGE_BYTES_LIMIT = 200 * 1024 * 1024;
/** Upper bound of spec.queue.lifetime (RFC 5321 suggests 4-5 days; services offer up to 30). */
export const MAX_QUEUE_LIFETIME_MS = 30 * 86_400_000;

export class ConfigError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "ConfigError";
    this.path = path;
  }
}

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function objectAt(parent: Obj, key: string, path: string, required = false): Obj | undefined {
  const value = parent[key];
  const at = path ? `${path}.${key}` : key;
  if (value === undefined || value === null) {
    if (required) throw new ConfigError(at, "is required");
    return undefined;
  }
  if (!isObject(value)) throw new ConfigError(at, "must be an object");
  return value;
}

function rejectUnknownKeys(value: Obj, allowed: readonly string[], path: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new ConfigError(`${path}.${key}`, "is not a known field");
  }
}

const labelPattern = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Lower-case A-label form of a mail domain, or undefined if it is not a valid host name. */
export function normaliseDomain(input: string): string | undefined {
  if (input.length === 0 || input.length > 253 || input.endsWith(".")) return undefined;
  const labels = input.split(".");
  if (labels.length < 2) return undefined;
  const ascii: string[] = [];
  for (const label of labels) {
    // domainToASCII would percent-decode ("exa%6dple" becomes "example") and map other
    // punctuation: only letters, digits, hyphens and non-ASCII letters may reach it.
    if (!/^[A-Za-z0-9\u0080-\uffff-]+$/.test(label)) return undefined;
    // Convert label by label: whole-name IDNA mapping would turn look-alike dots (U+3002 and
    // friends) into real ones, letting "user@example\u3002com" pass as example.com.
    const converted = domainToASCII(label).toLowerCase();
    if (!labelPattern.test(converted)) return undefined;
    ascii.push(converted);
  }
  return ascii.join(".");
}

/** A byte size such as "25Mi" from 1 KiB up to the message size limit. */
function parseSizeField(value: unknown, path: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = typeof value === "number" || typeof value === "string" ? parseByteSize(value) : undefined;
  if (parsed === undefined || parsed < 1024 || parsed > MAX_MESSAGE_BYTES_LIMIT) {
    throw new ConfigError(path, `must be a size from 1Ki to 200Mi such as "25Mi"`);
  }
  return parsed;
}

function parseDurationField(value: unknown, path: string, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = typeof value === "string" ? parseDuration(value) : undefined;
  if (ms === undefined || ms <= 0) throw new ConfigError(path, `must be a duration such as "90s", "1h" or "5d", got ${JSON.stringify(value)}`);
  return ms;
}

function parseHosts(primary: Obj | undefined, path: string): PrimaryHost[] {
  const raw = primary?.hosts;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new ConfigError(`${path}.hosts`, "must be a list");
  return raw.map((entry: unknown, index) => {
    const at = `${path}.hosts[${index}]`;
    if (!isObject(entry)) throw new ConfigError(at, "must be an object with host and port");
    rejectUnknownKeys(entry, ["host", "port"], at);
    const host = entry.host;
    if (typeof host !== "string" || host.length === 0 || host.length > 253 || /[\s/]/.test(host)) {
      throw new ConfigError(`${at}.host`, "must be a host name or IP address");
    }
    const port = entry.port ?? DEFAULTS.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ConfigError(`${at}.port`, "must be an integer from 1 to 65535");
    }
    return { host: host.toLowerCase(), port };
  });
}

function parseRecipients(spec: Obj, domain: string): DomainPolicy["recipients"] {
  const recipients = objectAt(spec, "recipients", "spec") ?? {};
  rejectUnknownKeys(recipients, ["mode", "list", "verify"], "spec.recipients");
  const mode = recipients.mode ?? "any";
  if (mode !== "any" && mode !== "list" && mode !== "verify") {
    throw new ConfigError("spec.recipients.mode", `must be one of any, list, verify; got ${JSON.stringify(mode)}`);
  }
  const verifySpec = objectAt(recipients, "verify", "spec.recipients");
  if (verifySpec && mode !== "verify") throw new ConfigError("spec.recipients.verify", "is only valid with mode: verify");
  const verify = verifySpec ?? {};
  rejectUnknownKeys(verify, ["positiveTtl", "negativeTtl", "whenUnavailable"], "spec.recipients.verify");
  const verifyPolicy: RecipientVerifyPolicy = {
    positiveTtlMs: parseDurationField(verify.positiveTtl, "spec.recipients.verify.positiveTtl", DEFAULTS.verifyPositiveTtlMs),
    negativeTtlMs: parseDurationField(verify.negativeTtl, "spec.recipients.verify.negativeTtl", DEFAULTS.verifyNegativeTtlMs),
    whenUnavailable: oneOf(verify.whenUnavailable, ["tempfail", "accept"] as const, "tempfail", "spec.recipients.verify.whenUnavailable"),
  };
  const localParts = new Set<string>();
  if (mode === "list") {
    const list = recipients.list;
    if (!Array.isArray(list) || list.length === 0) {
      throw new ConfigError("spec.recipients.list", "must be a non-empty list when mode is list");
    }
    list.forEach((entry: unknown, index) => {
      const at = `spec.recipients.list[${index}]`;
      if (typeof entry !== "string" || entry.length === 0) throw new ConfigError(at, "must be an address or local part");
      const atSign = entry.lastIndexOf("@");
      const local = atSign === -1 ? entry : entry.slice(0, atSign);
      if (atSign !== -1 && normaliseDomain(entry.slice(atSign + 1)) !== domain) {
        throw new ConfigError(at, `address is not in ${domain}`);
      }
      if (local.length === 0 || local.length > 64) throw new ConfigError(at, "local part must be 1-64 characters");
      localParts.add(local.toLowerCase());
    });
  } else if (recipients.list !== undefined) {
    throw new ConfigError("spec.recipients.list", "is only valid with mode: list");
  }
  return { mode, localParts, verify: verifyPolicy };
}

/** Validate one RelayDomain document and fill in defaults. */
export function parseRelayDomain(doc: unknown): DomainPolicy {
  if (!isObject(doc)) throw new ConfigError("(document)", "must be a YAML mapping");
  if (doc.apiVersion !== API_VERSION) throw new ConfigError("apiVersion", `must be ${API_VERSION}`);
  if (doc.kind !== KIND) throw new ConfigError("kind", `must be ${KIND}`);
  const metadata = objectAt(doc, "metadata", "", true) as Obj;
  const name = metadata.name;
  if (typeof name !== "string" || name.length === 0) throw new ConfigError("metadata.name", "is required");
  const spec = objectAt(doc, "spec", "", true) as Obj;
  rejectUnknownKeys(spec, ["domain", "primary", "recipients", "maxMessageSize", "queue", "antivirus", "antispam", "greylisting", "dnsbl", "authentication", "rateLimits", "clientChecks"], "spec");

  if (typeof spec.domain !== "string") throw new ConfigError("spec.domain", "is required");
  const domain = normaliseDomain(spec.domain);
  if (domain === undefined) throw new ConfigError("spec.domain", `${JSON.stringify(spec.domain)} is not a valid mail domain`);

  const primary = objectAt(spec, "primary", "spec");
  if (primary) rejectUnknownKeys(primary, ["hosts", "tls"], "spec.primary");
  const primaryHosts = parseHosts(primary, "spec.primary");
  const tls = primary ? objectAt(primary, "tls", "spec.primary") : undefined;
  if (tls) rejectUnknownKeys(tls, ["mode", "verifyCertificate"], "spec.primary.tls");
  const tlsMode = tls?.mode ?? "opportunistic";
  if (tlsMode !== "opportunistic" && tlsMode !== "required") {
    throw new ConfigError("spec.primary.tls.mode", "must be opportunistic or required");
  }
  const verifyCertificate = tls?.verifyCertificate ?? tlsMode === "required";
  if (typeof verifyCertificate !== "boolean") throw new ConfigError("spec.primary.tls.verifyCertificate", "must be true or false");

  const maxMessageBytes = parseSizeField(spec.maxMessageSize, "spec.maxMessageSize", DEFAULTS.maxMessageBytes);

  const queue = objectAt(spec, "queue", "spec") ?? {};
  rejectUnknownKeys(queue, ["lifetime", "retry", "deletionGracePeriod"], "spec.queue");
  const queueLifetimeMs = parseDurationField(queue.lifetime, "spec.queue.lifetime", DEFAULTS.queueLifetimeMs);
  if (queueLifetimeMs > MAX_QUEUE_LIFETIME_MS) throw new ConfigError("spec.queue.lifetime", "must be at most 30d");
  const retry = objectAt(queue, "retry", "spec.queue") ?? {};
  rejectUnknownKeys(retry, ["initialBackoff", "maxBackoff"], "spec.queue.retry");
  const initialBackoffMs = parseDurationField(retry.initialBackoff, "spec.queue.retry.initialBackoff", DEFAULTS.initialBackoffMs);
  const maxBackoffMs = parseDurationField(retry.maxBackoff, "spec.queue.retry.maxBackoff", Math.max(DEFAULTS.maxBackoffMs, initialBackoffMs));
  if (maxBackoffMs < initialBackoffMs) throw new ConfigError("spec.queue.retry.maxBackoff", "must not be shorter than initialBackoff");
  const deletionGraceMs = parseDurationField(queue.deletionGracePeriod, "spec.queue.deletionGracePeriod", DEFAULTS.deletionGraceMs);
  if (deletionGraceMs > MAX_QUEUE_LIFETIME_MS) throw new ConfigError("spec.queue.deletionGracePeriod", "must be at most 30d");
  const retiring = parseRetiring(metadata.deletionTimestamp, deletionGraceMs);

  const generation = typeof metadata.generation === "number" && Number.isSafeInteger(metadata.generation) ? metadata.generation : 0;
  return {
    name,
    generation,
    domain,
    primaryHosts,
    outboundTls: { mode: tlsMode, verifyCertificate },
    recipients: parseRecipients(spec, domain),
    maxMessageBytes,
    queueLifetimeMs,
    retiring,
    retry: { initialBackoffMs, maxBackoffMs },
    antivirus: parseAntivirus(spec),
    antispam: parseAntispam(spec),
    greylisting: parseGreylisting(spec),
    dnsbl: parseDnsLists(spec),
    authentication: parseSenderAuth(spec),
    rateLimits: parseRateLimits(spec),
    clientChecks: parseClientChecks(spec),
  };
}

function parseRetiring(deletionTimestamp: unknown, graceMs: number): DomainPolicy["retiring"] {
  if (deletionTimestamp === undefined || deletionTimestamp === null) return undefined;
  const sinceMs = typeof deletionTimestamp === "string" ? Date.parse(deletionTimestamp) : Number.NaN;
  if (Number.isNaN(sinceMs)) throw new ConfigError("metadata.deletionTimestamp", "must be an RFC 3339 time");
  return { sinceMs, bounceAtMs: sinceMs + graceMs };
}

function parseClientChecks(spec: Obj): ClientCheckPolicy {
  const checks = objectAt(spec, "clientChecks", "spec") ?? {};
  rejectUnknownKeys(checks, ["rejectHeloOurName", "rejectInvalidHelo", "reverseDns"], "spec.clientChecks");
  return {
    rejectHeloOurName: flag(checks.rejectHeloOurName, true, "spec.clientChecks.rejectHeloOurName"),
    rejectInvalidHelo: flag(checks.rejectInvalidHelo, false, "spec.clientChecks.rejectInvalidHelo"),
    reverseDns: oneOf(checks.reverseDns, ["off", "tempfail", "reject"] as const, "off", "spec.clientChecks.reverseDns"),
  };
}

function parseRate(value: unknown, path: string): RateLimit | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === "string" ? /^(\d{1,9})\/(\S+)$/.exec(value) : null;
  const windowMs = match?.[2] ? parseDuration(match[2]) : undefined;
  if (!match || windowMs === undefined || windowMs < 1000 || windowMs > 86_400_000 || Number(match[1]) < 1) {
    throw new ConfigError(path, `must be a rate such as "100/1m" (recipients per window of 1s to 1d), got ${JSON.stringify(value)}`);
  }
  return { count: Number(match[1]), windowMs };
}

function parseRateLimits(spec: Obj): RateLimitPolicy {
  const limits = objectAt(spec, "rateLimits", "spec") ?? {};
  rejectUnknownKeys(limits, ["perClient", "perSenderDomain", "perDomain"], "spec.rateLimits");
  return {
    perClient: parseRate(limits.perClient, "spec.rateLimits.perClient"),
    perSenderDomain: parseRate(limits.perSenderDomain, "spec.rateLimits.perSenderDomain"),
    perDomain: parseRate(limits.perDomain, "spec.rateLimits.perDomain"),
  };
}

function flag(value: unknown, fallback: boolean, path: string): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new ConfigError(path, "must be true or false");
  return value;
}

function parseSenderAuth(spec: Obj): SenderAuthPolicy {
  const auth = objectAt(spec, "authentication", "spec") ?? {};
  rejectUnknownKeys(auth, ["enabled", "rejectDmarcReject", "rejectSpfFail"], "spec.authentication");
  return {
    enabled: flag(auth.enabled, true, "spec.authentication.enabled"),
    rejectDmarcReject: flag(auth.rejectDmarcReject, true, "spec.authentication.rejectDmarcReject"),
    rejectSpfFail: flag(auth.rejectSpfFail, false, "spec.authentication.rejectSpfFail"),
  };
}

function domainList(value: unknown, path: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError(path, "must be a list of DNS zones");
  return value.map((zone: unknown, i) => {
    const normalised = typeof zone === "string" ? normaliseDomain(zone) : undefined;
    if (!normalised) throw new ConfigError(`${path}[${i}]`, "is not a valid DNS zone");
    return normalised;
  });
}

function parseDnsLists(spec: Obj): DnsListPolicy {
  const lists = objectAt(spec, "dnsbl", "spec") ?? {};
  rejectUnknownKeys(lists, ["zones", "allowZones", "onError"], "spec.dnsbl");
  return {
    zones: domainList(lists.zones, "spec.dnsbl.zones"),
    allowZones: domainList(lists.allowZones, "spec.dnsbl.allowZones"),
    onError: oneOf(lists.onError, ["accept", "tempfail"] as const, "accept", "spec.dnsbl.onError"),
  };
}

function parseCidr(value: unknown, path: string): string {
  if (typeof value !== "string") throw new ConfigError(path, "must be an address or CIDR such as 192.0.2.0/24");
  const [address, prefix, ...rest] = value.split("/");
  const family = isIP(address ?? "");
  const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
  if (family === 0 || rest.length > 0 || !Number.isInteger(bits) || bits < 0 || bits > (family === 6 ? 128 : 32)) {
    throw new ConfigError(path, `${JSON.stringify(value)} is not an address or CIDR`);
  }
  return `${address}/${bits}`;
}

function parseGreylisting(spec: Obj): GreylistPolicy {
  const grey = objectAt(spec, "greylisting", "spec") ?? {};
  const path = "spec.greylisting";
  rejectUnknownKeys(grey, ["enabled", "delay", "expiry", "autoAllow", "allowClients", "allowSenderDomains"], path);
  const enabled = flag(grey.enabled, false, `${path}.enabled`);
  const delayMs = parseDurationField(grey.delay, `${path}.delay`, DEFAULTS.greylistDelayMs);
  const expiryMs = parseDurationField(grey.expiry, `${path}.expiry`, DEFAULTS.greylistExpiryMs);
  const autoAllowMs = parseDurationField(grey.autoAllow, `${path}.autoAllow`, DEFAULTS.greylistAutoAllowMs);
  if (expiryMs <= delayMs) throw new ConfigError(`${path}.expiry`, "must be longer than delay");
  if (autoAllowMs > MAX_QUEUE_LIFETIME_MS * 2) throw new ConfigError(`${path}.autoAllow`, "must be at most 60d");
  const clients = grey.allowClients ?? [];
  if (!Array.isArray(clients)) throw new ConfigError(`${path}.allowClients`, "must be a list of CIDRs");
  const senders = grey.allowSenderDomains ?? [];
  if (!Array.isArray(senders)) throw new ConfigError(`${path}.allowSenderDomains`, "must be a list of domains");
  return {
    enabled, delayMs, expiryMs, autoAllowMs,
    allowClients: clients.map((c: unknown, i) => parseCidr(c, `${path}.allowClients[${i}]`)),
    allowSenderDomains: senders.map((d: unknown, i) => {
      const normalised = typeof d === "string" ? normaliseDomain(d) : undefined;
      if (!normalised) throw new ConfigError(`${path}.allowSenderDomains[${i}]`, "is not a valid domain");
      return normalised;
    }),
  };
}

function optionalScore(value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < -1000 || value > 1000) {
    throw new ConfigError(path, "must be a number (an rspamd score)");
  }
  return value;
}

function parseAntispam(spec: Obj): AntispamPolicy {
  const antispam = objectAt(spec, "antispam", "spec") ?? {};
  rejectUnknownKeys(antispam, ["enabled", "onError", "rejectScore", "addHeaderScore"], "spec.antispam");
  const rejectScore = optionalScore(antispam.rejectScore, "spec.antispam.rejectScore");
  const addHeaderScore = optionalScore(antispam.addHeaderScore, "spec.antispam.addHeaderScore");
  if (rejectScore !== undefined && addHeaderScore !== undefined && addHeaderScore > rejectScore) {
    throw new ConfigError("spec.antispam.addHeaderScore", "must not be above rejectScore");
  }
  return {
    enabled: flag(antispam.enabled, true, "spec.antispam.enabled"),
    onError: oneOf(antispam.onError, ["tempfail", "accept"] as const, "tempfail", "spec.antispam.onError"),
    rejectScore,
    addHeaderScore,
  };
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T, path: string): T {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(path, `must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function parseAntivirus(spec: Obj): AntivirusPolicy {
  const antivirus = objectAt(spec, "antivirus", "spec") ?? {};
  rejectUnknownKeys(antivirus, ["enabled", "onError", "maxScanSize", "onOversize"], "spec.antivirus");
  return {
    enabled: flag(antivirus.enabled, true, "spec.antivirus.enabled"),
    onError: oneOf(antivirus.onError, ["tempfail", "accept"] as const, "tempfail", "spec.antivirus.onError"),
    maxScanBytes: parseSizeField(antivirus.maxScanSize, "spec.antivirus.maxScanSize", DEFAULTS.maxScanBytes),
    onOversize: oneOf(antivirus.onOversize, ["accept", "tempfail", "reject"] as const, "accept", "spec.antivirus.onOversize"),
  };
}
