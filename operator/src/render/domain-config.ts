// The documents relays load: one YAML file per RelayDomain in the site's ConfigMap. A document is
// the resource itself minus what only the operator reads, plus metadata.generation (relays report
// which generation they run) and metadata.deletionTimestamp (relays stop taking new mail for a
// domain being deleted and bounce its queue after the grace period).

import { createHash } from "node:crypto";
import { stringify } from "yaml";
import {
  API_VERSION,
  ConfigError,
  OPERATOR_ONLY_SPEC_FIELDS,
  domainKey,
  relayDomainSpecSchema,
  validate,
  type RelayDomain,
  type RelayDomainSpec,
  type RelaySite,
} from "#api";

export function servesSite(domain: RelayDomain, site: RelaySite): boolean {
  return domain.spec.sites === undefined || domain.spec.sites.includes(site.metadata.name);
}

/** ConfigMap keys must be [-._a-zA-Z0-9]+; namespace and name are both DNS labels/subdomains. */
export function configKey(domain: RelayDomain): string {
  return `${domain.metadata.namespace ?? "default"}.${domain.metadata.name}.yaml`;
}

export function relayDocument(domain: RelayDomain): Record<string, unknown> {
  const spec: Partial<RelayDomainSpec> = { ...domain.spec };
  for (const field of OPERATOR_ONLY_SPEC_FIELDS) delete spec[field];
  return {
    apiVersion: API_VERSION,
    kind: "RelayDomain",
    metadata: {
      name: `${domain.metadata.namespace ?? "default"}/${domain.metadata.name}`,
      generation: domain.metadata.generation ?? 0,
      ...(domain.metadata.deletionTimestamp ? { deletionTimestamp: domain.metadata.deletionTimestamp } : {}),
    },
    spec,
  };
}

/**
 * The relay's validation of a RelayDomain, the same schema and rules as the CRD's: it catches
 * objects written before the CRD was upgraded, or stored through a path that skipped validation.
 */
export function validateForRelay(domain: RelayDomain): string | undefined {
  try {
    validate(relayDomainSpecSchema, relayDocument(domain).spec, "spec");
    return undefined;
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
}

export interface SiteDomainConfig {
  data: Record<string, string>;
  /** Stable hash of data: changes exactly when what relays load changes. */
  hash: string;
  domains: RelayDomain[];
}

/** Valid domains serving `site`, one file each; two resources claiming one mail domain: the older wins. */
export function siteDomainConfig(site: RelaySite, domains: readonly RelayDomain[]): SiteDomainConfig {
  const chosen = new Map<string, RelayDomain>();
  const ordered = [...domains].sort(
    (a, b) => (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? "") || configKey(a).localeCompare(configKey(b)),
  );
  for (const domain of ordered) {
    if (!servesSite(domain, site) || validateForRelay(domain) !== undefined) continue;
    const mailDomain = domainKey(domain.spec.domain);
    if (!chosen.has(mailDomain)) chosen.set(mailDomain, domain);
  }
  const selected = [...chosen.values()].sort((a, b) => configKey(a).localeCompare(configKey(b)));
  const data: Record<string, string> = {};
  // YAML 1.1, as relays read it (and kubectl does): a string such as "no" or "off" is quoted.
  for (const domain of selected) data[configKey(domain)] = stringify(relayDocument(domain), { version: "1.1" });
  const hash = createHash("sha256");
  for (const [key, value] of Object.entries(data)) hash.update(`${key}\u0000${value}\u0000`);
  return { data, hash: hash.digest("hex").slice(0, 16), domains: selected };
}
