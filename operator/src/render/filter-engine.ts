// What a filter engine the operator runs next to a site's relays (clamd, rspamd) is made of: a
// ConfigMap with its configuration, a Deployment under the restricted Pod Security Standard that
// rolls when that configuration changes, a ClusterIP Service, a PodDisruptionBudget, and a
// NetworkPolicy that lets only the site's relays reach its port. Pure, like site-objects.ts: the
// engines' own modules (clamd-objects.ts, rspamd-objects.ts) say what runs in the pod.

import { createHash } from "node:crypto";
import type { RelaySite } from "#api";
import { restrictedPodSecurity, spreadOverZonesAndNodes, type KubeObject } from "./kube-object.ts";

export interface FilterEngine {
  /** Name of every object of the engine, and its app.kubernetes.io/name label. */
  name: string;
  port: { name: string; number: number };
  /** The image's own service user and group: the pods run as them. */
  user: number;
  group: number;
  replicas: number;
  /** The ConfigMap's files; a change rolls the pods. */
  config: Record<string, string>;
  pod: { initContainers?: unknown[]; containers: unknown[]; volumes: unknown[] };
  /** Long enough for scans in flight to finish. */
  terminationGracePeriodSeconds: number;
}

export function engineLabels(site: RelaySite, name: string): Record<string, string> {
  return { "app.kubernetes.io/name": name, "app.kubernetes.io/instance": site.metadata.name };
}

/** The engine's objects in the site's namespace; `relaySelector` picks the only pods that may reach it. */
export function renderFilterEngine(site: RelaySite, namespace: string, engine: FilterEngine, relaySelector: Record<string, string>): KubeObject[] {
  const selector = engineLabels(site, engine.name);
  const labels = {
    ...selector,
    "app.kubernetes.io/part-of": "mxwarden",
    "app.kubernetes.io/managed-by": "mxwarden-operator",
    "mxwarden.io/site": site.metadata.name,
  };
  const configHash = createHash("sha256").update(JSON.stringify(engine.config)).digest("hex").slice(0, 16);
  return [
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: engine.name, namespace, labels }, data: engine.config },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: engine.name, namespace, labels },
      spec: {
        replicas: engine.replicas,
        selector: { matchLabels: selector },
        // A new pod loads its signatures or rules before an old one goes: relays never lose the engine.
        strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: { labels, annotations: { "mxwarden.io/config-hash": configHash } },
          spec: {
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: engine.terminationGracePeriodSeconds,
            securityContext: restrictedPodSecurity(engine.user, engine.group),
            topologySpreadConstraints: spreadOverZonesAndNodes(selector),
            ...(engine.pod.initContainers ? { initContainers: engine.pod.initContainers } : {}),
            containers: engine.pod.containers,
            volumes: engine.pod.volumes,
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: engine.name, namespace, labels },
      spec: { type: "ClusterIP", selector, ports: [{ name: engine.port.name, port: engine.port.number, targetPort: engine.port.name, protocol: "TCP" }] },
    },
    {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: engine.name, namespace, labels },
      spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: engine.name, namespace, labels },
      spec: {
        podSelector: { matchLabels: selector },
        // Ingress only: the engines fetch signatures, maps and DNS answers from outside.
        policyTypes: ["Ingress"],
        ingress: [{ from: [{ podSelector: { matchLabels: relaySelector } }], ports: [{ protocol: "TCP", port: engine.port.number }] }],
      },
    },
  ];
}

/** Kinds and names of what renderFilterEngine creates, for clean-up. */
export function filterEngineObjects(name: string): [kind: string, name: string][] {
  return [
    ["Deployment", name],
    ["Service", name],
    ["PodDisruptionBudget", name],
    ["NetworkPolicy", name],
    ["ConfigMap", name],
  ];
}

/** Default requests and limits, each replaced by the value the user gives for the same key. */
export function mergedResources(
  defaults: { requests: Record<string, string>; limits: Record<string, string> },
  given: { requests?: Record<string, string> | undefined; limits?: Record<string, string> | undefined } | undefined,
): { requests: Record<string, string>; limits: Record<string, string> } {
  return { requests: { ...defaults.requests, ...(given?.requests ?? {}) }, limits: { ...defaults.limits, ...(given?.limits ?? {}) } };
}
