// The operator against two real kube-apiservers (two clusters): the management cluster, which is
// also site A, and a remote cluster for site B reached through a kubeconfig Secret. Real relay
// processes run with the container arguments the operator rendered, watch the domain ConfigMaps
// it wrote through the API server (--domains-configmaps, as in a pod) and report their queue, and
// what they know of the primary, back through the API server with the Role it rendered.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { findObject, helmTemplate, refOf } from "../harness/helm.ts";
import { OperatorProcess } from "../harness/operator-process.ts";
import { RelayProcess } from "../harness/relay-process.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { startDnsServer, type TestDnsServer } from "../harness/dns-server.ts";
import { rcptReply, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";
import { ApiClient, isNotFound, type Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import type { RelayDomain } from "#api";
import type { RelaySite } from "#api";
import type { Condition } from "#api";

const OPERATOR_NS = "mxwarden-system";
const RELAY_NS = "mxwarden";
const DOMAIN = "example.test";

type Site = RelaySite & Unstructured;
type Domain = RelayDomain & Unstructured;
type Deployment = Unstructured & { metadata: { generation?: number }; spec: { replicas?: number; template: { spec: { containers: { args: string[] }[] } } } };

function condition(object: { status?: { conditions?: Condition[] } } | undefined, type: string): Condition | undefined {
  return object?.status?.conditions?.find((c) => c.type === type);
}

/** The rendered relay arguments, with the paths and addresses of this test machine. */
function localArgs(deployment: Deployment, overrides: Record<string, string>): string[] {
  const args = deployment.spec.template.spec.containers[0]?.args ?? [];
  const kept = args.filter((arg) => !Object.keys(overrides).some((flag) => arg.startsWith(`${flag}=`)));
  return [...kept, ...Object.entries(overrides).map(([flag, value]) => `${flag}=${value}`)];
}

describe("operator: two clusters, real relays", () => {
  const work = tempDir("operator");
  let clusterA: TestControlPlane;
  let clusterB: TestControlPlane;
  let a: ApiClient;
  let b: ApiClient;
  let dns: TestDnsServer;
  let primary: TestPrimary;
  const nats: TestNatsServer[] = [];
  const relays: Record<string, RelayProcess> = {};
  const operators: OperatorProcess[] = [];

  async function site(name: string): Promise<Site | undefined> {
    try {
      return await a.get<Site>(Resources.RelaySite, undefined, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function domain(name = "example", namespace = "team-a"): Promise<Domain | undefined> {
    try {
      return await a.get<Domain>(Resources.RelayDomain, namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** The union of the site's domain ConfigMaps (the shards relays watch). */
  async function domainConfig(client: ApiClient): Promise<Record<string, string>> {
    const { items } = await client.list<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, RELAY_NS, {
      labelSelector: "mxwarden.io/domain-config",
    });
    return Object.assign({}, ...items.map((map) => map.data ?? {})) as Record<string, string>;
  }

  /** Marks every relay of the Deployment ready, as kube-controller-manager and the kubelet would. */
  async function markDeploymentReady(client: ApiClient): Promise<void> {
    const deployment = await client.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay");
    const replicas = deployment.spec.replicas ?? 1;
    await client.replace(
      Resources.Deployment,
      {
        ...deployment,
        status: {
          observedGeneration: deployment.metadata.generation,
          replicas,
          readyReplicas: replicas,
          availableReplicas: replicas,
          updatedReplicas: replicas,
        },
      },
      { subresource: "status" },
    );
  }

  async function startRelay(siteName: string, client: ApiClient, plane: TestControlPlane, natsServer: TestNatsServer): Promise<RelayProcess> {
    const dir = join(work.path, siteName);
    mkdirSync(dir, { recursive: true });
    // The relay watches its domains and reports with the identity its ServiceAccount would have:
    // the rendered Role and RoleBinding (to the chart's mxwarden-relay-domains) are what let it.
    const kubeconfig = join(dir, "relay-kubeconfig");
    writeFileSync(kubeconfig, plane.kubeconfigYamlFor(`system:serviceaccount:${RELAY_NS}:mxwarden-relay`, ["system:serviceaccounts"]));
    const deployment = await client.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay");
    const args = localArgs(deployment, {
      "--nats": natsServer.url,
      "--status-namespace": RELAY_NS,
      "--kubeconfig": kubeconfig,
      "--status-interval": "1s",
      "--probe-interval": "1s",
      "--shutdown-grace": "2s",
    }).filter((arg) => !/^--(listen|metrics|hostname)=/.test(arg));
    const hostname = deployment.spec.template.spec.containers[0]?.args.find((arg) => arg.startsWith("--hostname="))?.split("=")[1];
    const relay = await RelayProcess.start({ dir, hostname: hostname ?? `${siteName}.test`, args });
    await relay.ready();
    return relay;
  }

  before(async () => {
    [clusterA, clusterB] = await Promise.all([TestControlPlane.start({ name: "mgmt-site-a" }), TestControlPlane.start({ name: "site-b" })]);
    a = new ApiClient(clusterA.kubeConfig());
    b = new ApiClient(clusterB.kubeConfig());
    await clusterA.installCrds([join(repoRoot, "crds/relaydomains.mxwarden.io.yaml"), join(repoRoot, "crds/relaysites.mxwarden.io.yaml")]);
    // What the chart installs in every site's cluster for the relays: reading their domain ConfigMaps.
    const relayDomainsRole = findObject(helmTemplate("mxwarden", ["--set", "mode=siteAccess"]), "ClusterRole", "mxwarden-relay-domains") as Unstructured;
    await Promise.all([a.apply(refOf(relayDomainsRole), relayDomainsRole), b.apply(refOf(relayDomainsRole), relayDomainsRole)]);
    primary = await TestPrimary.start();
    dns = await startDnsServer({
      [DOMAIN]: {
        mx: [
          { preference: 10, exchange: "mail.example.test" },
          { preference: 20, exchange: "mx-a.backup.test" },
          { preference: 30, exchange: "mx-b.backup.test" },
        ],
      },
      "mail.example.test": { a: ["127.0.0.1"] },
    });
    nats.push(await TestNatsServer.start(join(work.path, "nats-a")), await TestNatsServer.start(join(work.path, "nats-b")));
    for (const ns of [OPERATOR_NS, "team-a"]) await a.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    await a.create(Resources.Secret, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "site-b-kubeconfig", namespace: OPERATOR_NS },
      data: { kubeconfig: Buffer.from(clusterB.kubeconfigYaml()).toString("base64") },
    });
    operators.push(
      await OperatorProcess.start({
        dir: work.path,
        kubeconfigPath: clusterA.kubeconfigPath,
        namespace: OPERATOR_NS,
        identity: "operator-1",
        args: [`--dns-servers=127.0.0.1:${dns.port}`],
      }),
    );
  });

  after(async () => {
    await Promise.all(Object.values(relays).map((relay) => relay.process.stop()));
    await Promise.all(operators.map((op) => op.stop()));
    await Promise.all(nats.map((server) => server.stop()));
    await primary?.close();
    await dns?.close();
    await Promise.all([clusterA?.stop(), clusterB?.stop()]);
  });

  it("renders and applies the relays of both sites, each in its own cluster", async () => {
    const spec = (name: string, host: string, remote: boolean): RelaySite["spec"] => ({
      ...(remote ? { cluster: { kubeconfigSecretRef: { name: "site-b-kubeconfig" } } } : {}),
      hostname: host,
      // One relay process per site stands for the Deployment's pods: every ready relay must report.
      replicas: 1,
      nats: { url: "nats://nats.mxwarden:4222", domain: name, streamReplicas: 1 },
      resolver: `127.0.0.1:${dns.port}`,
    });
    await a.create(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-a" },
      spec: spec("site-a", "mx-a.backup.test", false),
    });
    await a.create(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-b" },
      spec: spec("site-b", "mx-b.backup.test", true),
    });
    await a.create(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "example", namespace: "team-a" },
      spec: { domain: DOMAIN, primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, queue: { deletionGracePeriod: "1h" } },
    });
    for (const [name, client] of [
      ["site-a", a],
      ["site-b", b],
    ] as const) {
      const config = await eventually(
        `${name} domain ConfigMap`,
        async () => (await domainConfig(client).catch(() => ({}) as Record<string, string>))["team-a.example.yaml"],
      );
      assert.match(config, /domain: example\.test/);
      assert.doesNotMatch(config, /sites:/);
      // The site's objects are applied one after the other: the ConfigMap may come before the Deployment.
      const deployment = await eventually(`${name} relay Deployment`, () =>
        client.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay").catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        }),
      );
      const args = deployment.spec.template.spec.containers[0]?.args ?? [];
      assert.ok(args.includes(`--site=${name}`) && args.includes(`--peer-sites=${name === "site-a" ? "site-b" : "site-a"}`), args.join(" "));
      // The ConfigMap is applied before the status is written: an earlier reconcile's status (no
      // domain yet) may still be there, so wait for the status of the one that applied the domain.
      const reachable = await eventually(`${name} ClusterReachable with the domain`, async () => {
        const current = await site(name);
        return condition(current, "ClusterReachable")?.status === "True" && current?.status?.domains === 1 && current;
      });
      assert.equal(condition(reachable, "ConfigApplied")?.status, "True");
    }
    // The remote cluster got no CRDs: nothing of the management side leaks into it.
    await assert.rejects(b.list(Resources.RelaySite), (err: unknown) => isNotFound(err));
  });

  it("becomes Ready once both sites' relays run the domain's generation, and DNS lists the sites as backups", async () => {
    relays.a = await startRelay("site-a", a, clusterA, nats[0] as TestNatsServer);
    relays.b = await startRelay("site-b", b, clusterB, nats[1] as TestNatsServer);
    await markDeploymentReady(a);
    await markDeploymentReady(b);
    const ready = await eventually(
      "RelayDomain Ready",
      async () => {
        const d = await domain();
        return condition(d, "Ready")?.status === "True" && d;
      },
      60_000,
    );
    assert.equal(ready.status?.sitesReady, "2/2");
    for (const s of ready.status?.sites ?? []) assert.equal(s.appliedGeneration, ready.metadata.generation);
    assert.equal(condition(ready, "site-a.sites.mxwarden.io/Ready")?.status, "True");
    assert.equal(condition(ready, "DNSConfigured")?.status, "True");
    const sent = await sendMail(relays.a.smtpPort, { from: "alice@client.test", to: [`bob@${DOMAIN}`], body: simpleMessage("through site a", "op-1") });
    assert.equal(sent.data?.code, 250);
    await primary.waitForMessages(1);
  });

  it("delivers a spec change to running relays without restarting them", async (t) => {
    const before = await a.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay");
    const pid = relays.a?.process.pid;
    const changedAt = performance.now();
    await a.mergePatch(Resources.RelayDomain, "team-a", "example", { spec: { maxMessageSize: "1Mi" } });
    const generation = (await domain())?.metadata.generation as number;
    await eventually(
      "both sites run the new generation",
      async () => {
        const d = await domain();
        return d?.status?.sites?.length === 2 && d.status.sites.every((s) => s.appliedGeneration === generation) && condition(d, "Ready")?.status === "True";
      },
      60_000,
    );
    // Informational (the figure depends on the 1s poll and report intervals used here): apply to Ready in both clusters.
    t.diagnostic(`spec change to Ready in both clusters: ${Math.round(performance.now() - changedAt)} ms`);
    const afterChange = await a.get<Deployment>(Resources.Deployment, RELAY_NS, "mxwarden-relay");
    assert.equal(afterChange.metadata.generation, before.metadata.generation, "the Deployment (and so its pods) did not change");
    assert.equal(relays.a?.process.pid, pid);
    const big = await sendMail(relays.a?.smtpPort as number, {
      from: "alice@client.test",
      to: [`bob@${DOMAIN}`],
      body: simpleMessage("big", "op-2", `${"y".repeat(998)}\r\n`.repeat(1100)),
    });
    assert.equal(big.data?.code, 552);
  });

  // The relays key their domains and reports by A-label; the RelayDomain may name the domain in
  // Unicode. Both must be one domain to the operator, or the site never counts as up to date.
  it("an IDN domain becomes Ready at both sites, with no generation lag, and its mail is relayed", async () => {
    await a.create(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "buecher", namespace: "team-a" },
      spec: { domain: "Bücher.test", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } },
    });
    const ready = await eventually(
      "IDN RelayDomain Ready",
      async () => {
        const d = await domain("buecher");
        return condition(d, "Ready")?.status === "True" && d;
      },
      60_000,
    );
    assert.equal(ready.status?.sitesReady, "2/2");
    for (const s of ready.status?.sites ?? []) assert.equal(s.appliedGeneration, ready.metadata.generation, `${s.name} runs the IDN domain's generation`);
    const leader = operators[0] as OperatorProcess;
    await eventually(
      "no site lags behind a RelayDomain's generation",
      async () =>
        (await leader.metric("mxwarden_operator_site_config_generation_lag", 'site="site-a"')) === 0 &&
        (await leader.metric("mxwarden_operator_site_config_generation_lag", 'site="site-b"')) === 0,
    );
    const before = primary.messages.length;
    const sent = await sendMail(relays.b?.smtpPort as number, {
      from: "alice@client.test",
      to: ["anna@xn--bcher-kva.test"],
      body: simpleMessage("to an IDN domain", "op-idn"),
    });
    assert.equal(sent.data?.code, 250);
    await primary.waitForMessages(before + 1);
    await a.delete(Resources.RelayDomain, "team-a", "buecher");
    await eventually("the IDN RelayDomain is gone", async () => (await domain("buecher")) === undefined, 60_000);
  });

  it("marks an unreachable site False on its own; the other site is unaffected and the cut-off one catches up", async () => {
    await clusterB.pause();
    try {
      const cut = await eventually(
        "site-b unreachable",
        async () => {
          const s = await site("site-b");
          return condition(s, "ClusterReachable")?.status === "False" && s;
        },
        30_000,
      );
      assert.equal(condition(cut, "ClusterReachable")?.reason, "ClusterUnreachable");
      assert.equal(condition(cut, "Ready")?.status, "False");
      assert.equal(condition(await site("site-a"), "Ready")?.status, "True");
      await a.mergePatch(Resources.RelayDomain, "team-a", "example", { spec: { maxMessageSize: "2Mi" } });
      await eventually("site-a gets the change while site-b is cut off", async () =>
        /maxMessageSize: 2Mi/.test((await domainConfig(a))["team-a.example.yaml"] ?? ""),
      );
      const d = await eventually("domain shows site-b unreachable", async () => {
        const current = await domain();
        return condition(current, "site-b.sites.mxwarden.io/Ready")?.reason === "ClusterUnreachable" && current;
      });
      assert.equal(condition(d, "Ready")?.status, "False");
      // The relays of the cut-off site keep serving with their last configuration.
      const reply = await rcptReply(relays.b?.smtpPort as number, { from: "carol@client.test", to: `dave@${DOMAIN}` });
      assert.equal(reply.code, 250);
    } finally {
      await clusterB.resume();
    }
    await eventually(
      "site-b reachable again with the latest configuration",
      async () =>
        condition(await site("site-b"), "ClusterReachable")?.status === "True" &&
        /maxMessageSize: 2Mi/.test((await domainConfig(b))["team-a.example.yaml"] ?? ""),
      60_000,
    );
  });

  it("keeps one leader among replicas; a standby takes over when the leader dies", async () => {
    operators.push(
      await OperatorProcess.start({
        dir: work.path,
        kubeconfigPath: clusterA.kubeconfigPath,
        namespace: OPERATOR_NS,
        identity: "operator-2",
        args: ["--dns-servers=off"],
      }),
    );
    const [first, second] = operators as [OperatorProcess, OperatorProcess];
    assert.equal(await first.metric("mxwarden_operator_leader"), 1);
    assert.equal(await second.metric("mxwarden_operator_leader"), 0);
    await first.kill9();
    await eventually("the standby leads", async () => (await second.metric("mxwarden_operator_leader")) === 1, 40_000);
    await a.create(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: "second", namespace: "team-a" },
      spec: { domain: "second.test", sites: ["site-a"] },
    });
    await eventually("the new leader reconciles", async () => (await domainConfig(a))["team-a.second.yaml"] !== undefined);
    assert.equal((await domainConfig(b))["team-a.second.yaml"], undefined, "spec.sites limits the domain to site-a");
  });

  it("tells the domain's owners when its primary stops answering and when it is back: condition, Events, metrics", async () => {
    const leader = operators[1] as OperatorProcess;
    type Event = Unstructured & { type?: string; reason?: string; note?: string; regarding?: { kind?: string; name?: string } };
    const about = async (): Promise<Event[]> =>
      (await a.list<Event>(Resources.Event, "team-a")).items.filter(
        (e) => e.regarding?.kind === "RelayDomain" && e.regarding.name === "example" && e.reason?.startsWith("Primary"),
      );
    // The first delivery already made it True (a Normal Event): only what follows counts here.
    const earlier = new Set((await about()).map((e) => e.metadata.name));
    const primaryEvents = async (): Promise<Event[]> => (await about()).filter((e) => !earlier.has(e.metadata.name));
    const reachableSeries = async (): Promise<string | undefined> =>
      /^mxwarden_operator_domain_primary_reachable\{namespace="team-a",name="example"\} (\S+)$/m.exec(await leader.metricsText())?.[1];
    const deliveredBefore = primary.messages.length;
    await primary.close();
    try {
      const sent = await sendMail(relays.a?.smtpPort as number, {
        from: "alice@client.test",
        to: [`gina@${DOMAIN}`],
        body: simpleMessage("while down", "op-down"),
      });
      assert.equal(sent.data?.code, 250);
      const down = await eventually(
        "PrimaryReachable False",
        async () => {
          const d = await domain();
          return condition(d, "PrimaryReachable")?.status === "False" && d;
        },
        60_000,
      );
      const primaryDown = condition(down, "PrimaryReachable");
      assert.equal(primaryDown?.reason, "PrimaryUnreachable");
      // The site whose relay met the closed port, its error (the hop and what the connection met) and since when.
      assert.match(primaryDown?.message ?? "", /site-a: 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: .+ since \d{4}-\d\d-\d\dT/);
      const warning = await eventually("a Warning Event on the RelayDomain", async () =>
        (await primaryEvents()).find((e) => e.reason === "PrimaryUnreachable"),
      );
      assert.equal(warning.type, "Warning");
      assert.match(warning.note ?? "", /example\.test: .*site-a/);
      await eventually("the primary series is 0", async () => (await reachableSeries()) === "0");
      // The queue figure comes from the site's queue index, sampled on its own schedule.
      await eventually(
        "the queued message in the queue series",
        async () => (await leader.metric("mxwarden_operator_domain_queued_messages", 'namespace="team-a",name="example"')) >= 1,
      );
    } finally {
      await primary.listen();
    }
    await primary.waitForMessages(deliveredBefore + 1);
    await eventually("PrimaryReachable True again", async () => condition(await domain(), "PrimaryReachable")?.status === "True", 60_000);
    const normal = await eventually("a Normal Event on the RelayDomain", async () => (await primaryEvents()).find((e) => e.reason === "PrimaryReachable"));
    assert.equal(normal.type, "Normal");
    await eventually("the primary series is 1", async () => (await reachableSeries()) === "1");
    assert.equal((await primaryEvents()).filter((e) => e.reason === "PrimaryUnreachable").length, 1, "one Event per change, not one per poll");
  });

  it("deleting a domain refuses its new mail at once and completes only after its queue drained", async () => {
    const deliveredBefore = primary.messages.length;
    await primary.close();
    const queued = await sendMail(relays.a?.smtpPort as number, { from: "alice@client.test", to: [`erin@${DOMAIN}`], body: simpleMessage("queued", "op-3") });
    assert.equal(queued.data?.code, 250);
    await eventually("the queued message shows in status", async () => ((await domain())?.status?.queuedMessages ?? 0) >= 1);
    await a.delete(Resources.RelayDomain, "team-a", "example");
    await eventually("relays refuse new mail for the domain", async () => {
      const reply = await rcptReply(relays.a?.smtpPort as number, { from: "alice@client.test", to: `frank@${DOMAIN}` });
      return reply.code === 450 && reply.status === "4.7.1";
    });
    const draining = await domain();
    assert.ok(draining?.metadata.deletionTimestamp, "still present while mail is queued");
    assert.equal(condition(draining, "Ready")?.reason, "Draining");
    await primary.listen();
    const delivered = await primary.waitForMessages(deliveredBefore + 1);
    assert.ok(delivered.some((m) => m.to.includes(`erin@${DOMAIN}`)));
    await eventually("deletion completes", async () => (await domain()) === undefined, 60_000);
    await eventually(
      "the deleted RelayDomain's series are gone",
      async () => !/^mxwarden_operator_domain_\w+\{namespace="team-a",name="example"\}/m.test(await (operators[1] as OperatorProcess).metricsText()),
    );
    await eventually("relays no longer load the domain", async () => (await domainConfig(a))["team-a.example.yaml"] === undefined);
  });

  it("deleting a site removes its relays from its cluster", async () => {
    await a.delete(Resources.RelaySite, undefined, "site-b");
    await eventually("site-b gone", async () => (await site("site-b")) === undefined, 30_000);
    await assert.rejects(b.get(Resources.Deployment, RELAY_NS, "mxwarden-relay"), (err: unknown) => isNotFound(err));
    assert.deepEqual(await domainConfig(b), {}, "no domain ConfigMap left");
    await assert.rejects(b.get(Resources.ConfigMap, RELAY_NS, "mxwarden-domain-shards"), (err: unknown) => isNotFound(err));
  });
});
