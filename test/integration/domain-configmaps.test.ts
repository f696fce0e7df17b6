// Relays that read their RelayDomains from the site's ConfigMaps through the Kubernetes API
// (--domains-configmaps), as the operator runs them: the union of every ConfigMap with the site's
// label, a change within the second instead of the kubelet's volume sync (40-80 s on a real node,
// issue 15), the last documents kept while the API server is away, and 10,000 domains.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { KUBECTL } from "../harness/helm.ts";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { RelayProcess, relayDomainYaml } from "../harness/relay-process.ts";
import { rcptReply } from "../harness/smtp-dialogue.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

const NS = "mxwarden";
const LABEL = "mxwarden.io/domain-config";
const SELECTOR = `${LABEL}=site-a`;

describe("relay domains from ConfigMaps watched through the API", () => {
  const work = tempDir("domain-configmaps");
  let plane: TestControlPlane;
  let relay: RelayProcess;

  function kubectl(args: string[], input?: string): string {
    const result = spawnSync(KUBECTL, ["--kubeconfig", plane.kubeconfigPath, ...args], { encoding: "utf8", input, maxBuffer: 64 * 2 ** 20 });
    if (result.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  }

  /** A ConfigMap of RelayDomain files, applied with kubectl (from a file: 10,000 domains exceed an argument list). */
  function applyConfigMap(name: string, domains: string[], labelled = true): void {
    const data: Record<string, string> = {};
    for (const domain of domains) data[`${domain}.yaml`] = relayDomainYaml({ domain, primary: { hosts: [{ host: "127.0.0.1", port: 25 }] } });
    const manifest = { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: NS, labels: labelled ? { [LABEL]: "site-a" } : {} }, data };
    const file = join(work.path, `${name}.json`);
    writeFileSync(file, JSON.stringify(manifest));
    kubectl(["apply", "--server-side", "--force-conflicts", "-f", file]);
  }

  const accepts = async (domain: string): Promise<boolean> => (await rcptReply(relay.smtpPort, { from: "a@sender.test", to: `bob@${domain}` })).code === 250;

  before(async () => {
    plane = await TestControlPlane.start({ name: "domain-configmaps" });
    kubectl(["create", "namespace", NS]);
    // The relay's own identity, with only what it needs: reading the site's ConfigMaps.
    kubectl(["-n", NS, "create", "role", "relay-config", "--verb=get,list,watch", "--resource=configmaps"]);
    kubectl(["-n", NS, "create", "rolebinding", "relay-config", "--role=relay-config", `--serviceaccount=${NS}:mxwarden-relay`]);
    applyConfigMap("mxwarden-domains-1-0", ["a.example"]);
    applyConfigMap("mxwarden-domains-1-1", ["b.example"]);
    applyConfigMap("unrelated", ["c.example"], false);
    const kubeconfig = join(work.path, "relay.kubeconfig");
    writeFileSync(kubeconfig, plane.kubeconfigYamlFor(`system:serviceaccount:${NS}:mxwarden-relay`, ["system:serviceaccounts"]));
    mkdirSync(join(work.path, "relay"));
    relay = await RelayProcess.start({
      dir: join(work.path, "relay"),
      args: ["--domains-configmaps", SELECTOR, "--status-namespace", NS, "--kubeconfig", kubeconfig],
    });
    await relay.ready();
  });

  after(async () => {
    await relay?.stop();
    await plane?.stop();
  });

  it("serves the union of the site's labelled ConfigMaps, and nothing else", async () => {
    assert.equal(await relay.metric("mxwarden_config_domains"), 2);
    assert.ok(await accepts("a.example"));
    assert.ok(await accepts("b.example"));
    assert.equal(await accepts("c.example"), false, "a ConfigMap without the site's label is not the relay's");
  });

  it("takes a change within the second of the apply", async () => {
    const applied = Date.now();
    applyConfigMap("mxwarden-domains-1-1", ["b.example", "d.example"]);
    await eventually("d.example served", () => accepts("d.example"), 10_000, 20);
    console.log(`# apply to served: ${Date.now() - applied} ms (kubectl apply included)`);
    kubectl(["-n", NS, "delete", "configmap", "mxwarden-domains-1-0"]);
    await eventually("a.example gone with its ConfigMap", async () => !(await accepts("a.example")), 10_000, 20);
  });

  it("keeps serving its last domains while the API server is away, and follows again when it is back", async () => {
    await plane.pause();
    assert.ok(await accepts("b.example"));
    assert.ok(await accepts("d.example"));
    await plane.resume();
    applyConfigMap("mxwarden-domains-1-1", ["b.example", "d.example", "e.example"]);
    await eventually("e.example served after the API server came back", () => accepts("e.example"), 30_000, 100);
  });

  it("loads 10,000 domains from five ConfigMaps, and a change among them still arrives within seconds", async () => {
    const shards = 5;
    const perShard = 2000;
    const started = Date.now();
    for (let shard = 0; shard < shards; shard++) {
      applyConfigMap(
        `mxwarden-domains-5-${shard}`,
        Array.from({ length: perShard }, (_, i) => `d${shard * perShard + i}.scale.example`),
      );
    }
    await eventually("10,000 domains loaded", async () => (await relay.metric("mxwarden_config_domains")) >= shards * perShard, 120_000, 200);
    console.log(`# 10,000 domains in 5 ConfigMaps: applied and loaded in ${Date.now() - started} ms`);
    const changed = Date.now();
    applyConfigMap("mxwarden-domains-5-3", [...Array.from({ length: perShard }, (_, i) => `d${3 * perShard + i}.scale.example`), "new.scale.example"]);
    await eventually("the new domain served", () => accepts("new.scale.example"), 30_000, 20);
    console.log(`# one change among 10,000 domains: apply to served in ${Date.now() - changed} ms`);
    assert.ok(await accepts("d9999.scale.example"));
  });
});
