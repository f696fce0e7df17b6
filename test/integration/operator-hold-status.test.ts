// A RelayDomain's maintenance hold in its status on a real API server: the status schema of the
// generated CRD takes status.hold, the operator writes it by server-side apply after an owner's
// `kubectl apply`, and the field and its condition go again when the owner removes the hold.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { KUBECTL, run } from "../harness/helm.ts";
import { OperatorProcess } from "../harness/operator-process.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";
import { ApiClient } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import type { RelayDomain } from "#api";

const OPERATOR_NS = "mxwarden-system";

describe("operator: the maintenance hold in a RelayDomain's status, on a real API server", () => {
  const work = tempDir("operator-hold");
  let plane: TestControlPlane;
  let operator: OperatorProcess | undefined;

  const kubectl = (args: string[], input?: string): string => {
    const result = run(KUBECTL, ["--kubeconfig", plane.kubeconfigPath, ...args], input);
    assert.equal(result.status, 0, `kubectl ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const domain = (): RelayDomain => JSON.parse(kubectl(["-n", "team-a", "get", "relaydomain", "example", "-o", "json"])) as RelayDomain;
  const document = (hold: string): string =>
    `apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata:\n  name: example\n  namespace: team-a\nspec:\n  domain: example.test\n  queue:\n    lifetime: 1h\n${hold}`;

  before(async () => {
    plane = await TestControlPlane.start({ name: "hold-status" });
    await plane.installCrds([join(repoRoot, "crds/relaydomains.mxwarden.io.yaml"), join(repoRoot, "crds/relaysites.mxwarden.io.yaml")]);
    const client = new ApiClient(plane.kubeConfig());
    for (const ns of [OPERATOR_NS, "team-a"]) await client.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    operator = await OperatorProcess.start({ dir: work.path, kubeconfigPath: plane.kubeconfigPath, namespace: OPERATOR_NS, identity: "operator-1" });
  });

  after(async () => {
    await operator?.stop();
    await plane?.stop();
    work.remove();
  });

  it("shows a capped hold after kubectl apply, and removes it when the owner removes the hold", async () => {
    // Two hours ahead with a queue lifetime of 1h: each message is held at most 48 minutes.
    const untilMs = Math.floor(Date.now() / 1000) * 1000 + 2 * 3_600_000;
    const until = new Date(untilMs).toISOString();
    kubectl(["apply", "-f", "-"], document(`  hold:\n    until: "${until}"\n`));
    const held = await eventually(
      "status.hold written",
      () => {
        const current = domain();
        return current.status?.hold ? current : undefined;
      },
      120_000,
      250,
    );
    assert.deepEqual(held.status?.hold, { until, maxHold: "48m", capped: true });
    const condition = held.status?.conditions?.find((c) => c.type === "Held");
    assert.equal(condition?.status, "True");
    assert.equal(condition?.reason, "HoldCapped");
    assert.ok(
      condition?.message.includes(`mail accepted before ${new Date(untilMs - 48 * 60_000).toISOString()} is released before ${until}`),
      condition?.message,
    );

    kubectl(["apply", "-f", "-"], document(""));
    const lifted = await eventually(
      "status.hold removed",
      () => {
        const current = domain();
        return current.spec.hold === undefined && current.status?.hold === undefined ? current : undefined;
      },
      120_000,
      250,
    );
    assert.equal(
      lifted.status?.conditions?.find((c) => c.type === "Held"),
      undefined,
    );
    assert.ok(
      lifted.status?.conditions?.some((c) => c.type === "Ready"),
      "the rest of the status stays",
    );
  });
});
