// RelaySite (cluster-scoped): one per site, i.e. one group of relay pods in one cluster with its
// own NATS JetStream domain. The default deployment has two, in two clusters in separate networks.

import { Type, type Static } from "@sinclair/typebox";
import { array, boolean, conditions, duration, hostname, integer, object, oneOf, port, rule, string, stringMap } from "./schema.ts";
import type { Condition } from "./conditions.ts";
import type { API_VERSION, ObjectMeta } from "./relay-domain.ts";

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

const { Optional } = Type;

const secretKeyRef = (description: string) =>
  object(description, {
    name: string("Secret name (in the operator's namespace)", { maxLength: 253 }),
    key: Optional(string("Key in the Secret", { maxLength: 253 })),
  });

const hostPort = "^[^\\s:/]+:[0-9]{1,5}$|^\\[[0-9a-fA-F:.]+\\]:[0-9]{1,5}$";

/** A key of a Secret in the relays' namespace (mounted into their pods). */
const localSecretKeyRef = (description: string) =>
  object(description, {
    name: string("Secret name (in the relays' namespace)", { maxLength: 253 }),
    key: Optional(string("Key in the Secret", { maxLength: 253 })),
  });

export const DEFAULT_NATS_REPLICAS = 3;
export const DEFAULT_NATS_STORAGE = "10Gi";
export const DEFAULT_LEAFNODE_PORT = 7422;

const managedNatsSchema = object(
  "NATS servers the operator runs for the site: a StatefulSet with routes, JetStream with fsync before every ack, nkey users and leafnodes to the other sites",
  {
    replicas: Optional(integer("nats-servers (default 3; 1, 3 or 5: a JetStream cluster needs a majority)", { minimum: 1, maximum: 5 })),
    image: Optional(string("nats-server image; default: the operator's --nats-image", { maxLength: 512 })),
    storage: Optional(
      object("Each server's JetStream store, a PersistentVolumeClaim", {
        size: Optional(string("Requested size, such as 10Gi (default)", { pattern: "^[0-9]+(Mi|Gi|Ti)$", maxLength: 16 })),
        storageClassName: Optional(string("StorageClass of the claims; default: the cluster's default class", { maxLength: 253 })),
      }),
    ),
    encryption: Optional(boolean("Encrypt the JetStream store at rest (it holds mail bodies) with a key the operator generates into a Secret")),
    tls: Optional(
      object("TLS for clients (the relays) and leafnodes", {
        secretName: string("A kubernetes.io/tls Secret in the relays' namespace with tls.crt, tls.key and ca.crt; the certificate names the client Service", {
          maxLength: 253,
        }),
      }),
    ),
    leafnode: Optional(
      object("Where the other sites' nats-servers reach this site's leafnode listener", {
        port: Optional(port("Leafnode port of the servers and the Service", DEFAULT_LEAFNODE_PORT)),
        serviceType: Optional(oneOf("Type of the leafnode Service", ["LoadBalancer", "NodePort", "ClusterIP"], "ClusterIP")),
        nodePort: Optional(integer("With serviceType NodePort: the node port (default: one the cluster picks)", { minimum: 1, maximum: 65535 })),
        advertise: Optional(
          string("host:port the other sites dial; without it this site only dials sites that advertise", { pattern: hostPort, maxLength: 260 }),
        ),
      }),
    ),
  },
  [
    rule<{ replicas?: number }>(
      "!has(self.replicas) || self.replicas % 2 == 1",
      "replicas must be 1, 3 or 5: JetStream needs a majority of its servers",
      (self) => self.replicas === undefined || self.replicas % 2 === 1,
      ".replicas",
    ),
  ],
);

export const DEFAULT_CLAMD_REPLICAS = 2;
export const DEFAULT_RSPAMD_REPLICAS = 2;
export const DEFAULT_RSPAMD_WORKERS = 2;
export const DEFAULT_FRESHCLAM_CHECKS = 12;

const resourcesSchema = (what: string) =>
  object(`${what} container resources; each given value replaces the default`, {
    requests: Optional(stringMap("Requests, such as cpu: 500m, memory: 256Mi")),
    limits: Optional(stringMap("Limits, such as memory: 512Mi")),
  });

const managedClamdSchema = object("clamd pods the operator runs in the relays' namespace: a Deployment, a Service only the relays reach, a NetworkPolicy", {
  image: Optional(string("clamd image (clamd and freshclam on PATH); default: the operator's --clamd-image", { maxLength: 512 })),
  replicas: Optional(integer("clamd pods (default 2)", { minimum: 1, maximum: 20 })),
  resources: Optional(resourcesSchema("clamd")),
  signatures: Optional(
    object(
      "Where clamd's signature databases come from; set at most one (default: freshclam)",
      {
        freshclam: Optional(
          object("The image's own databases, copied at start and kept current by freshclam beside clamd in every pod (needs HTTPS to the mirror)", {
            checks: Optional(integer("Update checks a day (default 12)", { minimum: 1, maximum: 50 })),
            privateMirror: Optional(string("URL of your own database mirror instead of database.clamav.net", { pattern: "^https?://", maxLength: 1024 })),
          }),
        ),
        configMap: Optional(
          object(
            "Signature files (.cvd, .cld, .hdb, .ndb, ...) from a ConfigMap in the relays' namespace, mounted as the database directory; clamd reloads them when it changes. Under 1 MiB: your own signatures, not the full set",
            { name: string("ConfigMap name", { maxLength: 253 }) },
          ),
        ),
        persistentVolumeClaim: Optional(
          object("A claim in the relays' namespace holding the databases, kept current by you (a mirror job), mounted read-only", {
            claimName: string("PersistentVolumeClaim name", { maxLength: 253 }),
          }),
        ),
      },
      [
        rule<{ freshclam?: unknown; configMap?: unknown; persistentVolumeClaim?: unknown }>(
          "(has(self.freshclam) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.persistentVolumeClaim) ? 1 : 0) <= 1",
          "set at most one of freshclam, configMap and persistentVolumeClaim",
          (self) => [self.freshclam, self.configMap, self.persistentVolumeClaim].filter((v) => v !== undefined).length <= 1,
        ),
      ],
    ),
  ),
});

const managedRspamdSchema = object("rspamd pods the operator runs in the relays' namespace: a Deployment, a Service only the relays reach, a NetworkPolicy", {
  image: Optional(string("rspamd image; default: the operator's --rspamd-image", { maxLength: 512 })),
  replicas: Optional(integer("rspamd pods (default 2)", { minimum: 1, maximum: 20 })),
  workers: Optional(integer("Scanning processes per pod (rspamd's normal worker count; default 2)", { minimum: 1, maximum: 32 })),
  resources: Optional(resourcesSchema("rspamd")),
});

export const relaySiteSpecSchema = object("Where and how one site's relays run", {
  cluster: Optional(
    object("The cluster the relays run in; absent means the operator's own cluster", {
      kubeconfigSecretRef: Optional(secretKeyRef("A Secret in the operator's namespace holding a kubeconfig for a remote cluster (key default: kubeconfig)")),
    }),
  ),
  namespace: Optional(string("Namespace of the relays in that cluster (default mxwarden)", { maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" })),
  hostname: hostname("The relays' SMTP host name (greeting, Received, loop detection); the MX host of this site"),
  mxNames: Optional(array("Other names of this site in MX records", hostname("A host name"), { maxItems: 16 })),
  replicas: Optional(integer("Relay pods (default 2; at least 2 for a PodDisruptionBudget to help)", { minimum: 1, maximum: 100 })),
  image: Optional(string("Relay image; default: the operator's --relay-image", { maxLength: 512 })),
  resources: Optional(resourcesSchema("Relay")),
  smtp: Optional(
    object(
      "The SMTP Service on port 25",
      {
        serviceType: Optional(oneOf("Service type", ["LoadBalancer", "NodePort", "ClusterIP"], "LoadBalancer")),
        port: Optional(port("Service port", 25)),
        externalTrafficPolicy: Optional(
          oneOf("Local keeps the client address (needed by SPF, DNSBL, greylisting, rate limits)", ["Local", "Cluster"], "Local"),
        ),
        proxyProtocol: Optional(boolean("The load balancer sends a PROXY protocol v1 header; relays read the client address from it")),
        loadBalancerIP: Optional(string("Requested load balancer address", { maxLength: 64 })),
        annotations: Optional(stringMap("Annotations for the Service (cloud load balancer settings)")),
      },
      [
        rule<{ externalTrafficPolicy?: string; proxyProtocol?: boolean }>(
          "!has(self.externalTrafficPolicy) || self.externalTrafficPolicy == 'Local' || (has(self.proxyProtocol) && self.proxyProtocol)",
          "with externalTrafficPolicy Cluster the client address is lost: enable proxyProtocol or use Local",
          (self) => self.externalTrafficPolicy !== "Cluster" || self.proxyProtocol === true,
          ".externalTrafficPolicy",
        ),
        rule<{ serviceType?: string; loadBalancerIP?: string }>(
          "!has(self.serviceType) || self.serviceType != 'ClusterIP' || !has(self.loadBalancerIP)",
          "loadBalancerIP needs serviceType LoadBalancer",
          (self) => self.serviceType !== "ClusterIP" || self.loadBalancerIP === undefined,
          ".loadBalancerIP",
        ),
      ],
    ),
  ),
  tls: Optional(
    object("STARTTLS certificate for the relays", {
      secretName: string("A kubernetes.io/tls Secret in the relays' namespace", { maxLength: 253 }),
    }),
  ),
  nats: object(
    "The site's NATS JetStream (three servers, R3, one JetStream domain per site): managed by the operator, or an existing one by url",
    {
      url: Optional(
        string("An existing NATS: URL(s), comma-separated, such as nats://nats.mxwarden:4222", { minLength: 1, maxLength: 1024, pattern: "^(nats|tls)://" }),
      ),
      managed: Optional(managedNatsSchema),
      operatorUrl: Optional(
        string(
          "NATS URL(s) the operator uses to reach this site's NATS for queue requests (RelayQueueRequest), when it cannot use the relays' address from the management cluster",
          {
            minLength: 1,
            maxLength: 1024,
            pattern: "^(nats|tls)://",
          },
        ),
      ),
      credentialsSecretRef: Optional(
        localSecretKeyRef("With url: a Secret in the relays' namespace holding the relays' NATS credentials file (.creds; key default nats.creds)"),
      ),
      caSecretRef: Optional(
        localSecretKeyRef("With url: a Secret in the relays' namespace holding the CA that signed the NATS servers' certificate (key default ca.crt)"),
      ),
      streamReplicas: Optional(
        integer("Replicas of the queue streams: 3 for a three-server site (default: managed.replicas, else 3), 1 for a single server", {
          minimum: 1,
          maximum: 5,
        }),
      ),
      domain: Optional(
        string("This site's JetStream domain; set on every site to share greylisting and verification state between sites", {
          maxLength: 63,
          pattern: "^[A-Za-z0-9_-]+$",
        }),
      ),
    },
    [
      rule<{ url?: string; managed?: unknown }>(
        "has(self.url) != has(self.managed)",
        "set exactly one of url (an existing NATS) and managed (NATS run by the operator)",
        (self) => (self.url === undefined) !== (self.managed === undefined),
      ),
      rule<{ managed?: unknown; credentialsSecretRef?: unknown; caSecretRef?: unknown }>(
        "!has(self.managed) || (!has(self.credentialsSecretRef) && !has(self.caSecretRef))",
        "credentialsSecretRef and caSecretRef belong to url: with managed the operator makes the credentials, and managed.tls names the CA",
        (self) => self.managed === undefined || (self.credentialsSecretRef === undefined && self.caSecretRef === undefined),
      ),
      rule<{ managed?: { replicas?: number }; streamReplicas?: number }>(
        "!has(self.managed) || !has(self.streamReplicas) || self.streamReplicas <= (has(self.managed.replicas) ? self.managed.replicas : 3)",
        "streamReplicas cannot exceed managed.replicas",
        (self) => self.managed === undefined || self.streamReplicas === undefined || self.streamReplicas <= (self.managed.replicas ?? DEFAULT_NATS_REPLICAS),
        ".streamReplicas",
      ),
    ],
  ),
  takeover: Optional(
    object("Delivering a lost peer site's mail from the copies this site holds (needs nats.domain on the sites; docs/architecture.md, Takeover)", {
      after: Optional(
        duration(
          "Take over once the peer has been silent this long (at least 5s counts); absent: never. Longer than the network partitions the sites ride out: a takeover on a cut link delivers the peer's queue twice",
        ),
      ),
    }),
  ),
  clamd: Optional(
    object(
      "clamd for antivirus scanning: an existing one by address, or one the operator runs next to the relays",
      {
        address: Optional(string("host:port of an existing clamd", { pattern: hostPort, maxLength: 260 })),
        managed: Optional(managedClamdSchema),
      },
      [
        rule<{ address?: string; managed?: unknown }>(
          "has(self.address) != has(self.managed)",
          "set exactly one of address (an existing clamd) and managed (clamd run by the operator)",
          (self) => (self.address === undefined) !== (self.managed === undefined),
        ),
      ],
    ),
  ),
  rspamd: Optional(
    object(
      "rspamd for content scoring: an existing one by url, or one the operator runs next to the relays",
      {
        url: Optional(string("rspamd normal worker URL of an existing rspamd, such as http://rspamd:11333", { pattern: "^https?://", maxLength: 1024 })),
        managed: Optional(managedRspamdSchema),
      },
      [
        rule<{ url?: string; managed?: unknown }>(
          "has(self.url) != has(self.managed)",
          "set exactly one of url (an existing rspamd) and managed (rspamd run by the operator)",
          (self) => (self.url === undefined) !== (self.managed === undefined),
        ),
      ],
    ),
  ),
  resolver: Optional(
    string("DNS resolver host:port for DNSBL, SPF, DKIM and MX lookups (public resolvers are refused by large lists)", { pattern: hostPort, maxLength: 260 }),
  ),
  deliveryConcurrency: Optional(integer("Deliveries in flight per relay", { minimum: 1, maximum: 1000 })),
  domainMetrics: Optional(
    integer(
      "Export queue depth and oldest age per domain for at most this many domains, those with the oldest mail first (0: none, bounding metric cardinality)",
      { minimum: 0, maximum: 10000 },
    ),
  ),
});

export type RelaySiteSpec = Static<typeof relaySiteSpecSchema>;

export const relaySiteStatusSchema = object("Observed state, written by the operator", {
  observedGeneration: Optional(integer("metadata.generation the status reflects", { minimum: 0 })),
  conditions: Optional(conditions()),
  replicas: Optional(integer("Relay pods wanted", { minimum: 0 })),
  readyReplicas: Optional(integer("Relay pods ready", { minimum: 0 })),
  domains: Optional(integer("RelayDomains served by the site", { minimum: 0 })),
  configHash: Optional(string("Hash of the domain configuration last applied")),
});
