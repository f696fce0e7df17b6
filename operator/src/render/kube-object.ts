// The loose shape every rendered Kubernetes object has. Rendered objects are plain data: the
// render functions are pure, so tests check them without a cluster.

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  };
  [field: string]: unknown;
}

/** Identity of an object for logs, diffs and pruning. */
export function objectKey(object: Pick<KubeObject, "apiVersion" | "kind" | "metadata">): string {
  return `${object.apiVersion}/${object.kind}/${object.metadata.namespace ?? ""}/${object.metadata.name}`;
}
