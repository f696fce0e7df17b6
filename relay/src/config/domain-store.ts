// Loads RelayDomain documents from a file or a directory (a mounted ConfigMap) and reloads them
// when they change, without a restart. A document that fails validation is reported and skipped;
// the domains that were valid before keep their last good policy, so a typo in one resource
// never stops mail for the others.

import { readdir, readFile, stat } from "node:fs/promises";
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, type Tags } from "yaml";
import type { Logger } from "../log.ts";
import { ConfigError, parseRelayDomain, type DomainPolicy } from "./relay-domain.ts";

export interface DomainTable {
  /** Policy by lower-case ASCII domain. */
  readonly byDomain: ReadonlyMap<string, DomainPolicy>;
  /**
   * 0 until the first successful load (of no documents, too: a site may serve no domain yet),
   * then increases with every reload that changed the table.
   */
  readonly generation: number;
}

export interface LoadProblem {
  source: string;
  message: string;
}

const yamlFile = /\.(ya?ml)$/i;

/**
 * YAML 1.1 as kubectl reads it (sigs.k8s.io/yaml): a plain off is a boolean, but a plain
 * 2026-12-24T06:00:00Z stays a string, as go-yaml keeps timestamps it decodes into no Go time.
 */
const YAML_AS_KUBECTL = {
  version: "1.1",
  customTags: (tags: Tags) => tags.filter((tag) => typeof tag === "string" || tag.tag !== "tag:yaml.org,2002:timestamp"),
} as const;

async function listSources(path: string): Promise<string[]> {
  const info = await stat(path);
  if (!info.isDirectory()) return [path];
  // Kubernetes mounts ConfigMaps as symlinks into a "..data" directory; skip the dot entries
  // and read the visible names, which always point at the current version.
  const entries = await readdir(path);
  return entries
    .filter((name) => !name.startsWith(".") && yamlFile.test(name))
    .sort()
    .map((name) => join(path, name));
}

export async function loadDomainDocuments(path: string): Promise<{ policies: DomainPolicy[]; problems: LoadProblem[]; fingerprint: string }> {
  const policies: DomainPolicy[] = [];
  const problems: LoadProblem[] = [];
  const texts: string[] = [];
  for (const source of await listSources(path)) {
    const text = await readFile(source, "utf8");
    texts.push(source, text);
    for (const [index, doc] of parseAllDocuments(text, YAML_AS_KUBECTL).entries()) {
      const where = `${source}#${index}`;
      if (doc.errors.length > 0) {
        problems.push({ source: where, message: doc.errors[0]?.message ?? "YAML error" });
        continue;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) continue;
      try {
        policies.push(parseRelayDomain(value));
      } catch (err) {
        problems.push({ source: where, message: err instanceof ConfigError ? err.message : String(err) });
      }
    }
  }
  return { policies, problems, fingerprint: texts.join("\u0000") };
}

export class DomainStore {
  private table: DomainTable = { byDomain: new Map(), generation: 0 };
  /** Undefined until the first load: an empty directory fingerprints as "" and must still count. */
  private fingerprint: string | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private readonly listeners: Array<(table: DomainTable, problems: LoadProblem[]) => void> = [];
  private readonly path: string;
  private readonly log: Logger;

  constructor(path: string, log: Logger) {
    this.path = path;
    this.log = log.child({ component: "config" });
  }

  current(): DomainTable {
    return this.table;
  }

  lookup(domain: string): DomainPolicy | undefined {
    return this.table.byDomain.get(domain);
  }

  onChange(listener: (table: DomainTable, problems: LoadProblem[]) => void): void {
    this.listeners.push(listener);
  }

  /** Load now; rejects only if the path itself cannot be read at start-up. */
  async start(pollIntervalMs = 2000): Promise<void> {
    await this.reload();
    try {
      // fs.watch reacts within milliseconds; polling covers filesystems where it is unreliable.
      this.watcher = watch(this.path, () => void this.reload());
    } catch {
      this.log.warn("file watching unavailable; relying on polling", { path: this.path });
    }
    this.timer = setInterval(() => void this.reload(), pollIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
  }

  /** Re-read the documents; concurrent calls share one read. */
  reload(): Promise<void> {
    this.reloading ??= this.readAndApply().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async readAndApply(): Promise<void> {
    let loaded;
    try {
      loaded = await loadDomainDocuments(this.path);
    } catch (err) {
      if (this.table.generation === 0) throw err;
      this.log.error("cannot read domain configuration; keeping the last good one", { path: this.path, error: err });
      return;
    }
    if (loaded.fingerprint === this.fingerprint) return;
    this.fingerprint = loaded.fingerprint;
    const next = new Map<string, DomainPolicy>();
    const failedSources = new Set(loaded.problems.map((p) => p.source.replace(/#\d+$/, "")));
    for (const policy of loaded.policies) {
      if (next.has(policy.domain)) {
        loaded.problems.push({ source: policy.name, message: `domain ${policy.domain} is defined twice; keeping the first` });
        continue;
      }
      next.set(policy.domain, policy);
    }
    // A domain whose file now fails validation keeps its last good policy instead of vanishing.
    for (const [domain, policy] of this.table.byDomain) {
      if (!next.has(domain) && failedSources.size > 0) next.set(domain, policy);
    }
    for (const problem of loaded.problems) this.log.error("invalid RelayDomain", { source: problem.source, error: problem.message });
    this.table = { byDomain: next, generation: this.table.generation + 1 };
    this.log.info("domain configuration loaded", { generation: this.table.generation, domains: next.size, problems: loaded.problems.length });
    for (const listener of this.listeners) listener(this.table, loaded.problems);
  }
}
