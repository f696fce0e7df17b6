// The operator's informer and REST client against a real kube-apiserver: list+watch keeps the
// cache level with the server across watch restarts, a too-old resourceVersion surfaces as 410,
// and server-side apply owns exactly the fields sent.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { eventually } from "../harness/workspace.ts";
import { ApiClient, ApiError, type Unstructured } from "../../operator/src/kube/api-client.ts";
import { Informer } from "../../operator/src/kube/informer.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

type ConfigMap = Unstructured & { data?: Record<string, string> };

describe("informer and REST client against a real API server", () => {
  let plane: TestControlPlane;
  let client: ApiClient;

  before(async () => {
    plane = await TestControlPlane.start({ name: "informer" });
    client = new ApiClient(plane.kubeConfig());
    await client.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: "w" } });
  });
  after(async () => { await plane?.stop(); });

  it("follows adds, updates and deletes across watch restarts without re-listing", async () => {
    const changed: string[] = [];
    const informer = new Informer<ConfigMap>(client, Resources.ConfigMap, "w", (key) => changed.push(key));
    informer.watchTimeoutSeconds = 1;
    informer.start();
    await informer.waitForSync();
    try {
      for (let i = 0; i < 3; i++) {
        await client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${i}`, namespace: "w" }, data: { n: String(i) } });
        // Let at least one server-side watch timeout pass between writes.
        await eventually(`cm-${i} seen`, () => informer.get(`w/cm-${i}`)?.data?.n === String(i));
        await new Promise((resolve) => setTimeout(resolve, 1200));
      }
      await client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm-0", namespace: "w" }, data: { n: "changed" } });
      await eventually("update seen", () => informer.get("w/cm-0")?.data?.n === "changed");
      await client.delete(Resources.ConfigMap, "w", "cm-1");
      await eventually("delete seen", () => informer.get("w/cm-1") === undefined);
      assert.equal(informer.lists, 1, "watches resumed from their resourceVersion");
      assert.ok(changed.includes("w/cm-2"));
    } finally {
      await informer.stop();
    }
  });

  it("reports a watch from a compacted resourceVersion as 410 Gone, which makes the informer re-list", async () => {
    await assert.rejects(client.watch(Resources.ConfigMap, "w", "1", () => {}, new AbortController().signal, 5), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 410);
      return true;
    });
  });

  it("applies server-side with strict validation: unknown fields are refused, fields owned by others are kept", async () => {
    await assert.rejects(client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "strict", namespace: "w" }, dataa: {} }), (err: unknown) => err instanceof ApiError && err.code === 400 && /dataa/.test(err.message));
    await client.create(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "w", labels: { owner: "someone-else" } }, data: { theirs: "1" } });
    const applied = await client.apply<ConfigMap>(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shared", namespace: "w" }, data: { ours: "2" } });
    assert.deepEqual(applied.data, { theirs: "1", ours: "2" });
    assert.equal((applied.metadata as { labels?: Record<string, string> }).labels?.owner, "someone-else");
  });
});
