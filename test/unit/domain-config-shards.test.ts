// Sharding a site's RelayDomain documents over ConfigMaps (a ConfigMap holds at most 1 MiB).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { domainConfigShards, type SiteDomainConfig } from "../../operator/src/render/domain-config.ts";

function config(domains: number, bytesEach: number): SiteDomainConfig {
  const data: Record<string, string> = {};
  for (let i = 0; i < domains; i++) data[`team.d${i}.yaml`] = `# ${"x".repeat(bytesEach)}\n`;
  return { data, hash: "h", domains: [] };
}

const size = (data: Record<string, string>): number => Object.entries(data).reduce((sum, [k, v]) => sum + k.length + Buffer.byteLength(v), 0);

describe("domainConfigShards", () => {
  it("keeps a small site in one ConfigMap", () => {
    const shards = domainConfigShards(config(10, 500));
    assert.deepEqual(
      shards.map((s) => s.name),
      ["mxwarden-domains-1-0"],
    );
    assert.equal(Object.keys(shards[0]?.data ?? {}).length, 10);
  });

  it("spreads 10,000 domains of 1 KiB over shards under 1 MiB each, every document exactly once", () => {
    const input = config(10_000, 1024);
    const shards = domainConfigShards(input);
    assert.ok(shards.length >= 16, `${shards.length} shards`);
    for (const shard of shards) assert.ok(size(shard.data) < 900 * 1024, `${shard.name}: ${size(shard.data)} bytes`);
    const keys = shards.flatMap((s) => Object.keys(s.data)).sort();
    assert.deepEqual(keys, Object.keys(input.data).sort());
    assert.ok(shards.every((s) => s.name.startsWith(`mxwarden-domains-${shards.length}-`)));
  });

  it("changes one shard when one domain changes, as long as the count stays", () => {
    const before = domainConfigShards(config(3000, 400));
    const changed = config(3000, 400);
    changed.data["team.d42.yaml"] = "# changed\n";
    const after = domainConfigShards(changed);
    assert.equal(after.length, before.length);
    const differing = after.filter((shard, i) => JSON.stringify(shard.data) !== JSON.stringify(before[i]?.data));
    assert.equal(differing.length, 1);
  });
});
