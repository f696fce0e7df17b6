// RelaySite (cluster-scoped): one per site, i.e. one group of relay pods in one cluster with its
// own NATS JetStream domain. The default deployment has two, in two clusters in separate networks.

import { array, boolean, conditions, hostname, integer, object, oneOf, port, string, stringMap, type Schema } from "./schema.ts";
import type { Condition } from "./conditions.ts";
import type { ObjectMeta } from "./relay-domain.ts";
import { API_VERSION } from "./relay-domain.ts";

export interface SecretKeyRef {
  name: string;
  key?: string;
}

export interface RelaySiteSpec {
  /** Where the relays run: absent means the operator's own cluster. */
  cluster?: { kubeconfigSecretRef?: SecretKeyRef };
  namespace?: string;
  /** The relays' SMTP host name, as the domains' MX records name it. */
  hostname: string;
  mxNames?: string[];
  replicas?: number;
  image?: string;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  smtp?: {
    serviceType?: "LoadBalancer" | "NodePort" | "ClusterIP";
    port?: number;
    externalTrafficPolicy?: "Local" | "Cluster";
    proxyProtocol?: boolean;
    loadBalancerIP?: string;
    annotations?: Record<string, string>;
  };
  tls?: { secretName: string };
  nats: { url: string; domain?: string; streamReplicas?: number };
  clamd?: { address: string };
  rspamd?: { url: string };
  resolver?: string;
  deliveryConcurrency?: number;
  /** Per-domain queue metrics for at most this many domains (the relays' --domain-metrics). */
  domainMetrics?: number;
}

export interface RelaySiteStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  replicas?: number;
  readyReplicas?: number;
  domains?: number;
  /** Hash of the domain configuration last applied to the site. */
  configHash?: string;
}

export interface RelaySite {
  apiVersion: typeof API_VERSION;
  kind: "RelaySite";
  metadata: ObjectMeta;
  spec: RelaySiteSpec;
  status?: RelaySiteStatus;
}

export const DEFAULT_SITE_NAMESPACE = "mxwarden";
export const DEFAULT_RELAY_REPLICAS = 2;
/** Relays listen here inside the pod (non-root cannot bind 25); the Service maps 25 to it. */
export const RELAY_CONTAINER_SMTP_PORT = 2525;
export const RELAY_METRICS_PORT = 9090;

const secretKeyRef = (description: string): Schema => object(description, {
  name: string("Secret name (in the operator's namespace)", { maxLength: 253 }),
  key: string("Key in the Secret", { maxLength: 253 }),
}, { required: ["name"] });

const hostPort = "^[^\\s:/]+:[0-9]{1,5}$|^\\[[0-9a-fA-F:.]+\\]:[0-9]{1,5}$";

export const relaySiteSpecSchema: Schema = object("Where and how one site's relays run", {
  cluster: object("The cluster the relays run in; absent means the operator's own cluster", {
    kubeconfigSecretRef: secretKeyRef("A Secret in the operator's namespace holding a kubeconfig for a remote cluster (key default: kubeconfig)"),
  }),
  namespace: string("Namespace of the relays in that cluster (default mxwarden)", { maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }),
  hostname: hostname("The relays' SMTP host name (greeting, Received, loop detection); the MX host of this site"),
  mxNames: array("Other names of this site in MX records", hostname("A host name"), { maxItems: 16 }),
  replicas: integer("Relay pods (default 2; at least 2 for a PodDisruptionBudget to help)", { minimum: 1, maximum: 100 }),
  image: string("Relay image; default: the operator's --relay-image", { maxLength: 512 }),
  resources: object("Relay container resources", {
    requests: stringMap("Requests, such as cpu: 500m, memory: 256Mi"),
    limits: stringMap("Limits, such as memory: 512Mi"),
  }),
  smtp: object("The SMTP Service on port 25", {
    serviceType: oneOf("Service type", ["LoadBalancer", "NodePort", "ClusterIP"], "LoadBalancer"),
    port: port("Service port", 25),
    externalTrafficPolicy: oneOf("Local keeps the client address (needed by SPF, DNSBL, greylisting, rate limits)", ["Local", "Cluster"], "Local"),
    proxyProtocol: boolean("The load balancer sends a PROXY protocol v1 header; relays read the client address from it"),
    loadBalancerIP: string("Requested load balancer address", { maxLength: 64 }),
    annotations: stringMap("Annotations for the Service (cloud load balancer settings)"),
  }, {
    "x-kubernetes-validations": [
      { rule: "!has(self.externalTrafficPolicy) || self.externalTrafficPolicy == 'Local' || (has(self.proxyProtocol) && self.proxyProtocol)", message: "with externalTrafficPolicy Cluster the client address is lost: enable proxyProtocol or use Local", fieldPath: ".externalTrafficPolicy" },
      { rule: "!has(self.serviceType) || self.serviceType != 'ClusterIP' || !has(self.loadBalancerIP)", message: "loadBalancerIP needs serviceType LoadBalancer", fieldPath: ".loadBalancerIP" },
    ],
  }),
  tls: object("STARTTLS certificate for the relays", {
    secretName: string("A kubernetes.io/tls Secret in the relays' namespace", { maxLength: 253 }),
  }, { required: ["secretName"] }),
  nats: object("The site's NATS JetStream (three servers, R3, one JetStream domain per site)", {
    url: string("NATS URL(s), comma-separated, such as nats://nats.mxwarden:4222", { minLength: 1, maxLength: 1024, pattern: "^(nats|tls)://" }),
    streamReplicas: integer("Replicas of the queue streams: 3 for a three-server site (default), 1 for a single server", { minimum: 1, maximum: 5 }),
    domain: string("This site's JetStream domain; set on every site to share greylisting and verification state between sites", { maxLength: 63, pattern: "^[A-Za-z0-9_-]+$" }),
  }, { required: ["url"] }),
  clamd: object("clamd for antivirus scanning", {
    address: string("host:port of clamd", { pattern: hostPort, maxLength: 260 }),
  }, { required: ["address"] }),
  rspamd: object("rspamd for content scoring", {
    url: string("rspamd controller/normal worker URL such as http://rspamd:11333", { pattern: "^https?://", maxLength: 1024 }),
  }, { required: ["url"] }),
  resolver: string("DNS resolver host:port for DNSBL, SPF, DKIM and MX lookups (public resolvers are refused by large lists)", { pattern: hostPort, maxLength: 260 }),
  deliveryConcurrency: integer("Deliveries in flight per relay", { minimum: 1, maximum: 1000 }),
  domainMetrics: integer("Export queue depth and oldest age per domain for at most this many domains, those with the oldest mail first (0: none, bounding metric cardinality)", { minimum: 0, maximum: 10000 }),
}, { required: ["hostname", "nats"] });

export const relaySiteStatusSchema: Schema = object("Observed state, written by the operator", {
  observedGeneration: integer("metadata.generation the status reflects", { minimum: 0 }),
  conditions: conditions(),
  replicas: integer("Relay pods wanted", { minimum: 0 }),
  readyReplicas: integer("Relay pods ready", { minimum: 0 }),
  domains: integer("RelayDomains served by the site", { minimum: 0 }),
  configHash: string("Hash of the domain configuration last applied"),
});
