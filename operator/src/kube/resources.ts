// REST paths of the resources the operator touches. A fixed table instead of discovery: the
// operator knows every kind it reads or writes, and RBAC lists the same set.

export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

function ref(apiVersion: string, plural: string, namespaced: boolean): ResourceRef {
  const [group, version] = apiVersion.includes("/") ? (apiVersion.split("/") as [string, string]) : ["", apiVersion];
  return { group, version, plural, namespaced };
}

export const Resources = {
  RelayDomain: ref("mxwarden.io/v1alpha1", "relaydomains", true),
  RelaySite: ref("mxwarden.io/v1alpha1", "relaysites", false),
  RelayQueueRequest: ref("mxwarden.io/v1alpha1", "relayqueuerequests", true),
  Namespace: ref("v1", "namespaces", false),
  ServiceAccount: ref("v1", "serviceaccounts", true),
  ConfigMap: ref("v1", "configmaps", true),
  Secret: ref("v1", "secrets", true),
  Service: ref("v1", "services", true),
  Event: ref("events.k8s.io/v1", "events", true),
  Deployment: ref("apps/v1", "deployments", true),
  StatefulSet: ref("apps/v1", "statefulsets", true),
  PodDisruptionBudget: ref("policy/v1", "poddisruptionbudgets", true),
  NetworkPolicy: ref("networking.k8s.io/v1", "networkpolicies", true),
  Role: ref("rbac.authorization.k8s.io/v1", "roles", true),
  RoleBinding: ref("rbac.authorization.k8s.io/v1", "rolebindings", true),
  Lease: ref("coordination.k8s.io/v1", "leases", true),
  CustomResourceDefinition: ref("apiextensions.k8s.io/v1", "customresourcedefinitions", false),
  ServiceMonitor: ref("monitoring.coreos.com/v1", "servicemonitors", true),
  PrometheusRule: ref("monitoring.coreos.com/v1", "prometheusrules", true),
} as const;

export type ResourceKind = keyof typeof Resources;

export function refForKind(kind: string): ResourceRef {
  const found = (Resources as Record<string, ResourceRef>)[kind];
  if (!found) throw new Error(`the operator has no REST mapping for kind ${kind}`);
  return found;
}

export function resourcePath(resource: ResourceRef, namespace?: string, name?: string): string {
  const base = resource.group === "" ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  const ns = resource.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  return `${base}${ns}/${resource.plural}${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;
}
