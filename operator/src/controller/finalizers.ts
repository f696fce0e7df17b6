// Adding and removing a finalizer with a merge patch guarded by resourceVersion: if the object
// changed since we read it, the write fails with 409 and the reconcile simply runs again.

import type { KubeClient } from "../kube/kube-client.ts";
import type { ResourceRef } from "../kube/resources.ts";
import type { ObjectMeta } from "#api";

export async function setFinalizer(client: KubeClient, ref: ResourceRef, metadata: ObjectMeta, finalizer: string, present: boolean): Promise<void> {
  const current = metadata.finalizers ?? [];
  if (current.includes(finalizer) === present) return;
  const finalizers = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
  await client.mergePatch(ref, metadata.namespace, metadata.name, { metadata: { finalizers, resourceVersion: metadata.resourceVersion } });
}
