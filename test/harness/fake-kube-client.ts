// A FAKE cluster, in memory, for tests of reconcile decisions only (which condition, which
// finalizer, which object applied), in the spirit of controller-runtime's fake client. It is not
// an API server: no schema validation, defaulting, admission, field ownership or watch. An apply
// replaces the fields it sends at the top level (status through the status subresource only), a
// merge patch follows RFC 7386, and the lifecycle rules the reconcilers rely on are kept:
// resourceVersion preconditions (409), generation bumps on spec changes, deletionTimestamp while
// finalizers remain, removal when the last one goes. Whatever depends on the real server's
// behaviour is tested against a real kube-apiserver (test/integration/operator*.test.ts).

import { ApiError, type Unstructured } from "../../operator/src/kube/api-client.ts";
import type { KubeClient, ObjectCache } from "../../operator/src/kube/kube-client.ts";
import { resourcePath, type ResourceRef } from "../../operator/src/kube/resources.ts";

export interface FakeRequest {
  verb: "get" | "apply" | "patch" | "create" | "delete";
  path: string;
  subresource?: "status";
}

type Meta = Unstructured["metadata"] & { generation?: number; uid?: string; creationTimestamp?: string; deletionTimestamp?: string; finalizers?: string[] };

export class FakeKubeClient implements KubeClient {
  /** Every call, in order, for tests that assert what the reconciler wrote. */
  readonly requests: FakeRequest[] = [];
  /** Set to make every call fail as an unreachable server would. */
  unreachable = false;
  /** Resources (plural names) the caller may not touch: calls on them are answered 403, as RBAC would. */
  readonly forbidden = new Set<string>();
  /** By resource (group/version/plural), then by "namespace/name" or "name". */
  private readonly objects = new Map<string, Map<string, Unstructured>>();
  private version = 0;
  private now: () => Date;

  constructor(now: () => Date = () => new Date()) {
    this.now = now;
  }

  /** Puts an object in place as it would be after a create (no request recorded). */
  seed<T extends Unstructured>(ref: ResourceRef, object: T): T {
    return this.store(ref, structuredClone(object) as Unstructured, undefined) as T;
  }

  /** The stored object, or undefined. */
  peek<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string): T | undefined {
    const found = this.table(ref).get(objectKey(ref, namespace, name));
    return found === undefined ? undefined : (structuredClone(found) as T);
  }

  /** The stored objects of one resource, as an informer's cache would hold them (read at call time). */
  cache<T extends Unstructured>(ref: ResourceRef): ObjectCache<T> {
    return {
      get: (key) => {
        const found = this.table(ref).get(key);
        return found === undefined ? undefined : (structuredClone(found) as T);
      },
      list: () => [...this.table(ref).values()].map((object) => structuredClone(object) as T),
    };
  }

  async get<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string): Promise<T> {
    this.record({ verb: "get", path: resourcePath(ref, namespace, name) });
    if (this.forbidden.has(ref.plural)) throw new ApiError(403, "Forbidden", `${ref.plural} "${name}" is forbidden`);
    return structuredClone(this.existing(ref, namespace, name)) as T;
  }

  async apply<T = Unstructured>(ref: ResourceRef, object: Unstructured, options: { subresource?: "status"; force?: boolean } = {}): Promise<T> {
    const { namespace, name } = object.metadata;
    this.record({ verb: "apply", path: resourcePath(ref, namespace, name), ...(options.subresource ? { subresource: options.subresource } : {}) });
    const sent = structuredClone(object);
    if (options.subresource === "status") {
      const current = this.existing(ref, namespace, name);
      return this.store(ref, { ...current, status: sent.status }, current) as T;
    }
    const before = this.table(ref).get(objectKey(ref, namespace, name));
    const { metadata, status: _ignored, ...fields } = sent;
    const merged: Unstructured = before ? { ...before, ...fields, metadata: { ...before.metadata, ...metadata } } : { ...fields, metadata };
    return this.store(ref, merged, before) as T;
  }

  async mergePatch<T = Unstructured>(ref: ResourceRef, namespace: string | undefined, name: string, patch: unknown): Promise<T> {
    this.record({ verb: "patch", path: resourcePath(ref, namespace, name) });
    const current = this.existing(ref, namespace, name);
    const precondition = (patch as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
    if (precondition !== undefined && precondition !== current.metadata.resourceVersion) {
      throw new ApiError(409, "Conflict", `the object has been modified; resourceVersion ${precondition} is stale`);
    }
    return this.store(ref, mergePatch(current, patch) as Unstructured, current) as T;
  }

  async create<T = Unstructured>(ref: ResourceRef, object: Unstructured): Promise<T> {
    const { namespace, name } = object.metadata;
    this.record({ verb: "create", path: resourcePath(ref, namespace, name) });
    if (this.table(ref).has(objectKey(ref, namespace, name))) throw new ApiError(409, "AlreadyExists", `${ref.plural} "${name}" already exists`);
    return this.store(ref, structuredClone(object), undefined) as T;
  }

  async delete(ref: ResourceRef, namespace: string | undefined, name: string): Promise<void> {
    this.record({ verb: "delete", path: resourcePath(ref, namespace, name) });
    const current = this.table(ref).get(objectKey(ref, namespace, name));
    if (!current) return;
    const meta = current.metadata as Meta;
    if ((meta.finalizers ?? []).length === 0) {
      this.table(ref).delete(objectKey(ref, namespace, name));
      return;
    }
    if (meta.deletionTimestamp === undefined) {
      this.store(
        ref,
        {
          ...current,
          metadata: {
            ...current.metadata,
            deletionTimestamp: this.now()
              .toISOString()
              .replace(/\.\d+Z$/, "Z"),
          },
        },
        current,
      );
    }
  }

  private record(request: FakeRequest): void {
    if (this.unreachable) throw new Error(`connect ECONNREFUSED (fake): ${request.verb} ${request.path}`);
    this.requests.push(request);
  }

  private table(ref: ResourceRef): Map<string, Unstructured> {
    const resource = `${ref.group}/${ref.version}/${ref.plural}`;
    let table = this.objects.get(resource);
    if (!table) {
      table = new Map();
      this.objects.set(resource, table);
    }
    return table;
  }

  private existing(ref: ResourceRef, namespace: string | undefined, name: string): Unstructured {
    const found = this.table(ref).get(objectKey(ref, namespace, name));
    if (!found) throw new ApiError(404, "NotFound", `${ref.plural} "${name}" not found`);
    return found;
  }

  /** Server-side bookkeeping of a write, and the removal of a deleted object without finalizers. */
  private store(ref: ResourceRef, next: Unstructured, before: Unstructured | undefined): Unstructured {
    const stored = this.stamp(next, before);
    const key = objectKey(ref, stored.metadata.namespace, stored.metadata.name);
    const meta = stored.metadata as Meta;
    if (meta.deletionTimestamp !== undefined && (meta.finalizers ?? []).length === 0) this.table(ref).delete(key);
    else this.table(ref).set(key, stored);
    return structuredClone(stored);
  }

  private stamp(next: Unstructured, before: Unstructured | undefined): Unstructured {
    const old = before?.metadata as Meta | undefined;
    const meta = next.metadata as Meta;
    const specChanged = JSON.stringify(before?.spec) !== JSON.stringify(next.spec);
    next.metadata = {
      ...meta,
      uid: old?.uid ?? meta.uid ?? `uid-${++this.version}`,
      creationTimestamp:
        old?.creationTimestamp ??
        meta.creationTimestamp ??
        this.now()
          .toISOString()
          .replace(/\.\d+Z$/, "Z"),
      generation: old?.generation !== undefined ? old.generation + (specChanged ? 1 : 0) : (meta.generation ?? 1),
      resourceVersion: String(++this.version),
    };
    return next;
  }
}

/** The informer's key of an object: "namespace/name", or the name of a cluster-scoped one. */
function objectKey(ref: ResourceRef, namespace: string | undefined, name: string): string {
  return ref.namespaced ? `${namespace ?? "default"}/${name}` : name;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}
