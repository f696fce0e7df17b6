// List+watch into a local cache, level-triggered: handlers only get keys and read the cache.
// client-node's informer stops on errors other than 410; this one never stops until told to:
// it re-lists on 410 Gone and after any error, with a capped backoff, and resumes the watch from
// the last resourceVersion (bookmarks keep it fresh) when the server ends a watch normally.

import type { ApiClient, Unstructured } from "./api-client.ts";
import { ApiError } from "./api-client.ts";
import type { ResourceRef } from "./resources.ts";

export type KeyHandler = (key: string) => void;

export function objectKeyOf(object: { metadata: { name: string; namespace?: string } }): string {
  return object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;
}

export class Informer<T extends Unstructured> {
  private readonly cache = new Map<string, T>();
  private readonly abort = new AbortController();
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private running: Promise<void> | undefined;
  /** Counts list calls, for tests and metrics: each restart re-lists. */
  lists = 0;

  private readonly client: ApiClient;
  private readonly resource: ResourceRef;
  private readonly namespace: string | undefined;
  private readonly onChange: KeyHandler;
  private readonly onError: (err: unknown) => void;

  /** How long one watch request lasts before the server ends it and the informer resumes. */
  watchTimeoutSeconds = 300;

  constructor(client: ApiClient, resource: ResourceRef, namespace: string | undefined, onChange: KeyHandler, onError: (err: unknown) => void = () => {}) {
    this.client = client;
    this.resource = resource;
    this.namespace = namespace;
    this.onChange = onChange;
    this.onError = onError;
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  private async run(): Promise<void> {
    let failures = 0;
    let resourceVersion = "";
    while (!this.abort.signal.aborted) {
      try {
        if (resourceVersion === "") resourceVersion = await this.relist();
        await this.client.watch<T>(
          this.resource,
          this.namespace,
          resourceVersion,
          (event) => {
            resourceVersion = event.object.metadata.resourceVersion ?? resourceVersion;
            if (event.type === "BOOKMARK") return;
            const key = objectKeyOf(event.object);
            if (event.type === "DELETED") this.cache.delete(key);
            else this.cache.set(key, event.object);
            this.onChange(key);
          },
          this.abort.signal,
          this.watchTimeoutSeconds,
        );
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        // 410: our resourceVersion is too old; anything else: start over from a fresh list too.
        if (!(err instanceof ApiError && err.code === 410)) {
          this.onError(err);
          failures++;
        }
        resourceVersion = "";
        await delay(Math.min(30_000, 200 * 2 ** Math.min(failures, 8)), this.abort.signal);
      }
    }
  }

  private async relist(): Promise<string> {
    this.lists++;
    const { items, metadata } = await this.client.list<T>(this.resource, this.namespace);
    const seen = new Set<string>();
    for (const item of items) {
      const key = objectKeyOf(item);
      seen.add(key);
      const before = this.cache.get(key);
      this.cache.set(key, item);
      if (before?.metadata.resourceVersion !== item.metadata.resourceVersion) this.onChange(key);
    }
    for (const key of [...this.cache.keys()]) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.onChange(key);
      }
    }
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
    return metadata.resourceVersion;
  }
}

export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
