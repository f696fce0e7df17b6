// Manifests of the end-to-end path on the local cluster (test/integration/cluster-e2e.test.ts),
// written as a user writes them for kubectl: the site (with the NATS the operator runs for it) and
// the domain of docs/install.md, which shows the same YAML, and the local volumes the NATS claims.

import { chownSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CHART_DIR } from "./helm.ts";
import { selfSigned } from "./pki.ts";
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

/** A variable of the Makefile, such as the tag `make images` gives an image. */
function makefileVariable(name: string): string {
  const match = new RegExp(`^${name}\\s*:=\\s*(\\S+)`, "m").exec(readFileSync(join(repoRoot, "Makefile"), "utf8"));
  if (!match?.[1]) throw new Error(`no ${name} in the Makefile`);
  return match[1];
}

/** The clamd and rspamd images `make images` assembles from Debian's packages (CLAMD_IMAGE, RSPAMD_IMAGE). */
export function filterImages(): { clamd: string; rspamd: string } {
  return { clamd: makefileVariable("CLAMD_IMAGE"), rspamd: makefileVariable("RSPAMD_IMAGE") };
}

/** `helm install` of the chart as the cluster tests do it: the local NATS image, and `values` set on top. */
export function chartInstallArgs(namespace: string, values: Record<string, string> = {}): string[] {
  const sets = Object.entries({ natsImage: natsImage(), ...values }).flatMap(([key, value]) => ["--set", `${key}=${value}`]);
  return ["install", "mxwarden", CHART_DIR, "-n", namespace, "--create-namespace", ...sets, "--wait", "--timeout", "5m"];
}

export function projectImages(): string[] {
  const tag = chartAppVersion();
  return [`ghcr.io/mxwarden/mxwarden-relay:${tag}`, `ghcr.io/mxwarden/mxwarden-operator:${tag}`, natsImage()];
}

/** The StorageClass name of the local volumes below; the RelaySite's managed NATS claims them. */
export const LOCAL_STORAGE_CLASS = "mxwarden-local";

/**
 * `count` PersistentVolumes on the node's own disk (hostPath directories under `root`, which the
 * caller creates, owned by uid 10001): what a StorageClass's provisioner would give the managed
 * NATS's claims on a cluster that has one. The one node has none.
 */
export function localVolumesManifest(root: string, count: number, size = "2Gi"): string {
  return Array.from(
    { length: count },
    (_, i) => `apiVersion: v1
kind: PersistentVolume
metadata:
  name: mxwarden-local-${i}
spec:
  capacity: { storage: ${size} }
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ${LOCAL_STORAGE_CLASS}
  hostPath: { path: ${root}/${i}, type: Directory }
`,
  ).join("---\n");
}

/**
 * docs/install.md's site on one node: SMTP on a NodePort, and its NATS run by the operator: three
 * servers (all on the one node here), each with a claim on the local volumes.
 */
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
    domain: site-a
    managed:
      replicas: 3
      storage:
        size: 1Gi
        storageClassName: ${LOCAL_STORAGE_CLASS}
      encryption: true
`;
}

/**
 * What relaySiteManifest() needs before it is applied, in the relays' namespace `namespace` (which
 * exists): the site's TLS Secret (self-signed, under `dir`) and local volumes for its three NATS
 * servers' claims, what a StorageClass would provision elsewhere.
 */
export function prepareSiteNamespace(kubectl: (args: string[], input?: string) => string, namespace: string, dir: string): void {
  selfSigned(dir, "tls", "/CN=mx-a.backup.example.net", 2, ["subjectAltName=DNS:mx-a.backup.example.net"]);
  kubectl(["-n", namespace, "create", "secret", "tls", "mx-a-tls", `--cert=${join(dir, "tls.crt")}`, `--key=${join(dir, "tls.key")}`]);
  const volumes = join(dir, "nats-volumes");
  for (let i = 0; i < 3; i++) {
    mkdirSync(join(volumes, String(i)), { recursive: true });
    chownSync(join(volumes, String(i)), 10001, 10001);
  }
  kubectl(["apply", "-f", "-"], localVolumesManifest(volumes, 3));
}

/** examples/relaydomain.yaml with the primary at `host`:`port`. */
export function relayDomainManifest(host: string, port: number, maxMessageSize = "50Mi"): string {
  return readFileSync(join(repoRoot, "examples/relaydomain.yaml"), "utf8")
    .replace(/- host: mail\.example\.com\n(\s+)port: 25/, `- host: ${host}\n$1port: ${port}`)
    .replace(/maxMessageSize: \S+/, `maxMessageSize: ${maxMessageSize}`);
}
