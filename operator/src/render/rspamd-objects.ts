// rspamd when the operator runs it for a site (RelaySite spec.rspamd.managed). The stock image
// (docker.io/rspamd/rspamd) keeps its rules in its compiled CONFDIR and leaves LOCAL_CONFDIR for
// local settings; the pod starts rspamd with a main file of our own that includes the image's
// rules, so the same file serves the stock image and Debian's package: one normal worker on
// 11333 (what the relays call: /checkv2, and /ping for the probes), logging to the console, and
// local.d from the ConfigMap. No controller, no proxy, no Redis: the modules that need Redis
// (Bayes, rate limits, greylisting, reputation) stay off; greylisting is the relays' own filter.

import { DEFAULT_RSPAMD_REPLICAS, DEFAULT_RSPAMD_WORKERS, type RelaySite } from "#api";
import { filterEngineObjects, mergedResources, renderFilterEngine, type FilterEngine } from "./filter-engine.ts";
import { RESTRICTED_CONTAINER_SECURITY, type KubeObject } from "./kube-object.ts";

export const RSPAMD_NAME = "mxwarden-rspamd";
export const RSPAMD_PORT = 11333;
/** The stock image's service user (_rspamd, uid and gid 11333). */
export const RSPAMD_USER = 11333;
export const RSPAMD_GROUP = 11333;
const CONFIG_MOUNT = "/etc/mxwarden/rspamd";

type ManagedRspamd = NonNullable<NonNullable<RelaySite["spec"]["rspamd"]>["managed"]>;

function managed(site: RelaySite): ManagedRspamd {
  const spec = site.spec.rspamd?.managed;
  if (!spec) throw new Error(`RelaySite ${site.metadata.name} has no spec.rspamd.managed`);
  return spec;
}

/** The relays' --rspamd for a managed rspamd in `namespace`. */
export function managedRspamdUrl(namespace: string): string {
  return `http://${RSPAMD_NAME}.${namespace}.svc:${RSPAMD_PORT}`;
}

/** The main configuration file: the image's rules ($CONFDIR), our worker and logging. */
export function rspamdConfig(workers: number): string {
  return [
    "# Rendered by the mxwarden operator (operator/src/render/rspamd-objects.ts); edits are overwritten.",
    '.include "$CONFDIR/common.conf"',
    "options {",
    '  .include "$CONFDIR/options.inc"',
    '  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"',
    "}",
    "logging {",
    '  type = "console";',
    '  .include "$CONFDIR/logging.inc"',
    '  level = "notice";',
    "}",
    'worker "normal" {',
    `  bind_socket = "*:${RSPAMD_PORT}";`,
    '  .include "$CONFDIR/worker-normal.inc"',
    `  count = ${workers};`,
    "}",
    "",
  ].join("\n");
}

/** local.d/options.inc: the site's resolver, when it names one (public resolvers are refused by the big DNS lists). */
export function rspamdOptions(resolver: string | undefined): string {
  return resolver ? `dns { nameserver = [${JSON.stringify(resolver)}]; }\n` : "";
}

const DEFAULT_RESOURCES = { requests: { cpu: "250m", memory: "512Mi" }, limits: { memory: "1Gi" } };

export function renderRspamd(site: RelaySite, namespace: string, image: string, relaySelector: Record<string, string>): KubeObject[] {
  const spec = managed(site);
  const ping = { httpGet: { path: "/ping", port: "rspamd" } };
  const engine: FilterEngine = {
    name: RSPAMD_NAME,
    port: { name: "rspamd", number: RSPAMD_PORT },
    user: RSPAMD_USER,
    group: RSPAMD_GROUP,
    replicas: spec.replicas ?? DEFAULT_RSPAMD_REPLICAS,
    config: { "rspamd.conf": rspamdConfig(spec.workers ?? DEFAULT_RSPAMD_WORKERS), "options.inc": rspamdOptions(site.spec.resolver) },
    terminationGracePeriodSeconds: 30,
    pod: {
      containers: [
        {
          name: "rspamd",
          image: spec.image ?? image,
          // CONFDIR stays the image's own (its rules); only LOCAL_CONFDIR is ours.
          command: ["rspamd", "-f", "-c", `${CONFIG_MOUNT}/rspamd.conf`, "--var", `LOCAL_CONFDIR=${CONFIG_MOUNT}`],
          ports: [{ name: "rspamd", containerPort: RSPAMD_PORT, protocol: "TCP" }],
          // rspamd compiles its rules before it listens: tens of seconds on a small node.
          startupProbe: { ...ping, periodSeconds: 5, failureThreshold: 60 },
          readinessProbe: { ...ping, periodSeconds: 10, failureThreshold: 3 },
          livenessProbe: { ...ping, periodSeconds: 20, failureThreshold: 6 },
          resources: mergedResources(DEFAULT_RESOURCES, spec.resources),
          securityContext: RESTRICTED_CONTAINER_SECURITY,
          volumeMounts: [
            { name: "config", mountPath: CONFIG_MOUNT, readOnly: true },
            // DBDIR and RUNDIR as both the stock image and Debian's package compile them in.
            { name: "data", mountPath: "/var/lib/rspamd" },
            { name: "run", mountPath: "/run/rspamd" },
            { name: "tmp", mountPath: "/tmp" },
          ],
        },
      ],
      volumes: [
        {
          name: "config",
          configMap: {
            name: RSPAMD_NAME,
            items: [
              { key: "rspamd.conf", path: "rspamd.conf" },
              { key: "options.inc", path: "local.d/options.inc" },
            ],
          },
        },
        { name: "data", emptyDir: { sizeLimit: "1Gi" } },
        { name: "run", emptyDir: { sizeLimit: "16Mi" } },
        { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
      ],
    },
  };
  return renderFilterEngine(site, namespace, engine, relaySelector);
}

export const RSPAMD_OBJECTS = filterEngineObjects(RSPAMD_NAME);
