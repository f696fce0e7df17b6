// RBAC least privilege, checked against what the operator really does. The chart's RBAC objects
// (helm template, default values) are installed in an audited kube-apiserver; the operator runs
// with its ServiceAccount's identity and is driven through a local RelaySite and a RelayDomain:
// create, update, Ready, deletion. The audit log then shows (a) that the chart allowed every
// request the operator made and (b) that every permission the chart grants was used, apart from
// the few listed in NOT_EXERCISED with the reason.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { OperatorProcess } from "../harness/operator-process.ts";
import { RelayProcess } from "../harness/relay-process.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { CHART_DIR, findObject, helmTemplate, refOf } from "../harness/helm.ts";
import { writeMonitoringCrds } from "../harness/monitoring-crds.ts";
import { auditedRequests, ruleAllows, type AuditedRequest, type PolicyRule } from "../harness/rbac.ts";
import { eventually, tempDir } from "../harness/workspace.ts";
import { ApiClient, isNotFound, type Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import type { Condition } from "#api";

const OPERATOR_NS = "mxwarden-system";
const RELAY_NS = "mxwarden";
const DOMAIN_NS = "team-a";
const SA = "mxwarden-operator";
const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NS}:${SA}`;

const MANAGED_NATS = "managed NATS (spec.nats.managed): this test's site brings its NATS by url; test/integration/cluster-e2e.test.ts drives it on a real node";

/** Permissions the chart grants for paths this test does not drive, as "verb group/resource". */
const NOT_EXERCISED: Record<string, string> = {
  "get /secrets": "reading a remote site's kubeconfig Secret: this test's site is the operator's own cluster",
  "bind rbac.authorization.k8s.io/clusterroles":
    "binding mxwarden-relay-domains for the relays: the API server checks it while applying the relays' RoleBinding, an audit event has no verb bind",
  "patch mxwarden.io/relayqueuerequests/status":
    "carrying out a queue request: test/integration/queue-requests.test.ts runs the operator with the chart's rights",
  "delete mxwarden.io/relayqueuerequests": "deleting a finished queue request after its TTL: test/integration/queue-requests.test.ts",
  "create /secrets": MANAGED_NATS,
  "patch /secrets": MANAGED_NATS,
  "get apps/statefulsets": MANAGED_NATS,
  "create apps/statefulsets": MANAGED_NATS,
  "patch apps/statefulsets": MANAGED_NATS,
};

/**
 * Non-resource URLs every authenticated identity may GET through the API server's default
 * system:public-info-viewer ClusterRole, so the chart need not grant them.
 */
const PUBLIC_INFO = new Set(["/readyz", "/healthz", "/livez", "/version"]);

type Rbac = Unstructured & { rules?: PolicyRule[]; roleRef?: { kind: string; name: string } };
type WithConditions = Unstructured & { status?: { conditions?: Condition[] } };
type Deployment = Unstructured & { metadata: { generation?: number }; spec: { replicas?: number; template: { spec: { containers: { args: string[] }[] } } } };

/** A rule as granted: cluster-wide, or only in the namespace of the Role that holds it. */
interface Grant {
  rule: PolicyRule;
  namespace: string | undefined;
  from: string;
}

function ready(object: WithConditions | undefined): boolean {
  return object?.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
}

/** One grant per (verb, group, resource), so "every permission used" is checked at that grain. */
function atoms(grant: Grant): Grant[] {
  const out: Grant[] = [];
  for (const verb of grant.rule.verbs) {
    for (const group of grant.rule.apiGroups ?? [""]) {
      for (const resource of grant.rule.resources ?? []) {
        out.push({ ...grant, rule: { ...grant.rule, verbs: [verb], apiGroups: [group], resources: [resource] } });
      }
    }
  }
  return out;
}

function atomKey(grant: Grant): string {
  return `${grant.rule.verbs[0]} ${grant.rule.apiGroups?.[0] ?? ""}/${grant.rule.resources?.[0] ?? ""}`;
}

function allows(grant: Grant, request: AuditedRequest): boolean {
  if (grant.namespace !== undefined && request.namespace !== grant.namespace) return false;
  return ruleAllows(grant.rule, request);
}

function describeRequest(r: AuditedRequest): string {
  return r.path ?? `${r.verb} ${r.apiGroup}/${r.resource} ${r.namespace ?? "-"}/${r.name ?? "-"} → ${r.code}`;
}

describe("RBAC: the chart grants exactly what the operator uses", () => {
  const work = tempDir("operator-rbac");
  let plane: TestControlPlane;
  let admin: ApiClient;
  let nats: TestNatsServer | undefined;
  let relay: RelayProcess | undefined;
  let operator: OperatorProcess | undefined;
  const grants: Grant[] = [];

  async function get<T extends Unstructured>(ref: typeof Resources.RelaySite, namespace: string | undefined, name: string): Promise<T | undefined> {
    try {
      return await admin.get<T>(ref, namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Marks the relay Deployment available, as kube-controller-manager and the kubelet would. */
  async function markDeploymentReady(): Promise<void> {
    const deployment = await admin.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay");
    await admin.replace(
      Resources.Deployment,
      {
        ...deployment,
        status: { observedGeneration: deployment.metadata.generation, replicas: 1, readyReplicas: 1, availableReplicas: 1, updatedReplicas: 1 },
      },
      { subresource: "status" },
    );
  }

  before(async () => {
    plane = await TestControlPlane.start({ name: "rbac", audit: true });
    admin = new ApiClient(plane.kubeConfig());
    await plane.installCrds([
      join(CHART_DIR, "crds/relaydomains.mxwarden.io.yaml"),
      join(CHART_DIR, "crds/relaysites.mxwarden.io.yaml"),
      join(CHART_DIR, "crds/relayqueuerequests.mxwarden.io.yaml"),
      writeMonitoringCrds(work.path),
    ]);
    for (const ns of [OPERATOR_NS, DOMAIN_NS]) await admin.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });

    // The chart's identity and rights, installed for real; nothing else is granted to it.
    // --no-hooks: the pre-delete check runs under its own ServiceAccount (uninstall-check.test.ts).
    const rendered = helmTemplate(OPERATOR_NS, ["--no-hooks"]);
    // Only the roles bound to the operator are its grants (the chart also ships roles for teams).
    const bound = new Set(
      rendered
        .filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding")
        .map((o) => `${(o as Rbac).roleRef?.kind}/${(o as Rbac).roleRef?.name}`),
    );
    for (const kind of ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]) {
      for (const object of rendered.filter((o) => o.kind === kind)) {
        await admin.apply(refOf(object), object);
        const rules = (object as Rbac).rules;
        if (rules && bound.has(`${kind}/${object.metadata.name}`))
          for (const rule of rules)
            grants.push({ rule, namespace: kind === "Role" ? object.metadata.namespace : undefined, from: `${kind}/${object.metadata.name}` });
      }
    }
    const serviceAccount = findObject(rendered, "ServiceAccount");
    assert.equal(serviceAccount?.metadata.name, SA);
    for (const binding of rendered.filter((o) => o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding")) {
      assert.deepEqual((binding as Unstructured & { subjects: unknown[] }).subjects, [{ kind: "ServiceAccount", name: SA, namespace: OPERATOR_NS }]);
    }

    const kubeconfig = join(work.path, "operator.kubeconfig");
    writeFileSync(
      kubeconfig,
      plane.kubeconfigYamlFor(OPERATOR_USER, ["system:serviceaccounts", `system:serviceaccounts:${OPERATOR_NS}`, "system:authenticated"]),
    );
    // Alerting rules make the operator apply a PrometheusRule too, so that permission is exercised.
    const rules = join(work.path, "rules.yaml");
    writeFileSync(rules, 'groups:\n  - name: mxwarden-test\n    rules:\n      - alert: RelayDown\n        expr: up{job="mxwarden-relay"} == 0\n');
    operator = await OperatorProcess.start({
      dir: work.path,
      kubeconfigPath: kubeconfig,
      namespace: OPERATOR_NS,
      identity: "operator-rbac",
      args: ["--dns-servers=off", `--monitoring-rules=${rules}`],
    });
    nats = await TestNatsServer.start(join(work.path, "nats"));
  });

  after(async () => {
    await relay?.process.stop();
    await operator?.stop();
    await nats?.stop();
    await plane?.stop();
  });

  it("drives a local RelaySite and a RelayDomain through their whole life with the chart's rights", async () => {
    await admin.create(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-a" },
      // The TLS Secret is never created: the operator's check of it is one of the rights exercised.
      spec: {
        namespace: RELAY_NS,
        hostname: "mx-a.backup.test",
        replicas: 1,
        tls: { secretName: "mx-a-tls" },
        nats: { url: "nats://nats.mxwarden:4222", streamReplicas: 1 },
      },
    });
    await eventually(
      "site-a applied",
      async () =>
        (await get<WithConditions>(Resources.RelaySite, undefined, "site-a"))?.status?.conditions?.some(
          (c) => c.type === "ConfigApplied" && c.status === "True",
        ),
      60_000,
    );
    // Events about a cluster-scoped RelaySite can only live in "default" (the API server refuses others).
    await eventually("ConfigApplied Event about site-a", async () =>
      (await admin.list<Unstructured & { reason?: string; regarding?: { name?: string } }>(Resources.Event, "default")).items.some(
        (event) => event.reason === "ConfigApplied" && event.regarding?.name === "site-a",
      ),
    );
    await eventually(
      "ServiceMonitor and PrometheusRule applied",
      async () =>
        (await get(Resources.ServiceMonitor, RELAY_NS, "mxwarden-relay")) !== undefined &&
        (await get(Resources.PrometheusRule, RELAY_NS, "mxwarden-relay")) !== undefined,
    );

    // A relay is ready only with a configuration, so the domain comes first.
    await admin.create(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "example", namespace: DOMAIN_NS },
      spec: { domain: "example.test", primary: { hosts: [{ host: "127.0.0.1", port: 2600 }] }, queue: { deletionGracePeriod: "1h" } },
    });
    await eventually(
      "domain in the relays' ConfigMap",
      async () =>
        (await admin.get<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, RELAY_NS, "mxwarden-domains-1-0")).data?.[
          "team-a.example.yaml"
        ],
    );

    // A real relay watches what the operator wrote, through the ClusterRole the chart ships and the
    // operator binds, and reports through the Role the operator rendered.
    const dir = join(work.path, "relay");
    mkdirSync(dir, { recursive: true });
    const relayKubeconfig = join(dir, "relay.kubeconfig");
    writeFileSync(relayKubeconfig, plane.kubeconfigYamlFor(`system:serviceaccount:${RELAY_NS}:mxwarden-relay`, ["system:serviceaccounts"]));
    relay = await RelayProcess.start({
      dir,
      hostname: "mx-a.backup.test",
      nats: nats?.url,
      args: [
        "--domains-configmaps=mxwarden.io/domain-config=site-a",
        "--status-configmap=mxwarden-relay-status",
        `--status-namespace=${RELAY_NS}`,
        `--kubeconfig=${relayKubeconfig}`,
        "--status-interval=1s",
        "--shutdown-grace=2s",
      ],
    });
    await relay.ready();
    await markDeploymentReady();

    await eventually("RelayDomain Ready", async () => ready(await get<WithConditions>(Resources.RelayDomain, DOMAIN_NS, "example")), 60_000);

    // Updates: the site's replicas reach the Deployment, the domain's new generation the relays.
    await admin.mergePatch(Resources.RelaySite, undefined, "site-a", { spec: { replicas: 2 } });
    await eventually("Deployment scaled", async () => (await admin.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay")).spec.replicas === 2);
    await admin.mergePatch(Resources.RelayDomain, DOMAIN_NS, "example", { spec: { maxMessageSize: "1Mi" } });
    await eventually(
      "new generation Ready",
      async () => {
        const domain = await get<WithConditions & { metadata: { generation?: number }; status?: { observedGeneration?: number } }>(
          Resources.RelayDomain,
          DOMAIN_NS,
          "example",
        );
        return ready(domain) && domain?.status?.observedGeneration === domain?.metadata.generation && (domain?.metadata.generation ?? 0) > 1;
      },
      60_000,
    );

    await admin.delete(Resources.RelayDomain, DOMAIN_NS, "example");
    await eventually("RelayDomain deletion completes", async () => (await get(Resources.RelayDomain, DOMAIN_NS, "example")) === undefined, 60_000);
    await admin.delete(Resources.RelaySite, undefined, "site-a");
    await eventually("RelaySite deletion completes", async () => (await get(Resources.RelaySite, undefined, "site-a")) === undefined, 60_000);
    assert.equal(await get(Resources.Deployment, RELAY_NS, "mxwarden-relay"), undefined);
    assert.equal(await get(Resources.PrometheusRule, RELAY_NS, "mxwarden-relay"), undefined);
    // Stopping hands the Lease back, the last leader-election call.
    await operator?.stop();
    operator = undefined;
  });

  it("allowed every request the operator made, and every permission it grants was used", () => {
    const requests = auditedRequests(plane.auditLogPath as string, OPERATOR_USER);
    assert.ok(requests.length > 50, `too few audited requests (${requests.length}): is the audit log complete?`);

    const forbidden = requests.filter((r) => r.code === 403);
    assert.deepEqual(forbidden.map(describeRequest), [], "requests the chart's RBAC refused");
    const uncovered = requests.filter((r) => (r.path === undefined ? !grants.some((g) => allows(g, r)) : !PUBLIC_INFO.has(r.path)));
    assert.deepEqual(uncovered.map(describeRequest), [], "requests no rule of the chart allows");

    // A server-side apply that creates its object is one PATCH in the log (answered 201), which
    // the API server authorizes as patch and then as create: it uses both permissions.
    const used = requests.flatMap((r) => (r.verb === "patch" && r.code === 201 ? [r, { ...r, verb: "create" }] : [r]));
    const unused = grants.flatMap(atoms).filter((g) => !used.some((r) => allows(g, r)));
    const unexplained = unused.filter((g) => NOT_EXERCISED[atomKey(g)] === undefined).map((g) => `${atomKey(g)} (${g.from})`);
    assert.deepEqual(unexplained, [], "permissions the chart grants that the operator never used");
    const stale = Object.keys(NOT_EXERCISED).filter((key) => !unused.some((g) => atomKey(g) === key));
    assert.deepEqual(stale, [], "NOT_EXERCISED lists permissions this test did use: remove them from the list");
  });
});
