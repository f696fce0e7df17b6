// A site's NATS JetStream when the operator runs it (RelaySite spec.nats.managed): the nats.conf,
// the headless Service for routes, the client and leafnode Services, a StatefulSet of servers with
// a PersistentVolumeClaim each, a PodDisruptionBudget and the Secrets the servers and the relays
// mount. Pure, like site-objects.ts: the reconciler generates the keys once (nats-credentials.ts)
// and passes them in; the same inputs always give the same objects.
//
// Authentication: one account (MXW) holds everything mxwarden stores. The relays log in as one nkey
// user with the permissions relayNatsPermissions() lists; the other sites' servers log in as their
// leafnode nkey users. Nobody logs in without a key, and the servers' routes log in to each other
// with a password. Secrets never appear in the ConfigMap: the
// servers read the leafnode seed and the encryption key from environment variables set from a Secret.

import { createHash } from "node:crypto";
import { DEFAULT_LEAFNODE_PORT, DEFAULT_NATS_REPLICAS, DEFAULT_NATS_STORAGE, type RelaySite } from "#api";
import { relayNatsPermissions, type NatsPermissions } from "#relay";
import { RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY, spreadOverZonesAndNodes, type KubeObject } from "./kube-object.ts";

export const NATS_NAME = "mxwarden-nats";
/** Headless: a stable DNS name per server for the cluster routes. */
export const NATS_ROUTES_SERVICE = "mxwarden-nats-routes";
export const NATS_LEAFNODE_SERVICE = "mxwarden-nats-leafnode";
/** The servers' secrets: their leafnode seed and the store's encryption key. */
export const NATS_SERVER_SECRET = "mxwarden-nats-server";
/** The relays' nkey seed. */
export const NATS_RELAY_SECRET = "mxwarden-nats-relay";
export const NATS_ACCOUNT = "MXW";
export const NATS_CLIENT_PORT = 4222;
export const NATS_ROUTE_PORT = 6222;
export const NATS_MONITOR_PORT = 8222;
/** Keys in the Secrets, and the environment variables nats.conf reads them from. */
export const RELAY_SEED_KEY = "nkey.seed";
export const LEAFNODE_SEED_KEY = "leafnode.seed";
export const ENCRYPTION_KEY_KEY = "encryption.key";
/**
 * The routes with their password, included by nats.conf from the servers' Secret: without it any
 * pod that reaches port 6222 could join the cluster as a route and bypass every user's permissions.
 */
export const CLUSTER_AUTH_FILE = "cluster-auth.conf";
const ROUTE_USER = "mxwarden-route";
const LEAFNODE_SEED_VAR = "MXW_LEAFNODE_SEED";
const ENCRYPTION_KEY_VAR = "MXW_JETSTREAM_KEY";
const CONFIG_MOUNT = "/etc/nats";
const DATA_MOUNT = "/data";
const TLS_MOUNT = "/etc/nats-tls";
/** Long enough for lame-duck mode: clients move to the other servers before this one stops. */
const TERMINATION_GRACE_SECONDS = 60;

/** What the operator generates once per site and keeps (nats-credentials.ts). */
export interface NatsCredentials {
  relaySeed: string;
  relayPublicKey: string;
  leafnodeSeed: string;
  leafnodePublicKey: string;
  /** Key of the JetStream store's encryption at rest. */
  encryptionKey: string;
  /** Password the servers' routes log in to each other with. */
  routePassword: string;
}

/** Another site with managed NATS, as this site's leafnode links need it. */
export interface NatsPeer {
  /** Its JetStream domain. */
  domain: string;
  /** host:port it advertises for leafnodes; undefined when it takes no links. */
  advertise?: string | undefined;
  leafnodePublicKey: string;
  tls: boolean;
}

// --- nats.conf ------------------------------------------------------------------------------------

/** One nats-server's configuration; the StatefulSet's and the tests' servers are rendered from it. */
export interface NatsServerConfigInput {
  /** A literal, or "$POD_NAME" (nats.conf reads environment variables). */
  serverName: string;
  host: string;
  clientPort: number;
  monitorPort: number;
  storeDir: string;
  domain?: string | undefined;
  /** Encrypt the store with the key in this environment variable. */
  encryptionKeyVar?: string | undefined;
  /** The routes and their credentials come from `authInclude`, a file next to nats.conf (clusterAuthConfig()). */
  cluster?: { name: string; port: number; authInclude: string } | undefined;
  relayUser: { publicKey: string; permissions: NatsPermissions };
  /** Public keys of the other sites' leafnode users that may connect here. */
  leafnodeUsers: string[];
  /** Accept leafnode connections on this port. */
  leafnodePort?: number | undefined;
  /** Leafnode URLs this server dials, each a link to one other site, with the seed in `leafnodeSeedVar`. */
  leafnodeRemotes: string[];
  leafnodeSeedVar?: string | undefined;
  /** Certificate for clients and leafnodes, and the CA that signs the other sites' (PEM files). */
  tls?: { certFile: string; keyFile: string; caFile: string } | undefined;
}

const q = (value: string): string => JSON.stringify(value);
const list = (values: string[]): string => `[${values.map(q).join(", ")}]`;

export function natsServerConfig(input: NatsServerConfigInput): string {
  const lines: string[] = [
    "# Rendered by the mxwarden operator (operator/src/render/nats-objects.ts); edits are overwritten.",
    `server_name: ${input.serverName.startsWith("$") ? input.serverName : q(input.serverName)}`,
    `listen: ${q(`${input.host}:${input.clientPort}`)}`,
    `http: ${q(`${input.host}:${input.monitorPort}`)}`,
    // Clients (the relays) move to another server before this one stops, within the pod's grace.
    `lame_duck_duration: "30s"`,
    `lame_duck_grace_period: "10s"`,
    "jetstream {",
    `  store_dir: ${q(input.storeDir)}`,
    // fsync before every acknowledgement: a 250 means the message is on disk on a majority.
    "  sync_interval: always",
  ];
  if (input.domain) lines.push(`  domain: ${q(input.domain)}`);
  if (input.encryptionKeyVar) lines.push("  cipher: chachapoly", `  key: $${input.encryptionKeyVar}`);
  lines.push("}");
  const { publish, subscribe } = input.relayUser.permissions;
  lines.push(
    "accounts {",
    `  ${NATS_ACCOUNT}: {`,
    "    jetstream: enabled",
    "    users: [",
    `      { nkey: ${q(input.relayUser.publicKey)}, permissions: {`,
    `          publish: { allow: ${list(publish.allow)}, deny: ${list(publish.deny)} }`,
    `          subscribe: { allow: ${list(subscribe.allow)} }`,
    "      } }",
    ...input.leafnodeUsers.map((key) => `      { nkey: ${q(key)} }`),
    "    ]",
    "  }",
    "}",
  );
  if (input.tls) lines.push(...tlsBlock(input.tls, ""));
  if (input.cluster) {
    lines.push(
      "cluster {",
      `  name: ${q(input.cluster.name)}`,
      `  listen: ${q(`${input.host}:${input.cluster.port}`)}`,
      `  include ${q(input.cluster.authInclude)}`,
      "}",
    );
  }
  if (input.leafnodePort !== undefined || input.leafnodeRemotes.length > 0) {
    lines.push("leafnodes {");
    if (input.leafnodePort !== undefined) {
      lines.push(`  listen: ${q(`${input.host}:${input.leafnodePort}`)}`);
      if (input.tls) lines.push(...tlsBlock(input.tls, "  "));
    }
    if (input.leafnodeRemotes.length > 0) {
      if (!input.leafnodeSeedVar) throw new Error("leafnode remotes need leafnodeSeedVar");
      lines.push("  remotes: [");
      for (const url of input.leafnodeRemotes) {
        lines.push(`    { urls: [${q(url)}], account: ${NATS_ACCOUNT}, nkey: $${input.leafnodeSeedVar}`);
        if (input.tls) lines.push(`      tls: { ca_file: ${q(input.tls.caFile)} }`);
        lines.push("    }");
      }
      lines.push("  ]");
    }
    lines.push("}");
  }
  return `${lines.join("\n")}\n`;
}

/** The file nats.conf's cluster block includes: the route user, and the routes that log in as it. */
export function clusterAuthConfig(routes: string[], password: string): string {
  const withPassword = routes.map((route) => route.replace("://", `://${ROUTE_USER}:${password}@`));
  return [
    "# Rendered by the mxwarden operator; the route password is secret: this file comes from a Secret.",
    `authorization { user: ${q(ROUTE_USER)}, password: ${q(password)} }`,
    `routes: ${list(withPassword)}`,
    "",
  ].join("\n");
}

/** The route URLs of a site's servers, one stable DNS name each (the headless Service). */
export function siteRoutes(site: RelaySite, namespace: string): string[] {
  const replicas = site.spec.nats.managed?.replicas ?? DEFAULT_NATS_REPLICAS;
  return Array.from({ length: replicas }, (_, i) => `nats-route://${NATS_NAME}-${i}.${NATS_ROUTES_SERVICE}.${namespace}.svc:${NATS_ROUTE_PORT}`);
}

function tlsBlock(tls: { certFile: string; keyFile: string; caFile: string }, indent: string): string[] {
  return [
    `${indent}tls {`,
    `${indent}  cert_file: ${q(tls.certFile)}`,
    `${indent}  key_file: ${q(tls.keyFile)}`,
    `${indent}  ca_file: ${q(tls.caFile)}`,
    `${indent}}`,
  ];
}

// --- leafnode topology -----------------------------------------------------------------------------

/**
 * Whether `self` dials `peer`: exactly one link per pair of sites. The site whose domain sorts first
 * dials the other if that one advertises an address, else the other dials it if it advertises one;
 * with neither advertised the pair has no link.
 */
export function dialsPeer(self: { domain: string; advertise?: string | undefined }, peer: { domain: string; advertise?: string | undefined }): boolean {
  const [first, second] = self.domain < peer.domain ? [self, peer] : [peer, self];
  const dialler = second.advertise ? first : first.advertise ? second : undefined;
  return dialler === self;
}

// --- Kubernetes objects -----------------------------------------------------------------------------

export interface NatsRenderOptions {
  /** Image when spec.nats.managed names none. */
  natsImage: string;
  credentials: NatsCredentials;
  /** The other sites with managed NATS and a JetStream domain. */
  peers: NatsPeer[];
}

function natsLabels(site: RelaySite): Record<string, string> {
  return { "app.kubernetes.io/name": NATS_NAME, "app.kubernetes.io/instance": site.metadata.name };
}

function commonLabels(site: RelaySite): Record<string, string> {
  return {
    ...natsLabels(site),
    "app.kubernetes.io/part-of": "mxwarden",
    "app.kubernetes.io/managed-by": "mxwarden-operator",
    "mxwarden.io/site": site.metadata.name,
  };
}

function managed(site: RelaySite): NonNullable<RelaySite["spec"]["nats"]["managed"]> {
  const spec = site.spec.nats.managed;
  if (!spec) throw new Error(`RelaySite ${site.metadata.name} has no spec.nats.managed`);
  return spec;
}

/** The relays' --nats URL for a managed NATS in `namespace`. */
export function managedNatsUrl(site: RelaySite, namespace: string): string {
  return `${managed(site).tls ? "tls" : "nats"}://${NATS_NAME}.${namespace}.svc:${NATS_CLIENT_PORT}`;
}

/** The nats.conf every server of the site runs (server names come from $POD_NAME). */
export function siteNatsConfig(site: RelaySite, options: NatsRenderOptions): string {
  const spec = managed(site);
  const replicas = spec.replicas ?? DEFAULT_NATS_REPLICAS;
  const domain = site.spec.nats.domain;
  const self = { domain: domain ?? "", advertise: spec.leafnode?.advertise };
  const peers = domain ? options.peers : [];
  const dialled = peers.filter((peer) => dialsPeer(self, peer));
  const dialling = peers.filter((peer) => dialsPeer(peer, self));
  const sites = domain ? { self: domain, peers: options.peers.map((peer) => peer.domain).sort() } : undefined;
  return natsServerConfig({
    serverName: "$POD_NAME",
    host: "0.0.0.0",
    clientPort: NATS_CLIENT_PORT,
    monitorPort: NATS_MONITOR_PORT,
    storeDir: `${DATA_MOUNT}/jetstream`,
    domain,
    encryptionKeyVar: spec.encryption ? ENCRYPTION_KEY_VAR : undefined,
    cluster: replicas > 1 ? { name: `mxwarden-${site.metadata.name}`, port: NATS_ROUTE_PORT, authInclude: CLUSTER_AUTH_FILE } : undefined,
    relayUser: { publicKey: options.credentials.relayPublicKey, permissions: relayNatsPermissions(sites) },
    leafnodeUsers: dialling.map((peer) => peer.leafnodePublicKey),
    leafnodePort: spec.leafnode ? (spec.leafnode.port ?? DEFAULT_LEAFNODE_PORT) : undefined,
    leafnodeRemotes: dialled.map((peer) => `${peer.tls ? "tls" : "nats-leaf"}://${peer.advertise}`),
    leafnodeSeedVar: dialled.length > 0 ? LEAFNODE_SEED_VAR : undefined,
    tls: spec.tls ? { certFile: `${TLS_MOUNT}/tls.crt`, keyFile: `${TLS_MOUNT}/tls.key`, caFile: `${TLS_MOUNT}/ca.crt` } : undefined,
  });
}

const base64 = (text: string): string => Buffer.from(text, "utf8").toString("base64");

/**
 * Ingress to the servers: clients only from the site's relays (`relaySelector`; mxwarden-queue runs
 * in their pods), routes only between the servers, the monitor port (probes, Prometheus) from the
 * cluster, and the leafnode port, when the site takes links, from anywhere: the other sites dial
 * in from other networks, and their nkey (and TLS) guard it.
 */
function natsNetworkPolicy(
  namespace: string,
  labels: Record<string, string>,
  selector: Record<string, string>,
  relaySelector: Record<string, string>,
  leafnodePort: number | undefined,
): KubeObject {
  const tcp = (port: number): { protocol: string; port: number } => ({ protocol: "TCP", port });
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: NATS_NAME, namespace, labels },
    spec: {
      podSelector: { matchLabels: selector },
      // Ingress only: the servers dial each other's routes and the other sites' leafnodes.
      policyTypes: ["Ingress"],
      ingress: [
        { from: [{ podSelector: { matchLabels: relaySelector } }], ports: [tcp(NATS_CLIENT_PORT)] },
        { from: [{ podSelector: { matchLabels: selector } }], ports: [tcp(NATS_ROUTE_PORT)] },
        { from: [{ namespaceSelector: {} }], ports: [tcp(NATS_MONITOR_PORT)] },
        ...(leafnodePort === undefined ? [] : [{ ports: [tcp(leafnodePort)] }]),
      ],
    },
  };
}

/** The site's NATS; `relaySelector` picks the only pods that may be its clients. */
export function renderNats(site: RelaySite, namespace: string, options: NatsRenderOptions, relaySelector: Record<string, string>): KubeObject[] {
  const spec = managed(site);
  const labels = commonLabels(site);
  const selector = natsLabels(site);
  const replicas = spec.replicas ?? DEFAULT_NATS_REPLICAS;
  const config = siteNatsConfig(site, options);
  const clusterAuth = clusterAuthConfig(siteRoutes(site, namespace), options.credentials.routePassword);
  const leafnodePort = spec.leafnode ? (spec.leafnode.port ?? DEFAULT_LEAFNODE_PORT) : undefined;
  const { credentials } = options;
  const secretEnv = (name: string, key: string): unknown => ({ name, valueFrom: { secretKeyRef: { name: NATS_SERVER_SECRET, key } } });
  const env: unknown[] = [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }];
  if (config.includes(`$${LEAFNODE_SEED_VAR}`)) env.push(secretEnv(LEAFNODE_SEED_VAR, LEAFNODE_SEED_KEY));
  if (spec.encryption) env.push(secretEnv(ENCRYPTION_KEY_VAR, ENCRYPTION_KEY_KEY));
  // nats.conf from the ConfigMap and, next to it, the routes' credentials from the Secret.
  const volumes: unknown[] = [
    {
      name: "config",
      projected: {
        sources: [
          { configMap: { name: NATS_NAME, items: [{ key: "nats.conf", path: "nats.conf" }] } },
          { secret: { name: NATS_SERVER_SECRET, items: [{ key: CLUSTER_AUTH_FILE, path: CLUSTER_AUTH_FILE }] } },
        ],
      },
    },
  ];
  const mounts: unknown[] = [
    { name: "config", mountPath: CONFIG_MOUNT, readOnly: true },
    { name: "data", mountPath: DATA_MOUNT },
  ];
  if (spec.tls) {
    volumes.push({ name: "tls", secret: { secretName: spec.tls.secretName } });
    mounts.push({ name: "tls", mountPath: TLS_MOUNT, readOnly: true });
  }
  const ports: unknown[] = [
    { name: "client", containerPort: NATS_CLIENT_PORT, protocol: "TCP" },
    { name: "cluster", containerPort: NATS_ROUTE_PORT, protocol: "TCP" },
    { name: "monitor", containerPort: NATS_MONITOR_PORT, protocol: "TCP" },
  ];
  if (leafnodePort !== undefined) ports.push({ name: "leafnode", containerPort: leafnodePort, protocol: "TCP" });
  // Only that JetStream runs: a server alone (the first of a new site, or one restarting while the
  // others are down) is never "current", and waiting for it would keep the StatefulSet from starting.
  const health = { httpGet: { path: "/healthz?js-enabled-only=true", port: "monitor" } };
  const objects: KubeObject[] = [
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: NATS_SERVER_SECRET, namespace, labels },
      type: "Opaque",
      data: {
        [LEAFNODE_SEED_KEY]: base64(credentials.leafnodeSeed),
        [ENCRYPTION_KEY_KEY]: base64(credentials.encryptionKey),
        [CLUSTER_AUTH_FILE]: base64(clusterAuth),
      },
    },
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: NATS_RELAY_SECRET, namespace, labels },
      type: "Opaque",
      data: { [RELAY_SEED_KEY]: base64(credentials.relaySeed) },
    },
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: NATS_NAME, namespace, labels }, data: { "nats.conf": config } },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: NATS_ROUTES_SERVICE, namespace, labels },
      spec: {
        clusterIP: "None",
        // Routes form before the servers are ready: readiness needs JetStream, which needs the routes.
        publishNotReadyAddresses: true,
        selector,
        ports: [{ name: "cluster", port: NATS_ROUTE_PORT, targetPort: "cluster", protocol: "TCP" }],
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: NATS_NAME, namespace, labels },
      spec: { type: "ClusterIP", selector, ports: [{ name: "client", port: NATS_CLIENT_PORT, targetPort: "client", protocol: "TCP" }] },
    },
    {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: NATS_NAME, namespace, labels },
      spec: {
        serviceName: NATS_ROUTES_SERVICE,
        replicas,
        // All at once: a JetStream cluster needs a majority up before any server is fully healthy.
        podManagementPolicy: "Parallel",
        selector: { matchLabels: selector },
        updateStrategy: { type: "RollingUpdate" },
        template: {
          metadata: {
            labels,
            // nats.conf is read at start: a changed configuration rolls the servers one at a time.
            annotations: { "mxwarden.io/config-hash": createHash("sha256").update(config).update(clusterAuth).digest("hex").slice(0, 16) },
          },
          spec: {
            terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
            automountServiceAccountToken: false,
            securityContext: RESTRICTED_POD_SECURITY,
            topologySpreadConstraints: spreadOverZonesAndNodes(selector),
            containers: [
              {
                name: "nats",
                image: spec.image ?? options.natsImage,
                args: ["-c", `${CONFIG_MOUNT}/nats.conf`],
                env,
                ports,
                readinessProbe: { ...health, periodSeconds: 2, failureThreshold: 3 },
                livenessProbe: { ...health, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 6 },
                resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } },
                securityContext: RESTRICTED_CONTAINER_SECURITY,
                volumeMounts: mounts,
              },
            ],
            volumes,
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: "data", labels: selector },
            spec: {
              accessModes: ["ReadWriteOnce"],
              ...(spec.storage?.storageClassName ? { storageClassName: spec.storage.storageClassName } : {}),
              resources: { requests: { storage: spec.storage?.size ?? DEFAULT_NATS_STORAGE } },
            },
          },
        ],
      },
    },
    {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: NATS_NAME, namespace, labels },
      // One server at a time: the other two keep the streams' quorum.
      spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
    },
    natsNetworkPolicy(namespace, labels, selector, relaySelector, leafnodePort),
  ];
  if (spec.leafnode && leafnodePort !== undefined) {
    const type = spec.leafnode.serviceType ?? "ClusterIP";
    objects.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: NATS_LEAFNODE_SERVICE, namespace, labels },
      spec: {
        type,
        selector,
        ports: [
          {
            name: "leafnode",
            port: leafnodePort,
            targetPort: "leafnode",
            protocol: "TCP",
            ...(type === "NodePort" && spec.leafnode.nodePort ? { nodePort: spec.leafnode.nodePort } : {}),
          },
        ],
      },
    });
  }
  return objects;
}

/** Names of everything renderNats may create, for the site's clean-up (PVCs stay: they hold the queue). */
export const NATS_OBJECTS: [kind: string, name: string][] = [
  ["StatefulSet", NATS_NAME],
  ["Service", NATS_NAME],
  ["Service", NATS_ROUTES_SERVICE],
  ["Service", NATS_LEAFNODE_SERVICE],
  ["PodDisruptionBudget", NATS_NAME],
  ["NetworkPolicy", NATS_NAME],
  ["ConfigMap", NATS_NAME],
  ["Secret", NATS_SERVER_SECRET],
  ["Secret", NATS_RELAY_SECRET],
];
