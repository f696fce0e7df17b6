// Stand-ins for the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule): the same group,
// version and names, with a schema that keeps every field. Enough for the API server to serve the
// kinds, so the chart's capability check and the operator's monitoring objects take their real path.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";

function crd(kind: string, plural: string): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: "monitoring.coreos.com",
      scope: "Namespaced",
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
    },
  };
}

/** Writes the two CRDs into `dir` and returns the file, for TestControlPlane.installCrds. */
export function writeMonitoringCrds(dir: string): string {
  const path = join(dir, "monitoring-crds.yaml");
  writeFileSync(path, [crd("ServiceMonitor", "servicemonitors"), crd("PrometheusRule", "prometheusrules")].map((c) => stringify(c)).join("---\n"));
  return path;
}
