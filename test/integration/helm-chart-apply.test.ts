// What `helm install` would send, checked by a real kube-apiserver without installing anything:
// every manifest the chart renders (default values, every option with the Prometheus Operator
// present, siteAccess mode) and the examples go through kubectl's server-side apply with server
// dry run and strict field validation, so an unknown field, a wrong type or a CRD rule fails here.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { CHART_DIR, HELM, KUBECTL, parseManifests, run } from "../harness/helm.ts";
import { writeMonitoringCrds } from "../harness/monitoring-crds.ts";
import { repoRoot, tempDir } from "../harness/workspace.ts";
import { ApiClient } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

const OPERATOR_NS = "mxwarden-system";
const SITE_NS = "mxwarden";
const TEAM_NS = "team-a";

describe("chart manifests and examples in a real API server (server-side dry run)", () => {
  const work = tempDir("helm-apply");
  let plane: TestControlPlane;
  let admin: ApiClient;

  /** kubectl apply --server-side --dry-run=server; returns kubectl's lines, one per object. */
  function dryRunApply(manifest: string, namespace: string): string[] {
    const result = run(
      KUBECTL,
      [
        "--kubeconfig",
        plane.kubeconfigPath,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=helm",
        "--namespace",
        namespace,
        "-f",
        "-",
      ],
      manifest,
    );
    assert.equal(result.status, 0, `kubectl apply refused:\n${result.stderr}`);
    return result.stdout.trim().split("\n");
  }

  function render(namespace: string, args: string[]): string {
    const result = run(HELM, ["template", "mxwarden", CHART_DIR, "--namespace", namespace, ...args]);
    assert.equal(result.status, 0, result.stderr);
    return result.stdout;
  }

  before(async () => {
    plane = await TestControlPlane.start({ name: "helm-apply" });
    admin = new ApiClient(plane.kubeConfig());
    await plane.installCrds([
      join(CHART_DIR, "crds/relaydomains.mxwarden.io.yaml"),
      join(CHART_DIR, "crds/relaysites.mxwarden.io.yaml"),
      writeMonitoringCrds(work.path),
    ]);
    for (const name of [OPERATOR_NS, SITE_NS, TEAM_NS]) await admin.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  });
  after(async () => {
    await plane?.stop();
    work.remove();
  });

  for (const [variant, namespace, args] of [
    ["default values", OPERATOR_NS, []],
    [
      "every option, Prometheus Operator present",
      OPERATOR_NS,
      ["-f", join(CHART_DIR, "ci/all-options-values.yaml"), "--api-versions", "monitoring.coreos.com/v1"],
    ],
    ["siteAccess mode", SITE_NS, ["--set", "mode=siteAccess"]],
  ] as const) {
    it(`accepts every manifest rendered with ${variant}`, () => {
      const manifest = render(namespace, [...args]);
      const objects = parseManifests(manifest);
      assert.ok(objects.length > 0);
      const lines = dryRunApply(manifest, namespace);
      assert.equal(lines.length, objects.length, lines.join("\n"));
      for (const line of lines) assert.match(line, /serverside-applied \(server dry run\)$/);
    });
  }

  it("accepts the examples", () => {
    assert.equal(dryRunApply(readFileSync(join(repoRoot, "examples/relaysites.yaml"), "utf8"), OPERATOR_NS).length, 2);
    assert.equal(dryRunApply(readFileSync(join(repoRoot, "examples/relaydomain.yaml"), "utf8"), TEAM_NS).length, 1);
  });

  it("installed nothing: a dry run leaves the cluster as it was", async () => {
    assert.deepEqual((await admin.list(Resources.RelaySite)).items, []);
    assert.deepEqual((await admin.list(Resources.RelayDomain, TEAM_NS)).items, []);
    assert.deepEqual(
      (await admin.list(Resources.ServiceAccount, OPERATOR_NS)).items.map((sa) => sa.metadata.name).filter((name) => name.startsWith("mxwarden")),
      [],
    );
  });
});
