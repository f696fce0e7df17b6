// Loads RelayDomain documents from a source (domain-sources.ts: files, or the site's ConfigMaps
// through the Kubernetes API) and reloads them when they change, without a restart. A document that fails validation is reported and skipped;
// the domains that were valid before keep their last good policy, so a typo in one resource
// never stops mail for the others.

import { parseAllDocuments, type Tags } from "yaml";
import type { Logger } from "../log.ts";
import { FileDomainSource, type DomainSource, type DomainText } from "./domain-sources.ts";
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

/**
 * YAML 1.1 as kubectl reads it (sigs.k8s.io/yaml): a plain off is a boolean, but a plain
 * 2026-12-24T06:00:00Z stays a string, as go-yaml keeps timestamps it decodes into no Go time.
 */
const YAML_AS_KUBECTL = {
  version: "1.1",
  customTags: (tags: Tags) => tags.filter((tag) => typeof tag === "string" || tag.tag !== "tag:yaml.org,2002:timestamp"),
} as const;

/** A document's parse, cached by its text: a site with thousands of domains re-parses only what changed. */
interface ParsedText {
  text: string;
  policies: DomainPolicy[];
  problems: LoadProblem[];
}

function parseDomainText({ source, text }: DomainText): ParsedText {
  const policies: DomainPolicy[] = [];
  const problems: LoadProblem[] = [];
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
  return { text, policies, problems };
}

export async function loadDomainDocuments(path: string): Promise<{ policies: DomainPolicy[]; problems: LoadProblem[] }> {
  const parsed = (await new FileDomainSource(path).read()).map(parseDomainText);
  return { policies: parsed.flatMap((p) => p.policies), problems: parsed.flatMap((p) => p.problems) };
}

export class DomainStore {
  private table: DomainTable = { byDomain: new Map(), generation: 0 };
  /** The last parse of each source; undefined until the first load (an empty source must still count). */
  private parsed: Map<string, ParsedText> | undefined;
  private stopWatching: (() => void) | undefined;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  private readonly listeners: Array<(table: DomainTable, problems: LoadProblem[]) => void> = [];
  private readonly source: DomainSource;
  private readonly log: Logger;

  /** A path (file or directory of YAML files) or another source, such as the ConfigMaps of a site. */
  constructor(source: string | DomainSource, log: Logger) {
    this.source = typeof source === "string" ? new FileDomainSource(source) : source;
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

  /** Load now; rejects only if the source cannot be read at start-up. */
  async start(): Promise<void> {
    await this.source.start();
    await this.reload();
    this.stopWatching = this.source.watch(() => void this.reload());
  }

  stop(): void {
    this.stopWatching?.();
  }

  /** Re-read the documents; concurrent calls share one read, and a call during a read makes one more. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.readAndApply().finally(() => {
      this.reloading = undefined;
      if (this.reloadAgain) {
        this.reloadAgain = false;
        void this.reload();
      }
    });
    return this.reloading;
  }

  private async readAndApply(): Promise<void> {
    let texts: DomainText[];
    try {
      texts = await this.source.read();
    } catch (err) {
      if (this.table.generation === 0) throw err;
      this.log.error("cannot read domain configuration; keeping the last good one", { source: this.source.description, error: err });
      return;
    }
    const previous = this.parsed;
    const unchanged = previous !== undefined && previous.size === texts.length && texts.every((t) => previous.get(t.source)?.text === t.text);
    if (unchanged) return;
    const parsed = new Map<string, ParsedText>();
    for (const text of texts) {
      const cached = previous?.get(text.source);
      parsed.set(text.source, cached?.text === text.text ? cached : parseDomainText(text));
    }
    this.parsed = parsed;
    const problems = [...parsed.values()].flatMap((p) => p.problems);
    const next = new Map<string, DomainPolicy>();
    const failedSources = new Set(problems.map((p) => p.source.replace(/#\d+$/, "")));
    for (const policy of [...parsed.values()].flatMap((p) => p.policies)) {
      const existing = next.get(policy.domain);
      if (existing) {
        // The operator briefly writes a domain into two ConfigMaps when it reshards: the same document.
        if (existing.name !== policy.name) problems.push({ source: policy.name, message: `domain ${policy.domain} is defined twice; keeping the first` });
        continue;
      }
      next.set(policy.domain, policy);
    }
    // A domain whose file now fails validation keeps its last good policy instead of vanishing.
    for (const [domain, policy] of this.table.byDomain) {
      if (!next.has(domain) && failedSources.size > 0) next.set(domain, policy);
    }
    for (const problem of problems) this.log.error("invalid RelayDomain", { source: problem.source, error: problem.message });
    this.table = { byDomain: next, generation: this.table.generation + 1 };
    this.log.info("domain configuration loaded", { generation: this.table.generation, domains: next.size, problems: problems.length });
    for (const listener of this.listeners) listener(this.table, problems);
  }
}
