// Manifests of the end-to-end path on the local cluster (test/integration/cluster-e2e.test.ts),
// written as a user writes them for kubectl: a single-server NATS JetStream for a site, and the
// site and domain of docs/install.md. docs/install.md shows the same YAML.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./workspace.ts";

/** The chart's appVersion: the tag `make images` gives the relay and operator images. */
export function chartAppVersion(): string {
  const match = /^appVersion:\s*"?([^"\s]+)"?\s*$/m.exec(readFileSync(join(repoRoot, "charts/mxwarden/Chart.yaml"), "utf8"));
  if (!match?.[1]) throw new Error("no appVersion in charts/mxwarden/Chart.yaml");
  return match[1];
}

/** The NATS image `make images` builds from the pinned nats-server (NATS_SERVER_VERSION in the Makefile). */
export function natsImage(): string {
  const match = /^NATS_SERVER_VERSION\s*:=\s*(\S+)/m.exec(readFileSync(join(repoRoot, "Makefile"), "utf8"));
  if (!match?.[1]) throw new Error("no NATS_SERVER_VERSION in the Makefile");
  return `localhost/mxwarden/nats-server:${match[1]}`;
}

export function projectImages(): string[] {
  const tag = chartAppVersion();
  return [`ghcr.io/mxwarden/mxwarden-relay:${tag}`, `ghcr.io/mxwarden/mxwarden-operator:${tag}`, natsImage()];
}

/**
 * One nats-server with JetStream (domain `jsDomain`, fsync before every ack) behind the Service
 * `nats`, restricted-Pod-Security compliant like the relays next to it. A stand-in for the three
 * servers a production site runs.
 */
export function singleNatsManifest(namespace: string, jsDomain: string, image = natsImage()): string {
  return `apiVersion: v1
kind: ConfigMap
metadata:
  name: nats
  namespace: ${namespace}
data:
  nats.conf: |
    server_name: nats-0
    port: 4222
    http_port: 8222
    jetstream {
      store_dir: /data
      domain: ${jsDomain}
      sync_interval: always
    }
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nats
  namespace: ${namespace}
spec:
  serviceName: nats
  replicas: 1
  selector:
    matchLabels: { app.kubernetes.io/name: nats }
  template:
    metadata:
      labels: { app.kubernetes.io/name: nats }
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile: { type: RuntimeDefault }
      containers:
        - name: nats
          image: ${image}
          imagePullPolicy: IfNotPresent
          args: ["-c", "/etc/nats/nats.conf"]
          ports:
            - { name: client, containerPort: 4222 }
            - { name: monitor, containerPort: 8222 }
          readinessProbe:
            httpGet: { path: "/healthz?js-enabled-only=true", port: monitor }
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { drop: [ALL] }
          volumeMounts:
            - { name: config, mountPath: /etc/nats }
            - { name: data, mountPath: /data }
      volumes:
        - name: config
          configMap: { name: nats }
        - name: data
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: nats
  namespace: ${namespace}
spec:
  selector: { app.kubernetes.io/name: nats }
  ports:
    - { name: client, port: 4222, targetPort: client }
`;
}

/** docs/install.md's site on one node: SMTP on a NodePort, one NATS server, so one stream replica. */
export function relaySiteManifest(): string {
  return `apiVersion: mxwarden.io/v1alpha1
kind: RelaySite
metadata:
  name: site-a
spec:
  hostname: mx-a.backup.example.net
  replicas: 2
  smtp:
    serviceType: NodePort
    externalTrafficPolicy: Local
  tls:
    secretName: mx-a-tls
  nats:
    url: nats://nats.mxwarden:4222
    domain: site-a
    streamReplicas: 1
`;
}

/** examples/relaydomain.yaml with the primary at `host`:`port`. */
export function relayDomainManifest(host: string, port: number, maxMessageSize = "50Mi"): string {
  return readFileSync(join(repoRoot, "examples/relaydomain.yaml"), "utf8")
    .replace(/- host: mail\.example\.com\n(\s+)port: 25/, `- host: ${host}\n$1port: ${port}`)
    .replace(/maxMessageSize: \S+/, `maxMessageSize: ${maxMessageSize}`);
}
