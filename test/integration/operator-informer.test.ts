// The operator's informer and REST client against a real kube-apiserver: list+watch keeps the
// cache level with the server across watch restarts and API server restarts (re-listing when its
// resourceVersion was compacted away: 410 Gone), and server-side apply owns exactly the fields sent.

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
  after(async () => {
    await plane?.stop();
  });

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

  it("re-lists after the API server restarts and learns what changed while it was away", async () => {
    for (const name of ["keep", "gone"])
      await client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "w" }, data: {} });
    const changed: string[] = [];
    const errors: unknown[] = [];
    const informer = new Informer<ConfigMap>(
      client,
      Resources.ConfigMap,
      "w",
      (key) => changed.push(key),
      (err) => errors.push(err),
    );
    informer.start();
    await informer.waitForSync();
    try {
      assert.ok(informer.get("w/gone"));
      const { metadata: before } = await client.list(Resources.ConfigMap, "w");
      await plane.pause();
      await eventually("the informer noticed the API server is gone", () => errors.length > 0);
      // Another API server replica deleted it meanwhile, and etcd compacted its history.
      await plane.etcdDelete("/registry/configmaps/w/gone");
      await plane.compactEtcd();
      await plane.resume();
      await eventually("deletion learned by re-listing", () => informer.get("w/gone") === undefined, 60_000);
      assert.ok(informer.lists >= 2, `lists: ${informer.lists}`);
      assert.ok(informer.get("w/keep"), "the rest of the cache survives");
      assert.ok(changed.includes("w/gone"), "the handler heard of the deletion");
      await client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "new", namespace: "w" }, data: {} });
      await eventually("watching again after the restart", () => informer.get("w/new") !== undefined);
      // What the informer met: its old resourceVersion is gone from the compacted history.
      await assert.rejects(
        client.watch(Resources.ConfigMap, "w", before.resourceVersion, () => {}, new AbortController().signal, 5),
        (err: unknown) => {
          assert.ok(err instanceof ApiError, String(err));
          assert.equal(err.code, 410);
          return true;
        },
      );
    } finally {
      await informer.stop();
    }
  });

  it("applies server-side with strict validation: unknown fields are refused, fields owned by others are kept", async () => {
    await assert.rejects(
      client.apply(Resources.ConfigMap, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "strict", namespace: "w" }, dataa: {} }),
      (err: unknown) => {
        assert.ok(err instanceof ApiError, String(err));
        // kube-apiserver 1.37 answers a strict apply of an undeclared field with 500, not 4xx.
        assert.ok(err.code >= 400, err.message);
        assert.match(err.message, /\.dataa: field not declared in schema/);
        return true;
      },
    );
    await client.create(Resources.ConfigMap, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "shared", namespace: "w", labels: { owner: "someone-else" } },
      data: { theirs: "1" },
    });
    const applied = await client.apply<ConfigMap>(Resources.ConfigMap, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "shared", namespace: "w" },
      data: { ours: "2" },
    });
    assert.deepEqual(applied.data, { theirs: "1", ours: "2" });
    assert.equal((applied.metadata as { labels?: Record<string, string> }).labels?.owner, "someone-else");
  });
});
