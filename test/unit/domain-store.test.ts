// Loading RelayDomain documents from a mounted directory: what counts as loaded.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/workspace.ts";
import { createLogger } from "../../relay/src/log.ts";
import { DomainStore } from "../../relay/src/config/domain-store.ts";
import { FileDomainSource } from "../../relay/src/config/domain-sources.ts";

describe("DomainStore", () => {
  const work = tempDir("domain-store");
  const log = createLogger({}, "error");
  after(() => work.remove());

  it("counts an empty directory as loaded (a site with no RelayDomains yet), and loads domains added later", async () => {
    const store = new DomainStore(new FileDomainSource(work.path, 3_600_000), log);
    // An hour between polls: only reload() drives the store in this test.
    await store.start();
    try {
      assert.equal(store.current().generation, 1, "loaded, with nothing in it");
      assert.equal(store.current().byDomain.size, 0);
      const file = join(work.path, "team-a.example.yaml");
      writeFileSync(
        file,
        "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: { name: team-a/example, generation: 1 }\nspec: { domain: example.com }\n",
      );
      await store.reload();
      assert.equal(store.current().generation, 2);
      assert.ok(store.lookup("example.com"));
      rmSync(file);
      await store.reload();
      assert.equal(store.current().generation, 3, "the last domain deleted: still loaded");
      assert.equal(store.current().byDomain.size, 0);
      await store.reload();
      assert.equal(store.current().generation, 3, "an unchanged directory is not a new generation");
    } finally {
      store.stop();
    }
  });
});
