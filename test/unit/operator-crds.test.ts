import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseRelayDomain } from "../../relay/src/config/relay-domain.ts";
import { allCrds, relayDomainCrd } from "#api";
import { crdDirectories, crdFileName, renderCrdYaml, repoRoot } from "../../api/generate-crds.ts";
import { parse } from "yaml";
import { OPERATOR_ONLY_SPEC_FIELDS, YAML11_BOOLEAN_WORDS } from "#api";

/** The part of an OpenAPI schema these tests walk. */
interface Schema {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema;
  "x-kubernetes-int-or-string"?: boolean;
}

/** Every property path under a schema, such as "primary.hosts[].port". */
function propertyPaths(schema: Schema, prefix = ""): string[] {
  const paths: string[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    paths.push(path);
    paths.push(...propertyPaths(child, path));
    if (child.items) paths.push(...propertyPaths(child.items, `${path}[]`));
  }
  return paths;
}

function valuePaths(value: unknown, prefix = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((item) => valuePaths(item, `${prefix}[]`));
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = prefix ? `${prefix}.${key}` : key;
    return [path, ...valuePaths(child, path)];
  });
}

/** A RelayDomain spec that sets every field the CRD has (operator-only ones excepted). */
const fullSpec = {
  domain: "example.com",
  primary: { hosts: [{ host: "mx1.example.com", port: 25 }], tls: { mode: "required", verifyCertificate: true } },
  recipients: { mode: "verify", verify: { positiveTtl: "1d", negativeTtl: "1h", whenUnavailable: "accept" } },
  maxMessageSize: "25Mi",
  queue: { lifetime: "5d", delayWarning: "4h", retry: { initialBackoff: "1m", maxBackoff: "1h" }, deletionGracePeriod: "2h" },
  hold: { until: "2026-12-24T06:00:00Z" },
  acceptWhen: "primaryDown",
  access: {
    allow: { clients: ["198.51.100.0/24"], senders: ["partner@partner.example"], senderDomains: ["partner.example"] },
    block: { clients: ["203.0.113.0/24"], senders: ["spam@spam.example"], senderDomains: ["spam.example"] },
  },
  antivirus: { enabled: true, onError: "tempfail", maxScanSize: "20Mi", onOversize: "accept" },
  antispam: { enabled: true, onError: "accept", rejectScore: 15, addHeaderScore: 6 },
  greylisting: { enabled: true, delay: "5m", expiry: "2d", autoAllow: "35d", allowClients: ["192.0.2.0/24"], allowSenderDomains: ["partner.example"] },
  dnsbl: { zones: ["zen.example"], allowZones: ["list.dnswl.example"], onError: "accept" },
  authentication: { enabled: true, rejectDmarcReject: true, rejectSpfFail: false },
  rateLimits: { perClient: "100/1m", perSenderDomain: "500/1h", perDomain: "10000/1h" },
  clientChecks: { rejectHeloOurName: true, rejectInvalidHelo: true, reverseDns: "tempfail" },
};

describe("CRDs", () => {
  it("committed files are what the TypeScript API generates (run `make generate` after changing it)", () => {
    for (const dir of crdDirectories) {
      for (const crd of allCrds) {
        const committed = readFileSync(join(repoRoot, dir, crdFileName(crd)), "utf8");
        assert.equal(committed, renderCrdYaml(crd), `${dir}/${crdFileName(crd)} is stale`);
      }
    }
  });

  it("the RelayDomain schema and the relay's parser know the same spec fields", () => {
    const root = relayDomainCrd.spec.versions[0]?.schema.openAPIV3Schema as Schema;
    const schema = root.properties?.spec as Schema;
    const schemaPaths = propertyPaths(schema).filter((p) => !OPERATOR_ONLY_SPEC_FIELDS.some((f) => p === f || p.startsWith(`${f}.`) || p.startsWith(`${f}[`)));
    const examplePaths = valuePaths(fullSpec);
    // recipients.list is exclusive with verify; check it separately below.
    assert.deepEqual(schemaPaths.filter((p) => p !== "recipients.list").sort(), [...new Set(examplePaths)].sort());
    parseRelayDomain({ apiVersion: "mxwarden.io/v1alpha1", kind: "RelayDomain", metadata: { name: "full" }, spec: fullSpec });
    parseRelayDomain({
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "list" },
      spec: { domain: "example.com", recipients: { mode: "list", list: ["alice"] } },
    });
  });

  it("is structural: every property has a type, or is int-or-string", () => {
    for (const crd of allCrds) {
      const walk = (schema: Schema, path: string): void => {
        assert.ok(schema.type !== undefined || schema["x-kubernetes-int-or-string"] === true, `${crd.metadata.name} ${path} has no type`);
        for (const [name, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${name}`);
        if (schema.items) walk(schema.items, `${path}[]`);
        if (schema.additionalProperties) walk(schema.additionalProperties, `${path}{}`);
      };
      walk(crd.spec.versions[0]?.schema.openAPIV3Schema as Schema, "");
    }
  });

  // kubectl and helm read YAML 1.1, where a plain off/on/yes/no is a boolean.
  it("reads the same as YAML 1.1 (kubectl, helm) and as YAML 1.2", () => {
    for (const crd of allCrds) {
      const text = renderCrdYaml(crd);
      assert.deepEqual(parse(text, { version: "1.1" }), parse(text), `${crdFileName(crd)} changes meaning under YAML 1.1`);
    }
  });

  it("has no spec enum value or string default that YAML 1.1 reads as a boolean", () => {
    for (const crd of allCrds) {
      const walk = (schema: Schema, path: string): void => {
        for (const value of [...(schema.enum ?? []), schema.default]) {
          if (typeof value === "string") assert.ok(!YAML11_BOOLEAN_WORDS.has(value.toLowerCase()), `${crd.metadata.name} ${path}: ${value}`);
        }
        for (const [name, child] of Object.entries(schema.properties ?? {})) walk(child, `${path}.${name}`);
        if (schema.items) walk(schema.items, `${path}[]`);
      };
      const root = crd.spec.versions[0]?.schema.openAPIV3Schema as Schema | undefined;
      walk(root?.properties?.spec as Schema, ".spec");
    }
  });
});
