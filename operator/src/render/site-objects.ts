// Everything one site's relays need, as Kubernetes objects. Pure: the same RelaySite, domains and
// options always give the same objects, so reconciling is "apply these" and tests need no cluster.

import { DEFAULT_RELAY_REPLICAS, DEFAULT_SITE_NAMESPACE, RELAY_CONTAINER_SMTP_PORT, RELAY_METRICS_PORT, type RelaySite } from "#api";
import { RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY, spreadOverZonesAndNodes, type KubeObject } from "./kube-object.ts";
import { DOMAIN_CONFIG_LABEL, domainConfigShards, type SiteDomainConfig } from "./domain-config.ts";
import { managedNatsUrl, NATS_CLIENT_PORT, NATS_RELAY_SECRET, RELAY_SEED_KEY, renderNats, type NatsRenderOptions } from "./nats-objects.ts";
import { CLAMD_PORT, managedClamdAddress, renderClamd } from "./clamd-objects.ts";
import { managedRspamdUrl, renderRspamd, RSPAMD_PORT } from "./rspamd-objects.ts";

export const RELAY_NAME = "mxwarden-relay";
/** Before the shards (domain-config.ts): one ConfigMap mounted into the pods; removed once no pod mounts it. */
export const LEGACY_DOMAINS_CONFIGMAP = "mxwarden-domains";
/** Lists the current shards (data.shards), so the next reconcile knows which to delete; it carries no shard label. */
export const DOMAIN_SHARDS_INDEX = "mxwarden-domain-shards";
/**
 * The ClusterRole (installed by the chart in every site cluster) that lets relays get, list and
 * watch the ConfigMaps of their namespace. The operator binds it with `bind` on this one name, so
 * it needs no list or watch of ConfigMaps itself (RBAC's escalation check).
 */
export const RELAY_DOMAINS_CLUSTERROLE = "mxwarden-relay-domains";
/** Written by the relays themselves: per-domain queue figures and loaded generations. */
export const STATUS_CONFIGMAP = "mxwarden-relay-status";
export const SMTP_SERVICE = "mxwarden-smtp";
export const METRICS_SERVICE = "mxwarden-relay-metrics";
const SMTP_PORT = 25;
const TLS_MOUNT = "/etc/mxwarden/tls";
const NATS_CREDENTIALS_MOUNT = "/etc/mxwarden/nats";
const NATS_CA_MOUNT = "/etc/mxwarden/nats-ca";
const DEFAULT_CREDS_KEY = "nats.creds";
const DEFAULT_CA_KEY = "ca.crt";
/**
 * A relay's stop, from the pod's deletion to its exit, in three parts that must fit the pod's
 * termination grace (the kubelet kills what is left after it):
 * - the preStop sleep: the relay keeps serving while the pod's endpoint is removed from every
 *   node's kube-proxy (and load balancers stop choosing the node). A relay that closed its listener
 *   at once would meet the connections still sent its way with a refusal, or, once its pod was
 *   gone, no host at all;
 * - `--shutdown-grace` after SIGTERM: sessions and deliveries in flight finish;
 * - then closing the outbound connections, the tracking records and the queue connection.
 */
const RELAY_STOP = { preStopSleepSeconds: 10, shutdownGraceSeconds: 40, afterDrainSeconds: 10 } as const;
const TERMINATION_GRACE_SECONDS = RELAY_STOP.preStopSleepSeconds + RELAY_STOP.shutdownGraceSeconds + RELAY_STOP.afterDrainSeconds;

export interface RenderOptions {
  /** Image used when the RelaySite does not name one. */
  relayImage: string;
  /** JetStream domains of the other sites, for shared greylisting/verification state. */
  peerJetStreamDomains: string[];
  /** The Prometheus Operator's CRDs exist in the site's cluster. */
  prometheusOperator: boolean;
  /** Alerting rule groups to install next to the relays (from the chart's monitoring files). */
  prometheusRuleGroups?: unknown[];
  /**
   * The RelaySite as owner of the namespaced objects, when they live in the operator's own
   * cluster. Owner references never cross clusters: remote objects are cleaned up by the finalizer.
   */
  owner?: { apiVersion: string; kind: string; name: string; uid: string } | undefined;
  /** The keys, image and peers of the site's NATS; required with spec.nats.managed. */
  nats?: NatsRenderOptions | undefined;
  /** Images of managed clamd and rspamd that name none (the operator's --clamd-image and --rspamd-image). */
  filterImages?: { clamd: string; rspamd: string } | undefined;
}

export function siteNamespace(site: RelaySite): string {
  return site.spec.namespace ?? DEFAULT_SITE_NAMESPACE;
}

export function relayLabels(site: RelaySite): Record<string, string> {
  return { "app.kubernetes.io/name": RELAY_NAME, "app.kubernetes.io/instance": site.metadata.name };
}

function commonLabels(site: RelaySite): Record<string, string> {
  return {
    ...relayLabels(site),
    "app.kubernetes.io/part-of": "mxwarden",
    "app.kubernetes.io/managed-by": "mxwarden-operator",
    "mxwarden.io/site": site.metadata.name,
  };
}

function portOf(address: string, fallback: number): number {
  const match = /:(\d+)$/.exec(address);
  return match ? Number(match[1]) : fallback;
}

function urlPorts(urls: string, fallback: number): number[] {
  return urls.split(",").map((u) => {
    try {
      const parsed = new URL(u.trim());
      return parsed.port ? Number(parsed.port) : fallback;
    } catch {
      return fallback;
    }
  });
}

/** The relays' NATS: the operator's own (managed) or the one the user names. */
function relayNatsUrl(site: RelaySite): string {
  return site.spec.nats.managed ? managedNatsUrl(site, siteNamespace(site)) : (site.spec.nats.url ?? "");
}

/** The relays' clamd: the operator's own (managed) or the one the user names. */
function relayClamdAddress(site: RelaySite): string | undefined {
  const clamd = site.spec.clamd;
  return clamd?.managed ? managedClamdAddress(siteNamespace(site)) : clamd?.address;
}

/** The relays' rspamd: the operator's own (managed) or the one the user names. */
function relayRspamdUrl(site: RelaySite): string | undefined {
  const rspamd = site.spec.rspamd;
  return rspamd?.managed ? managedRspamdUrl(siteNamespace(site)) : rspamd?.url;
}

/** The Secret and key holding the CA of the relays' NATS, if it speaks TLS with one. */
function natsCaFile(site: RelaySite): { secretName: string; key: string } | undefined {
  const nats = site.spec.nats;
  if (nats.managed?.tls) return { secretName: nats.managed.tls.secretName, key: DEFAULT_CA_KEY };
  if (nats.caSecretRef) return { secretName: nats.caSecretRef.name, key: nats.caSecretRef.key ?? DEFAULT_CA_KEY };
  return undefined;
}

export function relayArgs(site: RelaySite, options: RenderOptions): string[] {
  const spec = site.spec;
  const args = [
    `--listen=0.0.0.0:${RELAY_CONTAINER_SMTP_PORT}`,
    `--hostname=${spec.hostname}`,
    `--domains-configmaps=${DOMAIN_CONFIG_LABEL}=${site.metadata.name}`,
    `--nats=${relayNatsUrl(site)}`,
    `--metrics=0.0.0.0:${RELAY_METRICS_PORT}`,
    `--shutdown-grace=${RELAY_STOP.shutdownGraceSeconds}s`,
    `--status-configmap=${STATUS_CONFIGMAP}`,
  ];
  args.push(`--replicas=${spec.nats.streamReplicas ?? spec.nats.managed?.replicas ?? 3}`, "--sender-auth");
  if (spec.nats.managed) args.push(`--nats-nkey-file=${NATS_CREDENTIALS_MOUNT}/${RELAY_SEED_KEY}`);
  else if (spec.nats.credentialsSecretRef) args.push(`--nats-creds-file=${NATS_CREDENTIALS_MOUNT}/${spec.nats.credentialsSecretRef.key ?? DEFAULT_CREDS_KEY}`);
  const caFile = natsCaFile(site);
  if (caFile) args.push(`--nats-ca-file=${NATS_CA_MOUNT}/${caFile.key}`);
  if (spec.mxNames && spec.mxNames.length > 0) args.push(`--mx-name=${spec.mxNames.join(",")}`);
  if (spec.tls) args.push(`--tls-cert=${TLS_MOUNT}/tls.crt`, `--tls-key=${TLS_MOUNT}/tls.key`);
  if (spec.smtp?.proxyProtocol) args.push("--proxy-protocol");
  const clamd = relayClamdAddress(site);
  if (clamd) args.push(`--clamd=${clamd}`);
  const rspamd = relayRspamdUrl(site);
  if (rspamd) args.push(`--rspamd=${rspamd}`);
  if (spec.resolver) args.push(`--resolver=${spec.resolver}`);
  if (spec.deliveryConcurrency) args.push(`--delivery-concurrency=${spec.deliveryConcurrency}`);
  if (spec.domainMetrics) args.push(`--domain-metrics=${spec.domainMetrics}`);
  if (spec.nats.domain) {
    args.push(`--site=${spec.nats.domain}`);
    if (options.peerJetStreamDomains.length > 0) args.push(`--peer-sites=${options.peerJetStreamDomains.join(",")}`);
    const takeoverAfter = spec.takeover?.after;
    if (options.peerJetStreamDomains.length > 0 && takeoverAfter !== undefined) args.push(`--takeover-after=${takeoverAfter}`);
  }
  return args;
}

function deployment(site: RelaySite, namespace: string, options: RenderOptions): KubeObject {
  const spec = site.spec;
  const replicas = spec.replicas ?? DEFAULT_RELAY_REPLICAS;
  const selector = relayLabels(site);
  // The domains are not mounted: relays watch their ConfigMaps through the API (--domains-configmaps),
  // which brings a change within the second instead of at the kubelet's next sync of the pod.
  const volumes: unknown[] = [{ name: "tmp", emptyDir: { sizeLimit: "256Mi" } }];
  const mounts: unknown[] = [{ name: "tmp", mountPath: "/tmp" }];
  if (spec.tls) {
    volumes.push({ name: "tls", secret: { secretName: spec.tls.secretName } });
    mounts.push({ name: "tls", mountPath: TLS_MOUNT, readOnly: true });
  }
  const credentials = spec.nats.managed
    ? { secretName: NATS_RELAY_SECRET, key: RELAY_SEED_KEY }
    : spec.nats.credentialsSecretRef
      ? { secretName: spec.nats.credentialsSecretRef.name, key: spec.nats.credentialsSecretRef.key ?? DEFAULT_CREDS_KEY }
      : undefined;
  if (credentials) {
    // Only the one key: the Secret may hold more than the relays should see.
    volumes.push({ name: "nats-credentials", secret: { secretName: credentials.secretName, items: [{ key: credentials.key, path: credentials.key }] } });
    mounts.push({ name: "nats-credentials", mountPath: NATS_CREDENTIALS_MOUNT, readOnly: true });
  }
  const ca = natsCaFile(site);
  if (ca) {
    // The CA only, never the servers' key that a managed NATS keeps in the same Secret.
    volumes.push({ name: "nats-ca", secret: { secretName: ca.secretName, items: [{ key: ca.key, path: ca.key }] } });
    mounts.push({ name: "nats-ca", mountPath: NATS_CA_MOUNT, readOnly: true });
  }
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: RELAY_NAME, namespace, labels: commonLabels(site) },
    spec: {
      replicas,
      selector: { matchLabels: selector },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: { ...commonLabels(site) } },
        spec: {
          serviceAccountName: RELAY_NAME,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: RESTRICTED_POD_SECURITY,
          topologySpreadConstraints: spreadOverZonesAndNodes(selector),
          containers: [
            {
              name: "relay",
              image: spec.image ?? options.relayImage,
              args: relayArgs(site, options),
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
              ],
              ports: [
                { name: "smtp", containerPort: RELAY_CONTAINER_SMTP_PORT, protocol: "TCP" },
                { name: "metrics", containerPort: RELAY_METRICS_PORT, protocol: "TCP" },
              ],
              lifecycle: { preStop: { sleep: { seconds: RELAY_STOP.preStopSleepSeconds } } },
              readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 5, failureThreshold: 2 },
              livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 10, failureThreshold: 6 },
              resources: {
                requests: { cpu: "250m", memory: "256Mi", ...(spec.resources?.requests ?? {}) },
                limits: { memory: "512Mi", ...(spec.resources?.limits ?? {}) },
              },
              securityContext: RESTRICTED_CONTAINER_SECURITY,
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
}

function smtpService(site: RelaySite, namespace: string): KubeObject {
  const smtp = site.spec.smtp ?? {};
  const type = smtp.serviceType ?? "LoadBalancer";
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: SMTP_SERVICE, namespace, labels: commonLabels(site), ...(smtp.annotations ? { annotations: smtp.annotations } : {}) },
    spec: {
      type,
      selector: relayLabels(site),
      ports: [{ name: "smtp", port: smtp.port ?? 25, targetPort: "smtp", protocol: "TCP" }],
      // Local keeps the client's address, which SPF, DNSBL, greylisting and rate limits need.
      ...(type === "ClusterIP" ? {} : { externalTrafficPolicy: smtp.externalTrafficPolicy ?? "Local" }),
      ...(smtp.loadBalancerIP ? { loadBalancerIP: smtp.loadBalancerIP } : {}),
    },
  };
}

/** Ports of the domains' primaries: a primary may listen anywhere (587, 2525, ...), not only on 25. */
function primaryPorts(config: SiteDomainConfig): number[] {
  return config.domains.flatMap((domain) => (domain.spec.primary?.hosts ?? []).map((host) => host.port ?? SMTP_PORT));
}

function networkPolicy(site: RelaySite, namespace: string, config: SiteDomainConfig): KubeObject {
  const spec = site.spec;
  const tcp = (port: number): { protocol: string; port: number } => ({ protocol: "TCP", port });
  // 25: primaries found through MX records, and bounces; 443 and 6443: the API server (status).
  const egressPorts = new Set<number>([SMTP_PORT, 443, 6443, ...primaryPorts(config), ...urlPorts(relayNatsUrl(site), NATS_CLIENT_PORT)]);
  const clamd = relayClamdAddress(site);
  if (clamd) egressPorts.add(portOf(clamd, CLAMD_PORT));
  const rspamd = relayRspamdUrl(site);
  if (rspamd) for (const p of urlPorts(rspamd, RSPAMD_PORT)) egressPorts.add(p);
  const dnsPort = spec.resolver ? portOf(spec.resolver, 53) : 53;
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: RELAY_NAME, namespace, labels: commonLabels(site) },
    spec: {
      podSelector: { matchLabels: relayLabels(site) },
      policyTypes: ["Ingress", "Egress"],
      ingress: [{ ports: [tcp(RELAY_CONTAINER_SMTP_PORT)] }, { from: [{ namespaceSelector: {} }], ports: [tcp(RELAY_METRICS_PORT)] }],
      egress: [
        // DNS (MX, DNSBL, SPF/DKIM), the primaries, NATS, clamd, rspamd, the API server (status).
        { ports: [{ protocol: "UDP", port: dnsPort }, tcp(dnsPort)] },
        { ports: [...egressPorts].sort((a, b) => a - b).map(tcp) },
      ],
    },
  };
}

export function renderSite(site: RelaySite, config: SiteDomainConfig, options: RenderOptions): KubeObject[] {
  const namespace = siteNamespace(site);
  const labels = commonLabels(site);
  const shards = domainConfigShards(config);
  const objects: KubeObject[] = [
    {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: namespace, labels: { "app.kubernetes.io/part-of": "mxwarden", "pod-security.kubernetes.io/enforce": "restricted" } },
    },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: RELAY_NAME, namespace, labels } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: RELAY_NAME, namespace, labels },
      // The relays write their queue figures into one ConfigMap (a merge patch of their own key);
      // reading their namespace's ConfigMaps (their domains) is RELAY_DOMAINS_CLUSTERROLE's, bound below.
      rules: [{ apiGroups: [""], resources: ["configmaps"], resourceNames: [STATUS_CONFIGMAP], verbs: ["patch"] }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: RELAY_NAME, namespace, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: RELAY_NAME },
      subjects: [{ kind: "ServiceAccount", name: RELAY_NAME, namespace }],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: RELAY_DOMAINS_CLUSTERROLE, namespace, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: RELAY_DOMAINS_CLUSTERROLE },
      subjects: [{ kind: "ServiceAccount", name: RELAY_NAME, namespace }],
    },
    // The shards before their index: a relay never misses a domain that the index already lists.
    ...shards.map(
      (shard): KubeObject => ({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: shard.name, namespace, labels: { ...labels, [DOMAIN_CONFIG_LABEL]: site.metadata.name } },
        data: shard.data,
      }),
    ),
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: DOMAIN_SHARDS_INDEX, namespace, labels, annotations: { "mxwarden.io/config-hash": config.hash } },
      data: { shards: shards.map((shard) => shard.name).join(",") },
    },
    // Created empty so the relays' Role can name it; the relays own its data.
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: STATUS_CONFIGMAP, namespace, labels } },
    deployment(site, namespace, options),
    smtpService(site, namespace),
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: METRICS_SERVICE, namespace, labels: { ...labels, "mxwarden.io/metrics": "true" } },
      spec: { type: "ClusterIP", selector: relayLabels(site), ports: [{ name: "metrics", port: RELAY_METRICS_PORT, targetPort: "metrics", protocol: "TCP" }] },
    },
    {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: RELAY_NAME, namespace, labels },
      spec: { maxUnavailable: 1, selector: { matchLabels: relayLabels(site) } },
    },
    networkPolicy(site, namespace, config),
  ];
  if (site.spec.nats.managed) {
    if (!options.nats) throw new Error(`RelaySite ${site.metadata.name}: managed NATS needs its credentials to render`);
    // Right after the namespace: the relays' pods mount the NATS Secret.
    objects.splice(1, 0, ...renderNats(site, namespace, options.nats, relayLabels(site)));
  }
  const { clamd, rspamd } = site.spec;
  if (clamd?.managed || rspamd?.managed) {
    if (!options.filterImages) throw new Error(`RelaySite ${site.metadata.name}: managed clamd or rspamd needs the default images to render`);
    if (clamd?.managed) objects.push(...renderClamd(site, namespace, options.filterImages.clamd, relayLabels(site)));
    if (rspamd?.managed) objects.push(...renderRspamd(site, namespace, options.filterImages.rspamd, relayLabels(site)));
  }
  if (options.prometheusOperator) {
    objects.push({
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: RELAY_NAME, namespace, labels },
      spec: { selector: { matchLabels: { ...relayLabels(site), "mxwarden.io/metrics": "true" } }, endpoints: [{ port: "metrics", interval: "30s" }] },
    });
    if (options.prometheusRuleGroups && options.prometheusRuleGroups.length > 0) {
      objects.push({
        apiVersion: "monitoring.coreos.com/v1",
        kind: "PrometheusRule",
        metadata: { name: RELAY_NAME, namespace, labels },
        spec: { groups: options.prometheusRuleGroups },
      });
    }
  }
  if (options.owner) {
    const reference = { ...options.owner, controller: true, blockOwnerDeletion: false };
    for (const object of objects) {
      if (object.metadata.namespace !== undefined) object.metadata = { ...object.metadata, ownerReferences: [reference] };
    }
  }
  return objects;
}
