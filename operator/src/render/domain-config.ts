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
  return rendered(domain).problem;
}

interface RenderedDocument {
  /** Why the relays would refuse it, if they would. */
  problem: string | undefined;
  /** The file relays load (YAML 1.1, as relays read it and kubectl does: a string such as "no" or "off" is quoted). */
  yaml: string | undefined;
}

/**
 * Documents already validated and rendered, by everything they are made of. Every site reconcile
 * renders every RelayDomain; with 10,000 of them validation and YAML took 5-6 s of the operator's
 * only thread each time (bench/cluster-scale.ts), and the domain reconciles waited behind it. Kept
 * for the RelayDomains of the last siteDomainConfig() call (all of them: it is given the whole list).
 */
let documents = new Map<string, RenderedDocument>();

function documentKey(domain: RelayDomain): string {
  const { namespace, name, generation, deletionTimestamp } = domain.metadata;
  return JSON.stringify([namespace, name, generation, deletionTimestamp, domain.spec]);
}

function rendered(domain: RelayDomain, key = documentKey(domain)): RenderedDocument {
  const known = documents.get(key);
  if (known) return known;
  let problem: string | undefined;
  try {
    validate(relayDomainSpecSchema, relayDocument(domain).spec, "spec");
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problem = err.message;
  }
  const document = { problem, yaml: problem === undefined ? stringify(relayDocument(domain), { version: "1.1" }) : undefined };
  documents.set(key, document);
  return document;
}

export interface SiteDomainConfig {
  data: Record<string, string>;
  /** Stable hash of data: changes exactly when what relays load changes. */
  hash: string;
  domains: RelayDomain[];
}

/** Valid domains serving `site`, one file each; two resources claiming one mail domain: the older wins. */
export function siteDomainConfig(site: RelaySite, domains: readonly RelayDomain[]): SiteDomainConfig {
  const kept = new Map<string, RenderedDocument>();
  const documentOf = new Map<RelayDomain, RenderedDocument>();
  for (const domain of domains) {
    const key = documentKey(domain);
    const document = rendered(domain, key);
    kept.set(key, document);
    documentOf.set(domain, document);
  }
  documents = kept;
  const chosen = new Map<string, RelayDomain>();
  const ordered = [...domains].sort(
    (a, b) => (a.metadata.creationTimestamp ?? "").localeCompare(b.metadata.creationTimestamp ?? "") || configKey(a).localeCompare(configKey(b)),
  );
  for (const domain of ordered) {
    if (!servesSite(domain, site) || documentOf.get(domain)?.problem !== undefined) continue;
    const mailDomain = domainKey(domain.spec.domain);
    if (!chosen.has(mailDomain)) chosen.set(mailDomain, domain);
  }
  const selected = [...chosen.values()].sort((a, b) => configKey(a).localeCompare(configKey(b)));
  const data: Record<string, string> = {};
  for (const domain of selected) data[configKey(domain)] = documentOf.get(domain)?.yaml ?? "";
  const hash = createHash("sha256");
  for (const [key, value] of Object.entries(data)) hash.update(`${key}\u0000${value}\u0000`);
  return { data, hash: hash.digest("hex").slice(0, 16), domains: selected };
}

/** The label that marks a site's domain ConfigMaps; relays watch the ConfigMaps carrying it (--domains-configmaps). */
export const DOMAIN_CONFIG_LABEL = "mxwarden.io/domain-config";
/** Target size of one shard: half of the 1 MiB a ConfigMap may hold, so a shard has room to grow between reshards. */
const SHARD_TARGET_BYTES = 512 * 1024;
/** A shard above this is split by doubling the shard count (ConfigMaps hold at most 1 MiB, keys and metadata included). */
const SHARD_MAX_BYTES = 900 * 1024;

export interface DomainConfigShard {
  name: string;
  data: Record<string, string>;
}

function shardOf(key: string, count: number): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0) % count;
}

/**
 * The site's documents over ConfigMaps named mxwarden-domains-<count>-<index>. A file stays in
 * the same shard while the count stays (it is chosen by a hash of its key), so a change to one
 * domain rewrites one ConfigMap. The count is a power of two, the smallest that keeps shards near
 * SHARD_TARGET_BYTES and every shard under SHARD_MAX_BYTES; when it changes, the new set carries a
 * new name, is written whole before the old set is deleted, and relays, which read the union, never
 * see a domain missing.
 */
export function domainConfigShards(config: SiteDomainConfig): DomainConfigShard[] {
  const entries = Object.entries(config.data);
  const total = entries.reduce((sum, [key, value]) => sum + key.length + Buffer.byteLength(value), 0);
  let count = 1;
  while (count * SHARD_TARGET_BYTES < total) count *= 2;
  for (;;) {
    const shards = Array.from({ length: count }, () => ({ data: {} as Record<string, string>, bytes: 0 }));
    for (const [key, value] of entries) {
      const shard = shards[shardOf(key, count)] as (typeof shards)[number];
      shard.data[key] = value;
      shard.bytes += key.length + Buffer.byteLength(value);
    }
    if (shards.every((shard) => shard.bytes <= SHARD_MAX_BYTES) || count >= 1024) {
      return shards.map((shard, index) => ({ name: `mxwarden-domains-${count}-${index}`, data: shard.data }));
    }
    count *= 2;
  }
}
