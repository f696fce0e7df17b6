// The chart as a user gets it: `helm` from .tools/bin renders charts/mxwarden, and the objects are
// parsed for tests that install or inspect them. Also the REST mapping of every kind the chart
// renders, so objects can be applied through the operator's own ApiClient.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { Unstructured } from "../../operator/src/kube/api-client.ts";
import { refForKind, type ResourceRef } from "../../operator/src/kube/resources.ts";
import { repoRoot } from "./workspace.ts";

export const CHART_DIR = join(repoRoot, "charts/mxwarden");
export const HELM = join(repoRoot, ".tools/bin/helm");
export const KUBECTL = join(repoRoot, ".tools/bin/kubectl");

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], input?: string): ToolResult {
  const result = spawnSync(command, args, { encoding: "utf8", input, maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

export function helm(args: string[]): ToolResult {
  return run(HELM, args);
}

/** `helm template` of the chart; throws with helm's message when it fails. */
export function helmTemplate(namespace: string, args: string[] = [], release = "mxwarden"): Unstructured[] {
  const result = helm(["template", release, CHART_DIR, "--namespace", namespace, ...args]);
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseManifests(result.stdout);
}

export function parseManifests(text: string): Unstructured[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Unstructured | null)
    .filter((o): o is Unstructured => o !== null);
}

export function findObject(objects: Unstructured[], kind: string, name?: string): Unstructured | undefined {
  return objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

/** The operator's table has no cluster-wide RBAC kinds (it never writes them); the chart does. */
const CHART_ONLY: Record<string, ResourceRef> = {
  ClusterRole: { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", namespaced: false },
  ClusterRoleBinding: { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", namespaced: false },
};

export function refOf(object: Unstructured): ResourceRef {
  return CHART_ONLY[object.kind ?? ""] ?? refForKind(object.kind ?? "");
}
