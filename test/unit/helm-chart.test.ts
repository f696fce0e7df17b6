// The Helm chart rendered by the real helm (v4): lint, every option, the values schema, the
// operator's security context and arguments (parsed by the operator's own flag parser), the
// capability-gated ServiceMonitor, and the RBAC variants.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { CHART_DIR, findObject, helm, helmTemplate } from "../harness/helm.ts";
import { DEFAULT_CLAMD_IMAGE, DEFAULT_NATS_IMAGE, DEFAULT_RSPAMD_IMAGE, parseOperatorArgs } from "../../operator/src/cli.ts";
import type { Unstructured } from "../../operator/src/kube/api-client.ts";
import type { PolicyRule } from "../harness/rbac.ts";

const NS = "mxwarden-system";
const ALL_OPTIONS = join(CHART_DIR, "ci/all-options-values.yaml");
const MONITORING = ["--api-versions", "monitoring.coreos.com/v1"];

interface Container {
  name: string;
  image: string;
  args: string[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  securityContext: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  securityContext: Record<string, unknown>;
  containers: Container[];
}
type Deployment = Unstructured & { spec: { replicas: number; template: { spec: PodSpec } } };
type Rbac = Unstructured & { rules: PolicyRule[] };

function operatorDeployment(objects: Unstructured[]): Deployment {
  const deployment = findObject(objects, "Deployment") as Deployment | undefined;
  assert.ok(deployment, "operator Deployment rendered");
  return deployment;
}

function kinds(objects: Unstructured[]): string[] {
  return objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
}

/** Every key path of a values document, such as "operator.logLevel" (lists count as leaves). */
function keyPaths(value: unknown, prefix = ""): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return [prefix];
  const entries = Object.entries(value);
  if (entries.length === 0) return [prefix];
  return entries.flatMap(([key, child]) => keyPaths(child, prefix ? `${prefix}.${key}` : key));
}

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  definitions?: Record<string, JsonSchema>;
  $ref?: string;
}

/** Paths of object schemas with named properties that would still accept unknown keys. */
function openObjects(schema: JsonSchema, path: string): string[] {
  const open = schema.properties && schema.additionalProperties !== false ? [path] : [];
  const children = [
    ...Object.entries(schema.properties ?? {}).map(([key, child]) => [`${path}.${key}`, child] as const),
    ...Object.entries(schema.definitions ?? {}).map(([key, child]) => [`#/definitions/${key}`, child] as const),
    ...(schema.items ? [[`${path}[]`, schema.items] as const] : []),
    ...(typeof schema.additionalProperties === "object" ? [[`${path}.*`, schema.additionalProperties] as const] : []),
  ];
  return [...open, ...children.flatMap(([childPath, child]) => openObjects(child, childPath))];
}

describe("Helm chart", () => {
  it("passes helm lint --strict with default values and with every option set", () => {
    for (const args of [[], ["-f", ALL_OPTIONS], ["--set", "mode=siteAccess"]]) {
      const result = helm(["lint", "--strict", CHART_DIR, "--namespace", NS, ...args]);
      assert.equal(result.status, 0, `helm lint ${args.join(" ")}:\n${result.stdout}${result.stderr}`);
    }
  });

  it("renders the operator, its RBAC, metrics Service and PDB with default values, and no RelaySite", () => {
    const objects = helmTemplate(NS);
    assert.deepEqual(kinds(objects), [
      "ClusterRole/mxwarden-operator",
      "ClusterRole/mxwarden-operator-sites",
      "ClusterRole/mxwarden-queue-operator",
      "ClusterRole/mxwarden-relay-domains",
      "ClusterRole/mxwarden-uninstall-check",
      "ClusterRoleBinding/mxwarden-operator",
      "ClusterRoleBinding/mxwarden-operator-sites",
      "ClusterRoleBinding/mxwarden-uninstall-check",
      "ConfigMap/mxwarden-operator-relay-rules",
      "Deployment/mxwarden-operator",
      "Job/mxwarden-uninstall-check",
      "PodDisruptionBudget/mxwarden-operator",
      "Role/mxwarden-operator",
      "RoleBinding/mxwarden-operator",
      "Service/mxwarden-operator-metrics",
      "ServiceAccount/mxwarden-operator",
      "ServiceAccount/mxwarden-uninstall-check",
      "ValidatingAdmissionPolicy/mxwarden-queue-request-requester",
      "ValidatingAdmissionPolicyBinding/mxwarden-queue-request-requester",
    ]);
    for (const object of objects.filter((o) => o.metadata.namespace !== undefined)) assert.equal(object.metadata.namespace, NS);
    const deployment = operatorDeployment(objects);
    assert.equal(deployment.spec.replicas, 2);
    const args = deployment.spec.template.spec.containers[0]?.args ?? [];
    const config = parseOperatorArgs(args, { POD_NAMESPACE: NS });
    assert.ok(config !== "help");
    assert.equal(config.leaderElection, true);
    assert.equal(config.relayImage, "ghcr.io/mxwarden/mxwarden-relay:0.1.0");
    assert.equal(config.natsImage, DEFAULT_NATS_IMAGE, "the chart's default nats-server image is the operator's");
    assert.equal(config.clamdImage, DEFAULT_CLAMD_IMAGE, "the chart's default clamd image is the operator's");
    assert.equal(config.rspamdImage, DEFAULT_RSPAMD_IMAGE, "the chart's default rspamd image is the operator's");
    assert.equal(config.dnsServers, undefined);
  });

  it("runs a pre-delete check that deletes domains and sites and waits for their finalizers, or with uninstall.drain=false refuses, under least privilege", () => {
    type Job = Unstructured & { spec: { backoffLimit: number; template: { spec: PodSpec & { restartPolicy: string } } } };
    const hookOf = (object: Unstructured | undefined): string | undefined =>
      (object?.metadata.annotations as Record<string, string> | undefined)?.["helm.sh/hook"];
    for (const drain of [false, true]) {
      const objects = helmTemplate(NS, ["--set", `uninstall.drain=${drain}`]);
      const job = findObject(objects, "Job", "mxwarden-uninstall-check") as Job | undefined;
      assert.ok(job);
      for (const kind of ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job"]) {
        assert.equal(hookOf(findObject(objects, kind, "mxwarden-uninstall-check")), "pre-delete", `${kind} exists only for the hook`);
      }
      const role = findObject(objects, "ClusterRole", "mxwarden-uninstall-check") as Rbac;
      assert.deepEqual(role.rules, [{ apiGroups: ["mxwarden.io"], resources: ["relaydomains", "relaysites"], verbs: drain ? ["list", "delete"] : ["list"] }]);
      const pod = job.spec.template.spec;
      assert.equal(pod.serviceAccountName, "mxwarden-uninstall-check");
      assert.equal(pod.restartPolicy, "Never");
      assert.equal(job.spec.backoffLimit, 0, "a refusal is final: helm reports the failed hook at once");
      if (drain) assert.deepEqual(helmTemplate(NS).find((o) => o.kind === "Job")?.spec, job.spec, "drain is the default");
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.containers[0]?.securityContext.readOnlyRootFilesystem, true);
      assert.deepEqual(pod.containers[0]?.args, ["uninstall-check", "--timeout=10m", ...(drain ? ["--drain"] : [])]);
      assert.equal(pod.containers[0]?.image, "ghcr.io/mxwarden/mxwarden-operator:0.1.0", "the operator's image");
    }
    assert.equal(findObject(helmTemplate(NS, ["--set", "uninstall.check=false"]), "Job"), undefined);
  });

  it("values.yaml and the all-options file set the same keys, and the schema leaves no object open", () => {
    const defaults = keyPaths(parse(readFileSync(join(CHART_DIR, "values.yaml"), "utf8")));
    const all = keyPaths(parse(readFileSync(ALL_OPTIONS, "utf8")));
    assert.deepEqual(
      defaults.filter((key) => !all.some((set) => set === key || set.startsWith(`${key}.`))),
      [],
      "options the all-options file misses",
    );
    const schema = JSON.parse(readFileSync(join(CHART_DIR, "values.schema.json"), "utf8")) as JsonSchema;
    assert.deepEqual(openObjects(schema, "$"), []);
    for (const reserved of ["prometheusRule", "grafanaDashboard"]) {
      assert.deepEqual(schema.properties?.[reserved]?.properties?.enabled, { type: "boolean" });
    }
  });

  it("maps every option onto the operator's real flags and the pod", () => {
    const objects = helmTemplate(NS, ["-f", ALL_OPTIONS, ...MONITORING]);
    const deployment = operatorDeployment(objects);
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0] as Container;
    assert.equal(deployment.spec.replicas, 3);
    assert.equal(container.image, "registry.example.net/mxwarden/operator:0.1.0-rc.1");
    assert.equal(pod.serviceAccountName, "mail-operator");
    const config = parseOperatorArgs(container.args, { POD_NAMESPACE: NS });
    assert.ok(config !== "help");
    assert.deepEqual(config.metrics, { host: "0.0.0.0", port: 9443 });
    assert.equal(config.relayImage, "registry.example.net/mxwarden/relay:0.1.0-rc.1");
    assert.equal(config.natsImage, "registry.example.net/mirror/nats:2.14.9");
    assert.equal(config.clamdImage, "registry.example.net/mirror/clamav:1.4");
    assert.equal(config.rspamdImage, "registry.example.net/mirror/rspamd:3.12");
    assert.deepEqual(config.dnsServers, ["10.0.0.10:53", "10.0.0.11:53"]);
    assert.equal(config.pollIntervalMs, 30_000);
    assert.equal(config.siteHealthIntervalMs, 5_000);
    assert.equal(config.logLevel, "debug");
    const rulesMount = container.volumeMounts?.find((m) => m.mountPath === "/etc/mxwarden/monitoring");
    assert.ok(
      rulesMount && config.monitoringRules === "/etc/mxwarden/monitoring/relay-rules.yaml",
      "the relay rules are mounted where --monitoring-rules points",
    );
    assert.equal((findObject(objects, "ServiceMonitor")?.metadata.labels as Record<string, string> | undefined)?.release, "kube-prometheus-stack");
    const sites = objects.filter((o) => o.kind === "RelaySite").map((o) => o.metadata.name);
    assert.deepEqual(sites, ["site-a", "site-b"]);
    const service = findObject(objects, "Service") as Unstructured & { spec: { ports: { port: number; targetPort: string }[] } };
    assert.deepEqual(
      service.spec.ports.map((p) => [p.port, p.targetPort]),
      [[8443, "metrics"]],
    );
  });

  it("refuses unknown keys with a message naming them", () => {
    for (const [args, key] of [
      [["--set", "replica=3"], "replica"],
      [["--set", "operator.pollIntervall=5s"], "pollIntervall"],
      [["--set", "sites[0].name=a", "--set", "sites[0].spec.hostname=x", "--set", "sites[0].clusterName=b"], "clusterName"],
    ] as const) {
      const result = helm(["template", "mxwarden", CHART_DIR, ...args]);
      assert.notEqual(result.status, 0, `${args.join(" ")} was accepted`);
      assert.match(result.stderr, new RegExp(`additional properties '${key}' not allowed`));
    }
    const wrongType = helm(["template", "mxwarden", CHART_DIR, "--set", "leaderElection=maybe"]);
    assert.notEqual(wrongType.status, 0);
    assert.match(wrongType.stderr, /leaderElection/);
  });

  it("runs the operator under the restricted Pod Security Standard, probed on its metrics port", () => {
    const pod = operatorDeployment(helmTemplate(NS)).spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: "RuntimeDefault" });
    assert.ok(Number(pod.securityContext.runAsUser) > 0);
    const container = pod.containers[0] as Container;
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(
      container.ports.map((p) => p.name),
      ["metrics"],
    );
    assert.deepEqual(container.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
    assert.deepEqual(container.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
    const fieldPaths = Object.fromEntries(container.env.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    assert.equal(fieldPaths.POD_NAMESPACE, "metadata.namespace");
    assert.equal(fieldPaths.POD_NAME, "metadata.name");
  });

  it("renders the ServiceMonitor only when asked for and the cluster serves monitoring.coreos.com/v1", () => {
    assert.equal(findObject(helmTemplate(NS, ["--set", "serviceMonitor.enabled=true"]), "ServiceMonitor"), undefined);
    assert.equal(findObject(helmTemplate(NS, MONITORING), "ServiceMonitor"), undefined);
    const monitor = findObject(helmTemplate(NS, ["--set", "serviceMonitor.enabled=true", ...MONITORING]), "ServiceMonitor") as
      | (Unstructured & { spec: { endpoints: { port: string; honorLabels?: boolean }[] } })
      | undefined;
    assert.deepEqual(
      monitor?.spec.endpoints.map((e) => e.port),
      ["metrics"],
    );
    assert.equal(monitor?.spec.endpoints[0]?.honorLabels, true, "the RelayDomain series keep their namespace label");
  });

  it("grants the Lease only with leader election, and site rights only where relays run", () => {
    const role = (args: string[]): Rbac => findObject(helmTemplate(NS, args), "Role") as Rbac;
    assert.ok(role([]).rules.some((r) => r.resources?.includes("leases")));
    assert.ok(!role(["--set", "leaderElection=false"]).rules.some((r) => r.resources?.includes("leases")));
    const remoteOnly = helmTemplate(NS, ["--set", "rbac.localSites=false"]);
    assert.equal(findObject(remoteOnly, "ClusterRole", "mxwarden-operator-sites"), undefined);
    const siteAccess = helmTemplate("mxwarden", ["--set", "mode=siteAccess"]);
    assert.deepEqual(kinds(siteAccess), [
      "ClusterRole/mxwarden-operator-sites",
      "ClusterRole/mxwarden-relay-domains",
      "ClusterRoleBinding/mxwarden-operator-sites",
      "Secret/mxwarden-operator-token",
      "ServiceAccount/mxwarden-operator",
    ]);
    // The same rules in both places: what the operator does in a remote site is what it does locally.
    assert.deepEqual(
      (findObject(siteAccess, "ClusterRole", "mxwarden-operator-sites") as Rbac).rules,
      (findObject(helmTemplate(NS), "ClusterRole", "mxwarden-operator-sites") as Rbac).rules,
    );
  });
});
