// The operator's command line, parsed apart from start-up so every flag is testable.

import { parseArgs } from "node:util";
import { parseDuration } from "#api";

export interface OperatorConfig {
  namespace: string;
  kubeconfig?: string | undefined;
  metrics: { host: string; port: number };
  leaderElection: boolean;
  relayImage: string;
  /** nats-server image for sites with managed NATS that name none. */
  natsImage: string;
  /** clamd and rspamd images for sites with spec.clamd.managed or spec.rspamd.managed that name none. */
  clamdImage: string;
  rspamdImage: string;
  /** DNS servers for the DNSConfigured check; undefined: the system's; null: check off. */
  dnsServers: string[] | undefined | null;
  pollIntervalMs: number;
  siteHealthIntervalMs: number;
  monitoringRules?: string | undefined;
  identity: string;
  logLevel: "debug" | "info" | "warn" | "error";
}

/** The official image of the nats-server version the project tests with (NATS_SERVER_VERSION in the Makefile). */
export const DEFAULT_NATS_IMAGE = "docker.io/library/nats:2.14.9";

/** The stock images (docs/operator.md, "Managed clamd and rspamd"): ClamAV 1.4, its long-term support release, and rspamd 3.12. */
export const DEFAULT_CLAMD_IMAGE = "docker.io/clamav/clamav:1.4";
export const DEFAULT_RSPAMD_IMAGE = "docker.io/rspamd/rspamd:3.12";

export class UsageError extends Error {
  override name = "UsageError";
}

export const USAGE = `usage: mxwarden-operator [flags]
       mxwarden-operator uninstall-check [--drain] [--timeout DUR]   (the chart's pre-delete hook)
  --namespace NS            namespace of the operator: kubeconfig Secrets and the leader Lease (env POD_NAMESPACE)
  --kubeconfig FILE         management cluster kubeconfig (default: in-cluster, then $KUBECONFIG)
  --metrics HOST:PORT       /metrics, /healthz, /readyz (default 0.0.0.0:8080)
  --leader-election BOOL    campaign for the Lease before reconciling (default true)
  --relay-image IMAGE       relay image for sites that name none
  --nats-image IMAGE        nats-server image for sites with spec.nats.managed that name none
  --clamd-image IMAGE       clamd image for sites with spec.clamd.managed that name none
  --rspamd-image IMAGE      rspamd image for sites with spec.rspamd.managed that name none
  --dns-servers LIST        resolvers for the DNSConfigured check, comma-separated; "off" disables it
  --poll-interval DUR       how often sites are re-read for relay readiness and queue figures (default 15s)
  --site-health-interval DUR how often each site's API server is checked (default 10s)
  --monitoring-rules FILE   Prometheus rule groups installed next to the relays (YAML with groups:)
  --log-level LEVEL         debug, info, warn or error (default info)`;

function duration(name: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms < 100) throw new UsageError(`--${name}: expected a duration such as 15s, got "${value}"`);
  return ms;
}

export function parseOperatorArgs(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig | "help" {
  let values;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        namespace: { type: "string" },
        kubeconfig: { type: "string" },
        metrics: { type: "string", default: "0.0.0.0:8080" },
        "leader-election": { type: "string", default: "true" },
        "relay-image": { type: "string", default: "ghcr.io/mxwarden/mxwarden-relay:0.1.0" },
        "nats-image": { type: "string", default: DEFAULT_NATS_IMAGE },
        "clamd-image": { type: "string", default: DEFAULT_CLAMD_IMAGE },
        "rspamd-image": { type: "string", default: DEFAULT_RSPAMD_IMAGE },
        "dns-servers": { type: "string" },
        "poll-interval": { type: "string", default: "15s" },
        "site-health-interval": { type: "string", default: "10s" },
        "monitoring-rules": { type: "string" },
        "log-level": { type: "string", default: "info" },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return "help";
  const namespace = values.namespace ?? env.POD_NAMESPACE;
  if (!namespace) throw new UsageError("--namespace (or POD_NAMESPACE) is required");
  const metricsMatch = /^(.+):(\d{1,5})$/.exec(values.metrics);
  if (!metricsMatch || Number(metricsMatch[2]) > 65535) throw new UsageError(`--metrics: expected HOST:PORT, got "${values.metrics}"`);
  if (values["leader-election"] !== "true" && values["leader-election"] !== "false") throw new UsageError("--leader-election: expected true or false");
  if (!["debug", "info", "warn", "error"].includes(values["log-level"])) throw new UsageError("--log-level: expected debug, info, warn or error");
  const dns = values["dns-servers"];
  return {
    namespace,
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    metrics: { host: metricsMatch[1] as string, port: Number(metricsMatch[2]) },
    leaderElection: values["leader-election"] === "true",
    relayImage: values["relay-image"],
    natsImage: values["nats-image"],
    clamdImage: values["clamd-image"],
    rspamdImage: values["rspamd-image"],
    dnsServers:
      dns === "off"
        ? null
        : dns
          ? dns
              .split(",")
              .map((s) => s.trim())
              .filter(Boolean)
          : undefined,
    pollIntervalMs: duration("poll-interval", values["poll-interval"]),
    siteHealthIntervalMs: duration("site-health-interval", values["site-health-interval"]),
    monitoringRules: values["monitoring-rules"],
    identity: env.POD_NAME ?? `${env.HOSTNAME ?? "operator"}-${process.pid}`,
    logLevel: values["log-level"] as OperatorConfig["logLevel"],
  };
}
