// What the reconcilers need of a cluster, and nothing more: read one object, server-side apply,
// merge-patch (finalizers), create (Events) and delete. ApiClient is the real implementation;
// tests of reconcile decisions pass an in-memory fake (test/harness/fake-kube-client.ts) instead,
// while list+watch, leader election and health checks stay on ApiClient and are tested against a
// real kube-apiserver.

import type { Unstructured } from "./api-client.ts";
import type { ResourceRef } from "./resources.ts";

export interface KubeClient {
  get<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T>;
  /** Server-side apply: the caller owns exactly the fields it sends. */
  apply<T = Unstructured>(ref: ResourceRef, object: Unstructured, options?: { subresource?: "status"; force?: boolean }): Promise<T>;
  /** JSON merge patch; a metadata.resourceVersion in the patch is a precondition (409 if stale). */
  mergePatch<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown): Promise<T>;
  create<T = Unstructured>(ref: ResourceRef, object: Unstructured): Promise<T>;
  /** Deletes; a missing object counts as deleted. */
  delete(ref: ResourceRef, namespace: string | undefined, name: string): Promise<void>;
}

/** The read side of an informer: the reconcilers only look objects up in its cache. */
export interface ObjectCache<T> {
  get(key: string): T | undefined;
  list(): T[];
}
