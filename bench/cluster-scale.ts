// Provider scale on the real single-node cluster (issue 15, item 6): N RelayDomains (default
// 10,000; SCALE_DOMAINS changes it) applied with kubectl, reconciled by the operator running as a
// pod (helm install of charts/mxwarden), rendered into sharded ConfigMaps, served by the relay
// pods, and every RelayDomain's Ready condition True. Then one RelayDomain among them changes, five
// times: apply → every relay serves it, and apply → that RelayDomain Ready with the new
// observedGeneration. The goal is under 5 s for the latter.
//
// The domains go in as a platform team would push a generated inventory: multi-document files of
// CHUNK RelayDomains each, `kubectl apply --server-side`, two files at a time.
//
// Exits non-zero only on errors (a domain never Ready, a change never served), not on a figure that
// misses its goal. Needs root and the images of `make images` (`make bench-scale`).

import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DOMAIN_CONFIG_LABEL } from "../operator/src/render/domain-config.ts";
import { STATUS_CONFIGMAP } from "../operator/src/render/site-objects.ts";
import { OPERATOR_NS, seconds } from "../test/harness/cluster-session.ts";
import { KubeNode } from "../test/harness/kube-node.ts";
import { chartInstallArgs, prepareSiteNamespace, projectImages, relaySiteManifest } from "../test/harness/cluster-manifests.ts";
import { HELM, KUBECTL, run } from "../test/harness/helm.ts";
import { eventually, tempDir } from "../test/harness/workspace.ts";
import { podUsage } from "./pod-usage.ts";
import { median } from "./report.ts";

const DOMAINS = Number(process.env.SCALE_DOMAINS ?? 10_000);
const CHANGES = 5;
const GOAL_SECONDS = 5;
/** RelayDomains per multi-document file, and files applied at once. */
const CHUNK = 1000;
const PARALLEL_APPLIES = 2;
const SITE_NS = "mxwarden";
const TENANTS_NS = "tenants";
/** How long the whole set may take to be served and Ready before the run counts as failed. */
const SETTLE_TIMEOUT_MS = 30 * 60_000;
const CHANGE_TIMEOUT_MS = 120_000;

interface Pod {
  metadata: { name: string; uid: string };
  status: { podIP?: string; containerStatuses?: Array<{ restartCount: number; lastState?: { terminated?: { reason?: string } } }> };
}

const name = (i: number): string => `d${String(i).padStart(5, "0")}`;

/** One tenant's RelayDomain: the fields a customer domain needs, and a size that the changes bump. */
function domainManifest(i: number, maxMessageSizeMi = 50): string {
  return `apiVersion: mxwarden.io/v1alpha1
kind: RelayDomain
metadata:
  name: ${name(i)}
  namespace: ${TENANTS_NS}
spec:
  domain: ${name(i)}.customers.example.net
  primary:
    hosts:
      - host: mx.${name(i)}.customers.example.net
        port: 25
  maxMessageSize: ${maxMessageSizeMi}Mi
`;
}

const node = new KubeNode({ log: (line) => console.log(`# cluster: ${line}`) });
const work = tempDir("cluster-scale");
const figures: Array<[string, string]> = [];
const errors: string[] = [];
const figure = (label: string, value: string | number, unit = ""): void => {
  figures.push([label, `${value}${unit ? ` ${unit}` : ""}`]);
  console.log(`# ${label}: ${value}${unit ? ` ${unit}` : ""}`);
};

const kubectl = (args: string[], input?: string): string => node.kubectl(args, input === undefined ? {} : { input });
const json = <T>(args: string[]): T => JSON.parse(kubectl([...args, "-o", "json"])) as T;
const pods = (namespace: string, selector: string): Pod[] => json<{ items: Pod[] }>(["-n", namespace, "get", "pods", "-l", selector]).items;
const relayPods = (): Pod[] => pods(SITE_NS, "app.kubernetes.io/name=mxwarden-relay");

/** A gauge of a relay's /metrics (the pod IPs are reachable from the host, the node's bridge). */
async function relayGauge(pod: Pod, metric: string): Promise<number> {
  const text = await (await fetch(`http://${pod.status.podIP}:9090/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  return Number(new RegExp(`^${metric} (\\d+)`, "m").exec(text)?.[1] ?? -1);
}

/** Polls every relay until `reached` holds for each; the seconds after `since` at which the first and the last did. */
async function untilEveryRelay(what: string, relays: Pod[], reached: (pod: Pod) => Promise<boolean>, since: number, timeoutMs: number, intervalMs: number) {
  const at: Array<number | undefined> = relays.map(() => undefined);
  await eventually(
    what,
    async () => {
      for (const [i, pod] of relays.entries()) if (at[i] === undefined && (await reached(pod).catch(() => false))) at[i] = seconds(Date.now() - since);
      return at.every((t) => t !== undefined);
    },
    timeoutMs,
    intervalMs,
  );
  const times = at as number[];
  return { first: Math.min(...times), last: Math.max(...times) };
}

interface DomainState {
  generation: number;
  observed: number;
  ready: string;
}

/** Every RelayDomain of the tenants' namespace: generation, observedGeneration and Ready, by name. */
async function domainStates(): Promise<Map<string, DomainState>> {
  const out = await node.kubectlAsync(
    [
      "-n",
      TENANTS_NS,
      "get",
      "relaydomains",
      "-o",
      'jsonpath={range .items[*]}{.metadata.name} {.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
    ],
    300_000,
  );
  const states = new Map<string, DomainState>();
  for (const line of out.split("\n").filter(Boolean)) {
    const [domain = "", generation = "0", observed = "0", ready = ""] = line.split(" ");
    states.set(domain, { generation: Number(generation), observed: Number(observed) || 0, ready });
  }
  return states;
}

/** `kubectl get -w` on one RelayDomain: resolves when it is Ready at `generation` (time of the event that said so). */
function watchReady(domain: string, generation: number): { ready: Promise<number>; stop(): void } {
  const child: ChildProcess = spawn(
    KUBECTL,
    [
      "--kubeconfig",
      node.kubeconfigPath,
      "-n",
      TENANTS_NS,
      "get",
      "relaydomain",
      domain,
      "--watch",
      "-o",
      'jsonpath={.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].observedGeneration}{"\\n"}',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const ready = new Promise<number>((resolve) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const [observed, status, conditionGeneration] = buffered.slice(0, nl).split(" ");
        buffered = buffered.slice(nl + 1);
        if (Number(observed) === generation && status === "True" && Number(conditionGeneration) === generation) resolve(Date.now());
      }
    });
  });
  return { ready, stop: () => child.kill() };
}

async function installSite(): Promise<void> {
  const helm = run(HELM, ["--kubeconfig", node.kubeconfigPath, ...chartInstallArgs(OPERATOR_NS)]);
  if (helm.status !== 0) throw new Error(`helm install failed: ${helm.stderr}`);
  kubectl(["create", "namespace", SITE_NS]);
  prepareSiteNamespace(kubectl, SITE_NS, work.path);
  kubectl(["apply", "-f", "-"], relaySiteManifest());
  await eventually(
    "RelaySite site-a Ready (NATS and both relays)",
    () => kubectl(["get", "relaysite", "site-a", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === "True",
    600_000,
    1000,
  );
  kubectl(["create", "namespace", TENANTS_NS]);
}

/** Applies the N RelayDomains in multi-document files; resolves when kubectl has created them all. */
async function applyAll(): Promise<void> {
  const files: string[] = [];
  for (let start = 0; start < DOMAINS; start += CHUNK) {
    const file = join(work.path, `domains-${start}.yaml`);
    const count = Math.min(CHUNK, DOMAINS - start);
    writeFileSync(file, Array.from({ length: count }, (_, k) => domainManifest(start + k)).join("---\n"));
    files.push(file);
  }
  const pending = [...files];
  const worker = async (): Promise<void> => {
    for (let file = pending.shift(); file; file = pending.shift())
      await node.kubectlAsync(["apply", "--server-side", "--field-manager=platform-inventory", "-f", file], 600_000);
  };
  await Promise.all(Array.from({ length: PARALLEL_APPLIES }, worker));
}

function configMapFigures(): void {
  const list = json<{ items: Array<{ metadata: { name: string }; data?: Record<string, string> }> }>([
    "-n",
    SITE_NS,
    "get",
    "configmaps",
    "-l",
    `${DOMAIN_CONFIG_LABEL}=site-a`,
  ]).items;
  const sizes = list.map((cm) => Object.entries(cm.data ?? {}).reduce((sum, [key, value]) => sum + key.length + Buffer.byteLength(value), 0));
  figure("domain ConfigMaps", list.length);
  figure("their sizes (data, KiB)", sizes.map((s) => Math.round(s / 1024)).join(", "));
  const status = json<{ data?: Record<string, string> }>(["-n", SITE_NS, "get", "configmap", STATUS_CONFIGMAP]);
  figure("relay reports ConfigMap (data, KiB)", Math.round(Object.values(status.data ?? {}).reduce((sum, v) => sum + Buffer.byteLength(v), 0) / 1024));
}

function usageFigures(when: string): void {
  for (const [label, namespace, selector] of [
    ["operator", OPERATOR_NS, "app.kubernetes.io/name=mxwarden-operator"],
    ["relay", SITE_NS, "app.kubernetes.io/name=mxwarden-relay"],
  ] as const) {
    for (const pod of pods(namespace, selector)) {
      const usage = podUsage(pod.metadata.uid);
      figure(`${label} ${pod.metadata.name} ${when}`, `RSS ${usage.rssMiB} MiB, CPU ${usage.cpuSeconds} s since start`);
    }
  }
}

/** The leader's reconciles so far, per controller: how many and their mean time (its /metrics, on port 8080). */
async function reconcileFigures(when: string): Promise<void> {
  for (const pod of pods(OPERATOR_NS, "app.kubernetes.io/name=mxwarden-operator")) {
    const text = await (await fetch(`http://${pod.status.podIP}:8080/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    if (!/^mxwarden_operator_leader 1$/m.test(text)) continue;
    for (const controller of ["relaysite", "relaydomain"]) {
      const read = (series: string): number => Number(new RegExp(`^${series}\\{controller="${controller}"\\} (\\S+)`, "m").exec(text)?.[1] ?? 0);
      const count = read("mxwarden_operator_reconcile_time_seconds_count");
      const mean = count > 0 ? (read("mxwarden_operator_reconcile_time_seconds_sum") / count) * 1000 : 0;
      figure(`${controller} reconciles ${when}`, `${count}, mean ${mean.toFixed(1)} ms`);
    }
  }
}

/**
 * Restarts of the operator's pods during the run, and why: the kubelet records OOMKilled for a
 * container over its memory limit, and a leader that cannot renew its lease within the renew
 * deadline (10 s) exits so that a fresh replica takes over, saying so in its log.
 */
function operatorRestarts(): void {
  for (const pod of pods(OPERATOR_NS, "app.kubernetes.io/name=mxwarden-operator")) {
    const restarts = pod.status.containerStatuses?.reduce((sum, c) => sum + c.restartCount, 0) ?? 0;
    let why = "";
    if (restarts > 0) {
      // The kubelet's reason (OOMKilled, Error) and the operator's own last words.
      const reasons = pod.status.containerStatuses?.map((c) => c.lastState?.terminated?.reason).filter(Boolean) ?? [];
      const previous = node.kubectl(["-n", OPERATOR_NS, "logs", pod.metadata.name, "--previous", "--tail=200"], { allowFail: true });
      why = ` (the last one: ${reasons.join(", ") || "no reason recorded"}${previous.includes("lost the leader lease") ? ", lost the leader lease" : ""})`;
    }
    figure(`operator ${pod.metadata.name} restarts`, `${restarts}${why}`);
  }
}

/** One RelayDomain's spec changes: apply → every relay serves it, apply → Ready at the new generation. */
async function changeOne(round: number, relays: Pod[]): Promise<{ served: number; ready: number }> {
  const i = (round * 2_654_435) % DOMAINS;
  const before = await Promise.all(relays.map((pod) => relayGauge(pod, "mxwarden_config_generation")));
  const generation = Number(kubectl(["-n", TENANTS_NS, "get", "relaydomain", name(i), "-o", "jsonpath={.metadata.generation}"])) + 1;
  const watch = watchReady(name(i), generation);
  await sleep(500); // the watch's first list is in before the change
  try {
    const applied = Date.now();
    kubectl(["apply", "--server-side", "--field-manager=platform-inventory", "-f", "-"], domainManifest(i, 50 + round));
    const servedAt = untilEveryRelay(
      `every relay serves ${name(i)}'s change`,
      relays,
      async (pod) => (await relayGauge(pod, "mxwarden_config_generation")) > (before[relays.indexOf(pod)] ?? 0),
      applied,
      CHANGE_TIMEOUT_MS,
      50,
    );
    const readyAt = Promise.race([
      watch.ready,
      sleep(CHANGE_TIMEOUT_MS, undefined, { ref: false }).then(() => Promise.reject(new Error(`${name(i)} not Ready at generation ${generation}`))),
    ]);
    const [served, ready] = await Promise.all([servedAt, readyAt]);
    return { served: served.last, ready: seconds(ready - applied) };
  } finally {
    watch.stop();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  await node.start();
  node.importImages(projectImages());
  figure("cluster up, images imported", seconds(Date.now() - started), "s");
  await installSite();
  const relays = relayPods();
  figure("relays", relays.length);

  const applied = Date.now();
  const served = untilEveryRelay(
    `every relay serves ${DOMAINS} domains`,
    relays,
    async (pod) => (await relayGauge(pod, "mxwarden_config_domains")) >= DOMAINS,
    applied,
    SETTLE_TIMEOUT_MS,
    1000,
  );
  await applyAll();
  figure(`kubectl apply --server-side of ${DOMAINS} RelayDomains (${CHUNK} a file, ${PARALLEL_APPLIES} at once)`, seconds(Date.now() - applied), "s");
  const { first, last } = await served;
  figure(`apply → first relay serves all ${DOMAINS}`, first, "s");
  figure(`apply → every relay serves all ${DOMAINS}`, last, "s");
  let notReady = DOMAINS;
  await eventually(
    `all ${DOMAINS} RelayDomains Ready`,
    async () => {
      const states = await domainStates();
      notReady = DOMAINS - [...states.values()].filter((s) => s.ready === "True" && s.observed === s.generation).length;
      console.log(`# ${seconds(Date.now() - applied)} s: ${DOMAINS - notReady} of ${DOMAINS} Ready`);
      return notReady === 0;
    },
    SETTLE_TIMEOUT_MS,
    // Listing 10,000 RelayDomains costs the API server (and kubectl) seconds of CPU: not too often.
    15_000,
  );
  figure(`apply → all ${DOMAINS} RelayDomains Ready`, seconds(Date.now() - applied), "s");
  configMapFigures();
  usageFigures("after the apply");
  await reconcileFigures("after the apply");

  const rounds: Array<{ served: number; ready: number }> = [];
  for (let round = 1; round <= CHANGES; round++) {
    const result = await changeOne(round, relays);
    rounds.push(result);
    figure(`change ${round}: apply → every relay serves it, apply → Ready`, `${result.served} s, ${result.ready} s`);
  }
  const readyMedian = median(rounds.map((r) => r.ready));
  figure("one change among them, apply → every relay serves it (median)", median(rounds.map((r) => r.served)), "s");
  figure("one change among them, apply → Ready at the new generation (median)", readyMedian, "s");
  figure(`goal: under ${GOAL_SECONDS} s`, readyMedian < GOAL_SECONDS ? "met" : "missed");
  usageFigures("at the end");
  await reconcileFigures("at the end");
  operatorRestarts();

  // The end state: every domain Ready, at the generation it has.
  const states = await domainStates();
  const wrong = [...states.entries()].filter(([, s]) => s.ready !== "True" || s.observed !== s.generation);
  if (states.size !== DOMAINS) errors.push(`${states.size} RelayDomains listed, want ${DOMAINS}`);
  if (wrong.length > 0)
    errors.push(`${wrong.length} RelayDomains not Ready at their generation, e.g. ${wrong.slice(0, 3).map(([n, s]) => `${n} ${JSON.stringify(s)}`)}`);
}

// Interrupted: the cluster goes down all the same (its processes would hold the node's ports).
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    console.error(`${signal}: stopping the cluster`);
    void node.stop().finally(() => process.exit(1));
  });

try {
  await main();
} catch (err) {
  errors.push(err instanceof Error ? err.message : String(err));
} finally {
  await node.stop().catch((err: unknown) => errors.push(`stopping the cluster: ${String(err)}`));
  work.remove();
}
console.log(`\ncluster-scale, ${DOMAINS} RelayDomains:`);
for (const [label, value] of figures) console.log(`  ${label}: ${value}`);
for (const error of errors) console.error(`ERROR: ${error}`);
process.exitCode = errors.length > 0 ? 1 : 0;
