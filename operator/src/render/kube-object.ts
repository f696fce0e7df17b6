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

/** A pod security context under the restricted Pod Security Standard, running as one non-root identity. */
export function restrictedPodSecurity(user: number, group: number) {
  return { runAsNonRoot: true, runAsUser: user, runAsGroup: group, fsGroup: group, seccompProfile: { type: "RuntimeDefault" } } as const;
}

/** The pod security context of mxwarden's own pods (relays, NATS): uid and gid 10001. */
export const RESTRICTED_POD_SECURITY = restrictedPodSecurity(10001, 10001);

/** The container security context of every container the operator runs: restricted, read-only root. */
export const RESTRICTED_CONTAINER_SECURITY = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/** Spread a workload's pods over zones, then nodes, without refusing to schedule where there is one of either. */
export function spreadOverZonesAndNodes(selector: Record<string, string>): unknown[] {
  return [
    { maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: selector } },
    { maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "ScheduleAnyway", labelSelector: { matchLabels: selector } },
  ];
}
