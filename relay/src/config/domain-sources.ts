// Where a relay's RelayDomain documents come from: files (a path, for `make run` and for a
// ConfigMap mounted as a volume) or the Kubernetes API (ConfigMaps the operator writes, watched
// directly). A mounted ConfigMap reaches a running pod only on the kubelet's next sync of the pod,
// typically 40-80 s after the change on a real node (issue 15); a watch brings it within the
// second. The operator shards a site's documents over several ConfigMaps (one holds at most
// 1 MiB), all carrying the site's label; the relay reads the union of them.

import { readdir, readFile, stat } from "node:fs/promises";
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";

/** One YAML file (or ConfigMap key) of RelayDomain documents. */
export interface DomainText {
  /** Where it came from, for problem reports: a file path, or configmap/<name>/<key>. */
  source: string;
  text: string;
}

export interface DomainSource {
  /** For logs. */
  readonly description: string;
  /** Get ready to read (the first list of a watch); rejects when the source cannot be reached at all. */
  start(): Promise<void>;
  /** The current documents. Rejects only when nothing was ever read. */
  read(): Promise<DomainText[]>;
  /** Call `changed` whenever the documents may have changed; returns a stop function. */
  watch(changed: () => void): () => void;
}

const yamlFile = /\.(ya?ml)$/i;

export class FileDomainSource implements DomainSource {
  readonly description: string;
  private readonly path: string;
  private readonly pollIntervalMs: number;

  constructor(path: string, pollIntervalMs = 2000) {
    this.path = path;
    this.description = path;
    this.pollIntervalMs = pollIntervalMs;
  }

  async start(): Promise<void> {
    await stat(this.path);
  }

  async read(): Promise<DomainText[]> {
    const texts: DomainText[] = [];
    for (const source of await this.listSources()) texts.push({ source, text: await readFile(source, "utf8") });
    return texts;
  }

  watch(changed: () => void): () => void {
    let watcher: FSWatcher | undefined;
    try {
      // fs.watch reacts within milliseconds; polling covers filesystems where it is unreliable.
      watcher = watch(this.path, changed);
    } catch {
      // Polling alone, then.
    }
    const timer = setInterval(changed, this.pollIntervalMs);
    timer.unref();
    return () => {
      watcher?.close();
      clearInterval(timer);
    };
  }

  private async listSources(): Promise<string[]> {
    const info = await stat(this.path);
    if (!info.isDirectory()) return [this.path];
    // Kubernetes mounts ConfigMaps as symlinks into a "..data" directory; skip the dot entries
    // and read the visible names, which always point at the current version.
    const entries = await readdir(this.path);
    return entries
      .filter((name) => !name.startsWith(".") && yamlFile.test(name))
      .sort()
      .map((name) => join(this.path, name));
  }
}

export interface ConfigMapSelector {
  namespace: string;
  /** A label selector, such as mxwarden.io/domain-config=site-a. */
  labelSelector: string;
  /** kubeconfig file; absent means the pod's in-cluster service account. */
  kubeconfig?: string | undefined;
}

interface ConfigMapLike {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  data?: { [key: string]: string };
}

/** How long a failed watch waits before it lists again (the informer stops on errors otherwise). */
const RESTART_DELAY_MS = 1000;

export class ConfigMapDomainSource implements DomainSource {
  readonly description: string;
  private readonly selector: ConfigMapSelector;
  private readonly log: Logger;
  private cache: { list(): readonly ConfigMapLike[] } | undefined;
  private readonly listeners: Array<() => void> = [];
  private stopInformer: (() => Promise<void>) | undefined;
  private stopped = false;

  constructor(selector: ConfigMapSelector, log: Logger) {
    this.selector = selector;
    this.description = `configmaps ${selector.labelSelector} in ${selector.namespace}`;
    this.log = log.child({ component: "config" });
  }

  async start(): Promise<void> {
    const { CoreV1Api, KubeConfig, makeInformer } = await import("@kubernetes/client-node");
    const config = new KubeConfig();
    if (this.selector.kubeconfig) config.loadFromFile(this.selector.kubeconfig);
    else config.loadFromCluster();
    const api = config.makeApiClient(CoreV1Api);
    const { namespace, labelSelector } = this.selector;
    const informer = makeInformer(
      config,
      `/api/v1/namespaces/${namespace}/configmaps`,
      () => api.listNamespacedConfigMap({ namespace, labelSelector }),
      labelSelector,
    );
    const notify = (): void => {
      for (const listener of this.listeners) listener();
    };
    informer.on("add", notify);
    informer.on("update", notify);
    informer.on("delete", notify);
    informer.on("error", (err: unknown) => {
      if (this.stopped) return;
      // The cache keeps the last documents: the relay serves them until the API answers again.
      this.log.warn("watch of the domain ConfigMaps failed; listing again", { error: err, retryInMs: RESTART_DELAY_MS });
      setTimeout(() => {
        if (!this.stopped) informer.start().catch(() => undefined);
      }, RESTART_DELAY_MS).unref();
    });
    await informer.start();
    this.cache = informer;
    this.stopInformer = () => informer.stop();
  }

  async read(): Promise<DomainText[]> {
    if (!this.cache) throw new Error(`${this.description}: not listed yet`);
    const texts: DomainText[] = [];
    const configMaps = [...this.cache.list()].sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
    for (const configMap of configMaps) {
      const data = configMap.data ?? {};
      for (const key of Object.keys(data).sort()) {
        if (!yamlFile.test(key)) continue;
        texts.push({ source: `configmap/${configMap.metadata?.name ?? ""}/${key}`, text: data[key] ?? "" });
      }
    }
    return texts;
  }

  watch(changed: () => void): () => void {
    this.listeners.push(changed);
    return () => {
      this.stopped = true;
      void this.stopInformer?.();
    };
  }
}
