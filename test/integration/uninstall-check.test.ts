// The chart's pre-delete hook (`mxwarden-operator uninstall-check`, operator/src/uninstall-check.ts)
// against a real kube-apiserver, run as the hook runs it: the operator's command as a subprocess,
// with only the rights of the ClusterRole the chart renders for it. Without --drain it refuses
// while RelayDomains or RelaySites exist; with --drain it deletes the domains, waits for their
// finalizers, then the sites. The finalizers are removed here by the test in the operator's place
// (that the real operator drains queued mail first is the cluster e2e's part, cluster-e2e.test.ts).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { findObject, helmTemplate, refOf } from "../harness/helm.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";
import { ApiClient } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

const OPERATOR = join(repoRoot, "operator/bin/mxwarden-operator");
const FINALIZER_OF = { RelayDomain: "mxwarden.io/drain-queue", RelaySite: "mxwarden.io/site-cleanup" };

describe("helm uninstall's pre-delete check (uninstall-check) on a real API server", () => {
  const work = tempDir("uninstall-check");
  let plane: TestControlPlane;
  let admin: ApiClient;
  let hookKubeconfig: string;

  before(async () => {
    plane = await TestControlPlane.start({ name: "uninstall-check" });
    admin = new ApiClient(plane.kubeConfig());
    await plane.installCrds([join(repoRoot, "crds/relaydomains.mxwarden.io.yaml"), join(repoRoot, "crds/relaysites.mxwarden.io.yaml")]);
    await admin.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: "team-a" } });
    // The hook's ClusterRole as the chart renders it with drain, bound to a user of its own.
    const role = findObject(helmTemplate("mxwarden-system", ["--set", "uninstall.drain=true"]), "ClusterRole", "mxwarden-uninstall-check");
    assert.ok(role);
    await admin.apply(refOf(role), { ...role, metadata: { name: role.metadata.name } });
    const binding = {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "uninstall-check" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "uninstall-check" }],
    };
    await admin.apply(refOf(binding), binding);
    hookKubeconfig = join(work.path, "hook.kubeconfig");
    writeFileSync(hookKubeconfig, plane.kubeconfigYamlFor("uninstall-check", []));
  });
  after(async () => {
    await plane?.stop();
    work.remove();
  });

  const createDomain = (name: string) =>
    admin.create(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name, namespace: "team-a", finalizers: [FINALIZER_OF.RelayDomain] },
      spec: { domain: `${name}.example`, primary: { hosts: [{ host: "mx1.example.com" }] } },
    });
  const createSite = (name: string) =>
    admin.create(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name, finalizers: [FINALIZER_OF.RelaySite] },
      spec: { hostname: "mx.backup.test", nats: { url: "nats://nats:4222" } },
    });
  const check = (args: string[]) => spawnSync(OPERATOR, ["uninstall-check", "--kubeconfig", hookKubeconfig, ...args], { encoding: "utf8", timeout: 60_000 });

  it("lets the uninstall go on when nothing is left", () => {
    const result = check([]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /no RelayDomain and no RelaySite left/);
  });

  it("refuses while a RelayDomain or a RelaySite exists, names them and touches nothing", async () => {
    await createDomain("example-com");
    await createSite("site-a");
    const result = check([]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /refusing to remove the operator: 1 RelayDomain\(s\) and 1 RelaySite\(s\)/);
    assert.match(result.stdout, /RelayDomain team-a\/example-com/);
    assert.match(result.stdout, /RelaySite site-a/);
    assert.match(result.stdout, /then run helm uninstall again/);
    const domain = await admin.get<{ metadata: { deletionTimestamp?: string } }>(Resources.RelayDomain, "team-a", "example-com");
    assert.equal(domain.metadata.deletionTimestamp, undefined, "the refusal deletes nothing");
  });

  it("with --drain deletes the domains, waits for their finalizers, then the sites, and only then lets the uninstall go on", async () => {
    const child = spawn(OPERATOR, ["uninstall-check", "--kubeconfig", hookKubeconfig, "--drain", "--timeout", "2m"], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    type Meta = { metadata: { deletionTimestamp?: string; finalizers?: string[]; resourceVersion: string } };
    // The domain is being deleted and the check waits on its finalizer; the site is left alone meanwhile.
    await eventually("the domain marked for deletion", async () => {
      const domain = await admin.get<Meta>(Resources.RelayDomain, "team-a", "example-com");
      return domain.metadata.deletionTimestamp !== undefined;
    });
    await eventually("the check waiting for it", () => /waiting for 1 RelayDomain: RelayDomain team-a\/example-com \(being deleted\)/.test(output));
    const site = await admin.get<Meta>(Resources.RelaySite, undefined, "site-a");
    assert.equal(site.metadata.deletionTimestamp, undefined, "sites wait until every domain is gone");
    // The operator's part: the domain's queue is drained, its finalizer goes.
    await admin.mergePatch(Resources.RelayDomain, "team-a", "example-com", { metadata: { finalizers: null } });
    await eventually(
      "the site marked for deletion",
      async () => (await admin.get<Meta>(Resources.RelaySite, undefined, "site-a")).metadata.deletionTimestamp !== undefined,
    );
    assert.equal(child.exitCode, null, "still waiting for the site's finalizer");
    await admin.mergePatch(Resources.RelaySite, undefined, "site-a", { metadata: { finalizers: null } });
    assert.equal(await exited, 0, output);
    assert.match(output, /every RelayDomain and RelaySite is gone/);
    assert.equal((await admin.list(Resources.RelayDomain)).items.length, 0);
    assert.equal((await admin.list(Resources.RelaySite)).items.length, 0);
  });

  it("with --drain gives up at its timeout, exits 1 and says what is left", async () => {
    await createDomain("stuck-com");
    const result = check(["--drain", "--timeout", "3s"]);
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /timed out with RelayDomains left/);
    await admin.mergePatch(Resources.RelayDomain, "team-a", "stuck-com", { metadata: { finalizers: null } });
  });

  it("refuses a bad flag with its usage", () => {
    const result = check(["--timeout", "soon"]);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--timeout: expected a duration/);
  });
});
