// clamd when the operator runs it for a site (RelaySite spec.clamd.managed). The image is the stock
// docker.io/clamav/clamav by default, but its entrypoint script is not used: the pod runs clamd
// (and freshclam) directly with a configuration of our own, as the image's clamav user, on a
// read-only root filesystem. Everything clamd or freshclam writes is an emptyDir: the database
// directory (unless the signatures come from a ConfigMap or a claim) and /tmp, where clamd spools
// each stream it scans.

import { DEFAULT_CLAMD_REPLICAS, DEFAULT_FRESHCLAM_CHECKS, MAX_MESSAGE_BYTES_LIMIT, type RelaySite } from "#api";
import { filterEngineObjects, mergedResources, renderFilterEngine, type FilterEngine } from "./filter-engine.ts";
import { RESTRICTED_CONTAINER_SECURITY, type KubeObject } from "./kube-object.ts";

export const CLAMD_NAME = "mxwarden-clamd";
export const CLAMD_PORT = 3310;
/** The stock image's service user (clamav, uid 100, group clamav, gid 101). */
export const CLAMD_USER = 100;
export const CLAMD_GROUP = 101;
const CONFIG_MOUNT = "/etc/mxwarden/clamd";
/** The stock image's database directory, where it keeps the signatures it ships with. */
const DATABASE_DIR = "/var/lib/clamav";
const SEED_MOUNT = "/seed";
/** Streams in flight per pod; each is spooled to /tmp, at most the largest message a domain may accept. */
const MAX_THREADS = 8;
const MIB = 1024 * 1024;

type ManagedClamd = NonNullable<NonNullable<RelaySite["spec"]["clamd"]>["managed"]>;
type SignatureSource = "freshclam" | "configMap" | "persistentVolumeClaim";

function managed(site: RelaySite): ManagedClamd {
  const spec = site.spec.clamd?.managed;
  if (!spec) throw new Error(`RelaySite ${site.metadata.name} has no spec.clamd.managed`);
  return spec;
}

function signatureSource(spec: ManagedClamd): SignatureSource {
  if (spec.signatures?.configMap) return "configMap";
  if (spec.signatures?.persistentVolumeClaim) return "persistentVolumeClaim";
  return "freshclam";
}

/** The relays' --clamd for a managed clamd in `namespace`. */
export function managedClamdAddress(namespace: string): string {
  return `${CLAMD_NAME}.${namespace}.svc:${CLAMD_PORT}`;
}

/** clamd.conf: TCP only (no local socket, no pid or log file: nothing on the read-only root). */
export function clamdConfig(): string {
  const maxStream = Math.ceil(MAX_MESSAGE_BYTES_LIMIT / MIB);
  return [
    "# Rendered by the mxwarden operator (operator/src/render/clamd-objects.ts); edits are overwritten.",
    "Foreground yes",
    `TCPSocket ${CLAMD_PORT}`,
    `DatabaseDirectory ${DATABASE_DIR}`,
    "TemporaryDirectory /tmp",
    // Finds new or changed databases (freshclam's, an updated ConfigMap) and reloads them.
    "SelfCheck 300",
    "LogTime yes",
    `MaxThreads ${MAX_THREADS}`,
    // The largest message any RelayDomain may accept (maxScanSize is bounded by it), scanned whole.
    `StreamMaxLength ${maxStream}M`,
    `MaxFileSize ${maxStream}M`,
    `MaxScanSize ${2 * maxStream}M`,
    "ScanMail yes",
    "ScanArchive yes",
    "",
  ].join("\n");
}

export function freshclamConfig(spec: ManagedClamd): string {
  const freshclam = spec.signatures?.freshclam;
  return [
    "# Rendered by the mxwarden operator (operator/src/render/clamd-objects.ts); edits are overwritten.",
    "Foreground yes",
    `DatabaseDirectory ${DATABASE_DIR}`,
    `Checks ${freshclam?.checks ?? DEFAULT_FRESHCLAM_CHECKS}`,
    "LogTime yes",
    freshclam?.privateMirror ? `PrivateMirror ${freshclam.privateMirror}` : "DatabaseMirror database.clamav.net",
    "",
  ].join("\n");
}

// The full signature set takes about 1.2 GiB once loaded, and twice that while clamd builds the
// new engine beside the old one after an update (ClamAV's Docker documentation).
const FULL_SET_RESOURCES = { requests: { cpu: "250m", memory: "1536Mi" }, limits: { memory: "3Gi" } };
const OWN_SIGNATURES_RESOURCES = { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "1Gi" } };
// freshclam loads each downloaded database once to test it before clamd sees it.
const FRESHCLAM_RESOURCES = { requests: { cpu: "10m", memory: "64Mi" }, limits: { memory: "2Gi" } };

/**
 * Copies the databases the image ships with (the stock image's non-_base tags carry a set) into the
 * emptyDir, then lets freshclam bring them up to date once. A pod whose mirror cannot be reached
 * starts with the image's set, if it has one.
 */
const SEED_SCRIPT = [
  `for f in ${DATABASE_DIR}/*.cvd ${DATABASE_DIR}/*.cld; do if [ -e "$f" ]; then cp "$f" ${SEED_MOUNT}/; fi; done`,
  `freshclam --foreground --stdout --config-file=${CONFIG_MOUNT}/freshclam.conf --datadir=${SEED_MOUNT} || ls ${SEED_MOUNT}/main.cvd ${SEED_MOUNT}/main.cld 2>/dev/null | grep -q main`,
].join("\n");

export function renderClamd(site: RelaySite, namespace: string, image: string, relaySelector: Record<string, string>): KubeObject[] {
  const spec = managed(site);
  const source = signatureSource(spec);
  const ownImage = spec.image ?? image;
  const config: Record<string, string> = { "clamd.conf": clamdConfig() };
  if (source === "freshclam") config["freshclam.conf"] = freshclamConfig(spec);
  const database =
    source === "configMap"
      ? { name: "database", configMap: { name: spec.signatures?.configMap?.name } }
      : source === "persistentVolumeClaim"
        ? { name: "database", persistentVolumeClaim: { claimName: spec.signatures?.persistentVolumeClaim?.claimName, readOnly: true } }
        : { name: "database", emptyDir: { sizeLimit: "2Gi" } };
  const configMount = { name: "config", mountPath: CONFIG_MOUNT, readOnly: true };
  const databaseMount = { name: "database", mountPath: DATABASE_DIR, readOnly: source !== "freshclam" };
  const tcp = { tcpSocket: { port: "clamd" } };
  const containers: unknown[] = [
    {
      name: "clamd",
      image: ownImage,
      command: ["clamd", "--foreground", `--config-file=${CONFIG_MOUNT}/clamd.conf`],
      ports: [{ name: "clamd", containerPort: CLAMD_PORT, protocol: "TCP" }],
      // clamd opens its port only once the databases are loaded: a connect is a fair readiness test.
      startupProbe: { ...tcp, periodSeconds: 5, failureThreshold: 120 },
      readinessProbe: { ...tcp, periodSeconds: 10, failureThreshold: 3 },
      livenessProbe: { ...tcp, periodSeconds: 20, failureThreshold: 6 },
      resources: mergedResources(source === "configMap" ? OWN_SIGNATURES_RESOURCES : FULL_SET_RESOURCES, spec.resources),
      securityContext: RESTRICTED_CONTAINER_SECURITY,
      volumeMounts: [configMount, databaseMount, { name: "tmp", mountPath: "/tmp" }],
    },
  ];
  if (source === "freshclam") {
    containers.push({
      name: "freshclam",
      image: ownImage,
      command: ["freshclam", "--daemon", "--foreground", "--stdout", `--config-file=${CONFIG_MOUNT}/freshclam.conf`],
      resources: FRESHCLAM_RESOURCES,
      securityContext: RESTRICTED_CONTAINER_SECURITY,
      volumeMounts: [configMount, databaseMount],
    });
  }
  const engine: FilterEngine = {
    name: CLAMD_NAME,
    port: { name: "clamd", number: CLAMD_PORT },
    user: CLAMD_USER,
    group: CLAMD_GROUP,
    replicas: spec.replicas ?? DEFAULT_CLAMD_REPLICAS,
    config,
    terminationGracePeriodSeconds: 30,
    pod: {
      ...(source === "freshclam"
        ? {
            initContainers: [
              {
                name: "seed-signatures",
                image: ownImage,
                command: ["sh", "-c", SEED_SCRIPT],
                resources: FRESHCLAM_RESOURCES,
                securityContext: RESTRICTED_CONTAINER_SECURITY,
                volumeMounts: [configMount, { name: "database", mountPath: SEED_MOUNT }],
              },
            ],
          }
        : {}),
      containers,
      volumes: [
        { name: "config", configMap: { name: CLAMD_NAME } },
        database,
        { name: "tmp", emptyDir: { sizeLimit: `${MAX_THREADS * Math.ceil(MAX_MESSAGE_BYTES_LIMIT / MIB) + 256}Mi` } },
      ],
    },
  };
  return renderFilterEngine(site, namespace, engine, relaySelector);
}

export const CLAMD_OBJECTS = filterEngineObjects(CLAMD_NAME);
