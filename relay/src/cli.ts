// The relay's command line: the contract that docs, the operator and tests rely on. Parsing is
// separate from start-up so that every flag and its validation can be tested without a server.

import { parseArgs } from "node:util";
import { normaliseDomain, parseDuration } from "#api";
import type { BareNewlinePolicy } from "./smtp/index.ts";
import { RESERVED_SITE_NAMES } from "./queue/index.ts";
import type { NatsAuth } from "./queue/queue-connection.ts";

export interface HostPort {
  host: string;
  port: number;
}

export interface RelayConfig {
  listen: HostPort;
  /** SO_REUSEPORT on the SMTP listener: several relays on one host share the port, the kernel spreads the connections. */
  reusePort: boolean;
  hostname: string;
  /** Where the RelayDomain documents come from. */
  domains: { path: string } | { configMaps: { namespace: string; labelSelector: string; kubeconfig?: string | undefined } };
  /** NATS servers; empty means "start an embedded nats-server under dataDir". */
  natsServers: string[];
  /** Credentials for --nats (none: the servers take anonymous clients). */
  natsAuth?: NatsAuth | undefined;
  /** CA of the NATS servers' certificates; TLS is then required. */
  natsCaFile?: string | undefined;
  metrics: HostPort;
  dataDir: string;
  tls?: { certFile: string; keyFile: string } | undefined;
  replicas: number;
  deliveryConcurrency: number;
  maxConnectionsPerHop: number;
  probeIntervalMs: number;
  resolvers: string[];
  /** Extra names of this relay in MX records, besides --hostname. */
  mxNames: string[];
  mxPort: number;
  bounceRelay?: HostPort | undefined;
  bareNewline: BareNewlinePolicy;
  /** Where mail for the bare RCPT TO:<Postmaster> goes (A-label); none: the first configured domain. */
  postmasterDomain?: string | undefined;
  maxReceivedHeaders: number;
  maxClients: number;
  maxConnectionsPerClient: number;
  greetPauseMs: number;
  tarpitAfter: number;
  tarpitDelayMs: number;
  proxyProtocol: boolean;
  shutdownGraceMs: number;
  publishTimeoutMs: number;
  /** How long a delivery may go silent before JetStream gives its job to another relay. */
  ackWaitMs: number;
  /** clamd to scan every message with (INSTREAM); none means no antivirus. */
  clamd?: HostPort | undefined;
  /** rspamd's normal worker, e.g. http://127.0.0.1:11333; none means no content scoring. */
  rspamd?: URL | undefined;
  /** Check SPF, DKIM, DMARC and ARC of every message (needs working DNS through --resolver). */
  senderAuth: boolean;
  /** JetStream domains of this site and its peers: filter state (greylisting, callout answers) is shared between them. */
  sites?: { self: string; peers: string[] } | undefined;
  /** Deliver a silent peer site's shadow copies after this long; 0 never does. */
  takeoverAfterMs: number;
  /** Per-domain queue gauges for at most this many domains (0: none), the oldest queues first. */
  domainMetrics: number;
  /** How long a message's tracking record (mxwarden-queue find) is kept after its last update. */
  trackingRetentionMs: number;
  /** Where the queue report for the operator goes (a ConfigMap in the relay's namespace). */
  statusReport?: { namespace: string; name: string; kubeconfig?: string | undefined; intervalMs: number } | undefined;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const USAGE = `Usage: mxwarden-relay (--domains PATH | --domains-configmaps SELECTOR) [options]

  --listen HOST:PORT          SMTP listener (default 0.0.0.0:2525)
  --reuse-port                share the SMTP port with other relays on this host (Linux
                              SO_REUSEPORT; the kernel spreads new connections among them)
  --hostname NAME             name in the greeting, EHLO and Received headers (default: the host name)
  --domains PATH              RelayDomain YAML file or directory, reloaded on change
  --domains-configmaps SELECTOR
                              instead: watch the ConfigMaps with this label selector through the
                              Kubernetes API (namespace: --status-namespace or $POD_NAMESPACE;
                              credentials: in-cluster or --kubeconfig); what the operator runs
  --nats URL[,URL...]         NATS servers with JetStream; without it an embedded nats-server runs under --data
  --nats-nkey-file FILE       log in to NATS with the nkey seed in FILE (what the operator's managed NATS uses)
  --nats-creds-file FILE      log in with a NATS credentials file (JWT and seed)
  --nats-user NAME --nats-password-file FILE   log in with a user name and the password in FILE
  --nats-ca-file FILE         CA (PEM) that signed the NATS servers' certificates; requires TLS
  --metrics HOST:PORT         /metrics, /healthz, /readyz (default 0.0.0.0:9464)
  --data DIR                  state of the embedded nats-server (default ./.data)
  --tls-cert FILE --tls-key FILE   certificate for STARTTLS (PEM)
  --replicas N                JetStream replicas of the queue streams (default 1; 3 in a site cluster)
  --delivery-concurrency N    deliveries in flight per relay (default 20)
  --max-connections-per-hop N connections to one next hop at most (default 10)
  --probe-interval DURATION   how often an unreachable primary is probed (default 5s)
  --resolver IP[:PORT][,...]  DNS servers for MX and A lookups (default: the system's)
  --mx-name NAME[,NAME...]    other names of this relay in MX records (never deliver to ourselves)
  --mx-port PORT              port of MX-derived next hops (default 25)
  --bounce-relay HOST:PORT    send bounces through this host instead of the sender's MX
  --bare-newline normalize|reject  bare CR/LF in DATA (default normalize)
  --postmaster-domain DOMAIN  a configured domain whose primary gets mail for the bare <Postmaster>
                              (default: the first configured domain in A-label order)
  --max-received N            Received headers before a message is a loop (default 50)
  --max-clients N             concurrent SMTP sessions (default 1000)
  --max-connections-per-client N  sessions one client address may hold (default 50)
  --greet-pause DURATION      wait before the greeting; clients that talk first get 421 (default 0s: greet at once)
  --tarpit-after N            refused recipients in a session before every further reply is slowed (default 5)
  --tarpit-delay DURATION     how much each reply is slowed then (default 2s)
  --proxy-protocol            expect a PROXY protocol header (behind a load balancer)
  --shutdown-grace DURATION   time for sessions and deliveries after SIGTERM (default 30s)
  --publish-timeout DURATION  wait for a JetStream PubAck before answering 451 (default 10s)
  --clamd HOST:PORT           scan messages with clamd before accepting them (per-domain policy: spec.antivirus)
  --rspamd URL                score messages with rspamd, e.g. http://127.0.0.1:11333 (policy: spec.antispam)
  --sender-auth               check SPF, DKIM, DMARC, ARC; add Authentication-Results (policy: spec.authentication)
  --status-configmap NAME     write per-domain queue figures for the operator into this ConfigMap
                              (namespace: --status-namespace or $POD_NAMESPACE; credentials: in-cluster or --kubeconfig)
  --status-namespace NS       namespace of that ConfigMap
  --status-interval DURATION  how often the report is written (default 10s)
  --kubeconfig FILE           credentials for the report and --domains-configmaps instead of the
                              pod's service account
  --site NAME                 this site's JetStream domain; with --peer-sites, greylisting and
                              verification answers are shared with the other sites over leafnodes
  --peer-sites NAME[,NAME...] the other sites' JetStream domains; with --site, every accepted
                              message is also copied to them (shadow copies)
  --takeover-after DURATION   deliver a peer site's copies once it has been silent this long
                              (default 0: never; see docs/architecture.md, Two sites)
  --domain-metrics N          export queue depth and oldest age per domain for at most N domains,
                              those with the oldest mail first (default 0: none; bounds cardinality)
  --ack-wait DURATION         a relay that dies mid-delivery hands its jobs on after this (default 60s)
  --tracking-retention DURATION  how long each message's tracking record (mxwarden-queue find) is kept
                              after its last update (default 7d)
  --help
`;

/** "HOST:PORT" or "[IPv6]:PORT"; an empty host means all interfaces. */
function hostPort(flag: string, value: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) throw new UsageError(`--${flag}: expected HOST:PORT, got "${value}"`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function httpUrl(flag: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--${flag}: not a URL: "${value}"`);
  }
  if (url.protocol !== "http:") throw new UsageError(`--${flag}: expected an http:// URL, got "${value}"`);
  return url;
}

function positiveInteger(flag: string, value: string, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${flag}: expected an integer from 1 to ${max}, got "${value}"`);
  return n;
}

function duration(flag: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms === 0) throw new UsageError(`--${flag}: expected a duration such as 5s or 2m, got "${value}"`);
  return ms;
}

function greetPause(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms > 60_000) throw new UsageError(`--greet-pause: expected a duration up to 60s, got "${value}"`);
  return ms;
}

function list(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function postmasterDomain(value: string): string {
  const domain = normaliseDomain(value);
  if (domain === undefined) throw new UsageError(`--postmaster-domain: not a mail domain: "${value}"`);
  return domain;
}

const JETSTREAM_DOMAIN = /^[A-Za-z0-9_-]{1,63}$/;

function sites(self: string | undefined, peers: string[]): RelayConfig["sites"] {
  if (!self) {
    if (peers.length > 0) throw new UsageError("--peer-sites needs --site");
    return undefined;
  }
  for (const [flag, name] of [["site", self], ...peers.map((peer) => ["peer-sites", peer])] as const) {
    if (!JETSTREAM_DOMAIN.test(name)) throw new UsageError(`--${flag}: not a JetStream domain name: "${name}"`);
  }
  if (peers.includes(self)) throw new UsageError(`--peer-sites: "${self}" is this site (--site)`);
  if (RESERVED_SITE_NAMES.includes(self)) throw new UsageError(`--site: "${self}" is reserved (it would clash with the queue's subjects)`);
  return { self, peers: [...new Set(peers)] };
}

function natsAuth(
  nkeyFile: string | undefined,
  credsFile: string | undefined,
  user: string | undefined,
  passwordFile: string | undefined,
  hasServers: boolean,
): NatsAuth | undefined {
  const chosen = [nkeyFile && "--nats-nkey-file", credsFile && "--nats-creds-file", (user || passwordFile) && "--nats-user"].filter(Boolean);
  if (chosen.length === 0) return undefined;
  if (chosen.length > 1) throw new UsageError(`${chosen.join(" and ")}: choose one way to log in to NATS`);
  if (!hasServers) throw new UsageError(`${chosen[0]} needs --nats (the embedded nats-server takes no credentials)`);
  if (nkeyFile) return { nkeyFile };
  if (credsFile) return { credsFile };
  if (!user || !passwordFile) throw new UsageError("--nats-user and --nats-password-file go together");
  return { user, passwordFile };
}

function natsCaFile(file: string | undefined, hasServers: boolean): string | undefined {
  if (file && !hasServers) throw new UsageError("--nats-ca-file needs --nats");
  return file;
}

function domainsSource(
  path: string | undefined,
  selector: string | undefined,
  namespace: string | undefined,
  kubeconfig: string | undefined,
): RelayConfig["domains"] {
  if (path !== undefined) return { path };
  if (!selector || !/^[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?(,[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?)*$/.test(selector)) {
    throw new UsageError(`--domains-configmaps: not a label selector such as mxwarden.io/domain-config=site-a: "${selector ?? ""}"`);
  }
  if (!namespace) throw new UsageError("--domains-configmaps needs --status-namespace or $POD_NAMESPACE");
  return { configMaps: { namespace, labelSelector: selector, kubeconfig } };
}

function statusReport(name: string | undefined, namespace: string | undefined, kubeconfig: string | undefined, interval: string): RelayConfig["statusReport"] {
  if (!name) return undefined;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new UsageError(`--status-configmap: not a ConfigMap name: "${name}"`);
  if (!namespace) throw new UsageError("--status-configmap needs --status-namespace or $POD_NAMESPACE");
  return { name, namespace, kubeconfig, intervalMs: duration("status-interval", interval) };
}

export function parseRelayArgs(argv: string[], defaultHostname: string): RelayConfig | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        listen: { type: "string", default: "0.0.0.0:2525" },
        "reuse-port": { type: "boolean", default: false },
        hostname: { type: "string", default: defaultHostname },
        domains: { type: "string" },
        "domains-configmaps": { type: "string" },
        nats: { type: "string" },
        "nats-nkey-file": { type: "string" },
        "nats-creds-file": { type: "string" },
        "nats-user": { type: "string" },
        "nats-password-file": { type: "string" },
        "nats-ca-file": { type: "string" },
        metrics: { type: "string", default: "0.0.0.0:9464" },
        data: { type: "string", default: "./.data" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        replicas: { type: "string", default: "1" },
        "delivery-concurrency": { type: "string", default: "20" },
        "max-connections-per-hop": { type: "string", default: "10" },
        "probe-interval": { type: "string", default: "5s" },
        resolver: { type: "string" },
        "mx-name": { type: "string" },
        "mx-port": { type: "string", default: "25" },
        "bounce-relay": { type: "string" },
        "bare-newline": { type: "string", default: "normalize" },
        "postmaster-domain": { type: "string" },
        "max-received": { type: "string", default: "50" },
        "max-clients": { type: "string", default: "1000" },
        "max-connections-per-client": { type: "string", default: "50" },
        "greet-pause": { type: "string", default: "0s" },
        "tarpit-after": { type: "string", default: "5" },
        "tarpit-delay": { type: "string", default: "2s" },
        "proxy-protocol": { type: "boolean", default: false },
        "shutdown-grace": { type: "string", default: "30s" },
        "publish-timeout": { type: "string", default: "10s" },
        "ack-wait": { type: "string", default: "60s" },
        "tracking-retention": { type: "string", default: "7d" },
        "domain-metrics": { type: "string", default: "0" },
        clamd: { type: "string" },
        rspamd: { type: "string" },
        "sender-auth": { type: "boolean", default: false },
        "status-configmap": { type: "string" },
        "status-namespace": { type: "string" },
        "status-interval": { type: "string", default: "10s" },
        kubeconfig: { type: "string" },
        site: { type: "string" },
        "peer-sites": { type: "string" },
        "takeover-after": { type: "string", default: "0" },
        help: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (!v.domains === !v["domains-configmaps"]) throw new UsageError("exactly one of --domains and --domains-configmaps is required");
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(v.hostname)) throw new UsageError(`--hostname: not a host name: "${v.hostname}"`);
  if (Boolean(v["tls-cert"]) !== Boolean(v["tls-key"])) throw new UsageError("--tls-cert and --tls-key go together");
  if (v["bare-newline"] !== "normalize" && v["bare-newline"] !== "reject") {
    throw new UsageError(`--bare-newline: expected normalize or reject, got "${v["bare-newline"]}"`);
  }
  const natsServers = list(v.nats);
  for (const server of natsServers) {
    if (!/^(nats|tls|wss?):\/\/[^\s]+$|^[^\s/:]+:\d+$/.test(server)) throw new UsageError(`--nats: not a NATS URL: "${server}"`);
  }
  const replicas = positiveInteger("replicas", v.replicas, 5);
  if (natsServers.length === 0 && replicas !== 1) throw new UsageError("--replicas above 1 needs --nats with a JetStream cluster");
  return {
    listen: hostPort("listen", v.listen),
    reusePort: v["reuse-port"],
    hostname: v.hostname.toLowerCase(),
    domains: domainsSource(v.domains, v["domains-configmaps"], v["status-namespace"] ?? process.env.POD_NAMESPACE, v.kubeconfig),
    natsServers,
    natsAuth: natsAuth(v["nats-nkey-file"], v["nats-creds-file"], v["nats-user"], v["nats-password-file"], natsServers.length > 0),
    natsCaFile: natsCaFile(v["nats-ca-file"], natsServers.length > 0),
    metrics: hostPort("metrics", v.metrics),
    dataDir: v.data,
    tls: v["tls-cert"] && v["tls-key"] ? { certFile: v["tls-cert"], keyFile: v["tls-key"] } : undefined,
    replicas,
    deliveryConcurrency: positiveInteger("delivery-concurrency", v["delivery-concurrency"], 10_000),
    maxConnectionsPerHop: positiveInteger("max-connections-per-hop", v["max-connections-per-hop"], 1000),
    probeIntervalMs: duration("probe-interval", v["probe-interval"]),
    resolvers: list(v.resolver),
    mxNames: list(v["mx-name"]).map((name) => name.toLowerCase()),
    mxPort: positiveInteger("mx-port", v["mx-port"], 65535),
    bounceRelay: v["bounce-relay"] ? hostPort("bounce-relay", v["bounce-relay"]) : undefined,
    bareNewline: v["bare-newline"],
    postmasterDomain: v["postmaster-domain"] === undefined ? undefined : postmasterDomain(v["postmaster-domain"]),
    maxReceivedHeaders: positiveInteger("max-received", v["max-received"], 1000),
    maxClients: positiveInteger("max-clients", v["max-clients"], 100_000),
    maxConnectionsPerClient: positiveInteger("max-connections-per-client", v["max-connections-per-client"], 100_000),
    greetPauseMs: greetPause(v["greet-pause"]),
    tarpitAfter: positiveInteger("tarpit-after", v["tarpit-after"], 1000),
    tarpitDelayMs: duration("tarpit-delay", v["tarpit-delay"]),
    proxyProtocol: v["proxy-protocol"],
    shutdownGraceMs: duration("shutdown-grace", v["shutdown-grace"]),
    publishTimeoutMs: duration("publish-timeout", v["publish-timeout"]),
    ackWaitMs: duration("ack-wait", v["ack-wait"]),
    trackingRetentionMs: duration("tracking-retention", v["tracking-retention"]),
    clamd: v.clamd ? hostPort("clamd", v.clamd) : undefined,
    rspamd: v.rspamd ? httpUrl("rspamd", v.rspamd) : undefined,
    senderAuth: v["sender-auth"],
    sites: sites(v.site, list(v["peer-sites"])),
    takeoverAfterMs: v["takeover-after"] === "0" ? 0 : duration("takeover-after", v["takeover-after"]),
    domainMetrics: v["domain-metrics"] === "0" ? 0 : positiveInteger("domain-metrics", v["domain-metrics"], 10_000),
    statusReport: statusReport(v["status-configmap"], v["status-namespace"] ?? process.env.POD_NAMESPACE, v.kubeconfig, v["status-interval"]),
  };
}
