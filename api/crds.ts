// The CustomResourceDefinitions, built from the schemas in this folder. `crds/*.yaml` and the
// chart's copies are generated from here (api/generate-crds.ts); a test fails when
// they are stale.

import type { TSchema } from "@sinclair/typebox";
import { GROUP, VERSION, relayDomainSpecSchema, relayDomainStatusSchema } from "./relay-domain.ts";
import { relayQueueRequestSpecSchema, relayQueueRequestStatusSchema } from "./relay-queue-request.ts";
import { relaySiteSpecSchema, relaySiteStatusSchema } from "./relay-site.ts";

/** A schema as the CRD carries it: plain JSON, without what only the relay's validator reads. */
export type Schema = Record<string, unknown>;

function openApi(schema: TSchema): Schema {
  // TypeBox and the relay's checks keep their data under symbol keys, which JSON leaves out.
  return JSON.parse(JSON.stringify(schema)) as Schema;
}

interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "date";
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    scope: "Namespaced" | "Cluster";
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

function crd(
  kind: string,
  plural: string,
  shortName: string,
  scope: "Namespaced" | "Cluster",
  description: string,
  spec: TSchema,
  status: TSchema,
  columns: PrinterColumn[],
): CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${GROUP}`, labels: { "app.kubernetes.io/part-of": "mxwarden" } },
    spec: {
      group: GROUP,
      scope,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: [shortName], categories: ["mxwarden"] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: {
            openAPIV3Schema: {
              type: "object",
              description,
              properties: {
                apiVersion: { type: "string", description: "Versioned schema of this object" },
                kind: { type: "string", description: "REST resource this object represents" },
                metadata: { type: "object" },
                spec: openApi(spec),
                status: openApi(status),
              },
              required: ["spec"],
            },
          },
        },
      ],
    },
  };
}

const readyColumn: PrinterColumn = {
  name: "Ready",
  type: "string",
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: "Summary Ready condition",
};
const ageColumn: PrinterColumn = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: "Time since creation" };

export const relayDomainCrd = crd(
  "RelayDomain",
  "relaydomains",
  "rdom",
  "Namespaced",
  "A mail domain served by mxwarden's backup MX relays",
  relayDomainSpecSchema,
  relayDomainStatusSchema,
  [
    { name: "Domain", type: "string", jsonPath: ".spec.domain", description: "Mail domain" },
    { name: "Sites", type: "string", jsonPath: ".status.sitesReady", description: "Ready sites out of those serving the domain" },
    { name: "Queued", type: "integer", jsonPath: ".status.queuedMessages", description: "Messages queued for the domain across sites" },
    readyColumn,
    ageColumn,
  ],
);

export const relaySiteCrd = crd(
  "RelaySite",
  "relaysites",
  "rsite",
  "Cluster",
  "A site of mxwarden relays: one cluster, one NATS JetStream domain",
  relaySiteSpecSchema,
  relaySiteStatusSchema,
  [
    { name: "Hostname", type: "string", jsonPath: ".spec.hostname", description: "SMTP host name of the site" },
    { name: "Relays", type: "integer", jsonPath: ".status.readyReplicas", description: "Relay pods ready (one READY column: the Ready condition)" },
    { name: "Domains", type: "integer", jsonPath: ".status.domains", description: "Domains served" },
    readyColumn,
    {
      name: "Reachable",
      type: "string",
      jsonPath: '.status.conditions[?(@.type=="ClusterReachable")].status',
      description: "The site's cluster answers",
      priority: 1,
    },
    ageColumn,
  ],
);

export const relayQueueRequestCrd = crd(
  "RelayQueueRequest",
  "relayqueuerequests",
  "rqr",
  "Namespaced",
  "One queue operation (list, retry, hold, release, delete, bounce, find) on the mail of a RelayDomain in the same namespace",
  relayQueueRequestSpecSchema,
  relayQueueRequestStatusSchema,
  [
    { name: "Domain", type: "string", jsonPath: ".spec.domainRef", description: "RelayDomain in this namespace" },
    { name: "Action", type: "string", jsonPath: ".spec.action", description: "What was asked" },
    { name: "Phase", type: "string", jsonPath: ".status.phase", description: "Pending, Running, Succeeded or Failed" },
    { name: "By", type: "string", jsonPath: ".spec.requestedBy", description: "Who asked", priority: 1 },
    ageColumn,
  ],
);

export const allCrds = [relayDomainCrd, relaySiteCrd, relayQueueRequestCrd];
