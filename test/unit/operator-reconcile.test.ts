// Reconcile decisions, driven through the reconcilers with an in-memory fake cluster
// (test/harness/fake-kube-client.ts) for the management cluster and for one site's cluster: which
// conditions, finalizers and objects follow from given resources and relay reports. Behaviour that
// depends on a real API server (apply semantics, RBAC, watches) is in test/integration/operator*.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "../../relay/src/log.ts";
import { domainKey, holdEnd, queueReportKey, type DomainPrimaryFigures, type QueueReport } from "#api";
import type { Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import { OperatorMetrics } from "../../operator/src/metrics.ts";
import { DOMAIN_FINALIZER, DomainReconciler } from "../../operator/src/controller/domain-reconciler.ts";
import { SITE_FINALIZER, SiteReconciler, type SiteReconcilerDeps } from "../../operator/src/controller/site-reconciler.ts";
import { SiteStates } from "../../operator/src/controller/site-state.ts";
import { EventRecorder } from "../../operator/src/controller/events.ts";
import type { SiteClient, SiteClients } from "../../operator/src/controller/site-connections.ts";
import { FakeKubeClient } from "../harness/fake-kube-client.ts";

// The resources as the reconcilers read them from their informers' caches.
type Site = ReturnType<SiteReconcilerDeps["sites"]["list"]>[number];
type Domain = ReturnType<SiteReconcilerDeps["domains"]["list"]>[number];
type Condition = NonNullable<NonNullable<Domain["status"]>["conditions"]>[number];
type ConfigMap = Unstructured & { data?: Record<string, string> };

const RELAY_NS = "mxwarden";
const POLL_MS = 15_000;
const log = createLogger({}, "error");

/** The operator's per-RelayDomain series, as "namespace/name" → value. */
async function domainSeries(metrics: OperatorMetrics): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const gauge of [metrics.domainPrimaryReachable, metrics.domainQueuedMessages, metrics.domainOldestQueuedSeconds]) {
    const { name, values } = await gauge.get();
    for (const { labels, value } of values) (out[name] ??= {})[`${labels.namespace}/${labels.name}`] = value;
  }
  return out;
}

function condition(object: { status?: { conditions?: Condition[] } } | undefined, type: string): Condition | undefined {
  return object?.status?.conditions?.find((c) => c.type === type);
}

/** A management cluster and one site cluster, both fakes, with the two reconcilers wired as the operator wires them. */
class World {
  readonly mgmt = new FakeKubeClient();
  readonly siteCluster = new FakeKubeClient();
  readonly states = new SiteStates();
  readonly metrics = new OperatorMetrics();
  readonly connection: SiteClient = { client: this.siteCluster, reachable: true, prometheusOperator: false };
  readonly sites: SiteReconciler;
  readonly domains: DomainReconciler;
  /** What each site reconcile told the domains: the mail domains whose figures changed, undefined for all. */
  readonly siteStates: Array<ReadonlySet<string> | undefined> = [];

  constructor() {
    const connections: SiteClients = { ensure: async () => this.connection, get: () => this.connection, forget: () => {} };
    const events = new EventRecorder(this.mgmt, "test", log);
    const common = {
      client: this.mgmt,
      sites: this.mgmt.cache<Site>(Resources.RelaySite),
      domains: this.mgmt.cache<Domain>(Resources.RelayDomain),
      states: this.states,
      connections,
      events,
      pollIntervalMs: POLL_MS,
      log,
    };
    this.sites = new SiteReconciler({
      ...common,
      metrics: new OperatorMetrics(),
      relayImage: "relay:1",
      natsImage: "nats:1",
      filterImages: { clamd: "clamd:1", rspamd: "rspamd:1" },
      operatorNamespace: "mxwarden-system",
      prometheusRuleGroups: [],
      onSiteState: (_site, changed) => this.siteStates.push(changed),
    });
    // The operator keeps an index of claims from the RelayDomain events; here, the whole list answers.
    const claimants = (mailDomain: string) => common.domains.list().filter((d) => domainKey(d.spec.domain) === mailDomain);
    this.domains = new DomainReconciler({ ...common, metrics: this.metrics, dns: undefined, claimants });
  }

  site(spec: Partial<Site["spec"]> = {}): Site {
    return this.mgmt.seed<Site>(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-a" },
      spec: { hostname: "mx-a.backup.test", replicas: 2, nats: { url: "nats://nats:4222", domain: "site-a" }, ...spec },
    });
  }

  domain(name = "example", mailDomain = "example.com", meta: Partial<Domain["metadata"]> = {}): Domain {
    return this.mgmt.seed<Domain>(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name, namespace: "team-a", ...meta },
      spec: { domain: mailDomain },
    });
  }

  getSite(): Site | undefined {
    return this.mgmt.peek<Site>(Resources.RelaySite, undefined, "site-a");
  }

  getDomain(name = "example"): Domain | undefined {
    return this.mgmt.peek<Domain>(Resources.RelayDomain, "team-a", name);
  }

  /** What kube-controller-manager and the kubelets would write: the relay Deployment's readiness. */
  async relaysReady(ready: number): Promise<void> {
    await this.siteCluster.apply(
      Resources.Deployment,
      { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "mxwarden-relay", namespace: RELAY_NS }, status: { replicas: 2, readyReplicas: ready } },
      { subresource: "status" },
    );
  }

  /** As if the site's reports were last read a while ago (the reconcilers reuse a read for a second). */
  ageReports(): void {
    const state = this.states.get("site-a");
    assert.ok(state);
    this.states.set("site-a", { ...state, reportsReadAt: 0 });
  }

  /** What the relays write into their status ConfigMap. */
  async report(data: Record<string, string>): Promise<void> {
    await this.siteCluster.mergePatch(Resources.ConfigMap, RELAY_NS, "mxwarden-relay-status", { data });
  }
}

/** One relay's report, under its own key of the status ConfigMap, as the relay writes it. */
function queueReport(reporter: string, domains: QueueReport["domains"], updatedAt = new Date()): Record<string, string> {
  return { [queueReportKey(reporter)]: JSON.stringify({ updatedAt: updatedAt.toISOString(), reporter, intervalMs: 10_000, domains } satisfies QueueReport) };
}

function figures(generation: number, queued = 0, retiring = false, primary: DomainPrimaryFigures = {}): QueueReport["domains"] {
  return { "example.com": { generation, retiring, queued, oldestQueuedSeconds: queued > 0 ? 60 : 0, ...primary } };
}

/** A site whose two relays are ready and report the domain at `generation`. */
async function servedWorld(generation: number): Promise<World> {
  const world = new World();
  world.site();
  world.domain();
  await world.sites.reconcile("site-a");
  await world.relaysReady(2);
  await world.report({ ...queueReport("relay-0", figures(generation)), ...queueReport("relay-1", figures(generation)) });
  await world.sites.reconcile("site-a");
  return world;
}

describe("site reconcile (fake clusters)", () => {
  it("applies the relays' objects in the site's cluster, holds its finalizer, and reports the configuration applied", async () => {
    const world = new World();
    world.site();
    world.domain();
    const outcome = await world.sites.reconcile("site-a");
    assert.equal(outcome.requeueAfterMs, 1000, "the relays have not loaded the new configuration: their reports are read again in a second");
    assert.deepEqual(world.getSite()?.metadata.finalizers, [SITE_FINALIZER]);
    const domains = world.siteCluster.peek<ConfigMap>(Resources.ConfigMap, RELAY_NS, "mxwarden-domains-1-0");
    assert.deepEqual(Object.keys(domains?.data ?? {}), ["team-a.example.yaml"]);
    assert.ok(world.siteCluster.peek(Resources.Deployment, RELAY_NS, "mxwarden-relay"));
    const site = world.getSite();
    assert.equal(condition(site, "ConfigApplied")?.status, "True");
    assert.equal(site?.status?.domains, 1);
    assert.equal(condition(site, "Ready")?.reason, "NoReadyRelays");
  });

  it("reads the reports again within a second until the relays run a new configuration, and names only the domains whose figures changed", async () => {
    const world = new World();
    world.site();
    world.domain();
    world.domain("other", "other.com");
    assert.equal((await world.sites.reconcile("site-a")).requeueAfterMs, 1000);
    assert.equal(world.siteStates.at(-1), undefined, "the first reading concerns every domain");
    await world.relaysReady(2);
    const idle = { "other.com": { generation: 1, retiring: false, queued: 0, oldestQueuedSeconds: 0 } };
    await world.report({ ...queueReport("relay-0", { ...figures(1), ...idle }), ...queueReport("relay-1", { ...figures(1), ...idle }) });
    assert.equal((await world.sites.reconcile("site-a")).requeueAfterMs, POLL_MS, "every relay runs it: back to the poll interval");
    assert.equal(world.siteStates.at(-1), undefined, "the site's ready relays changed: every domain");
    await world.sites.reconcile("site-a");
    assert.deepEqual([...(world.siteStates.at(-1) ?? ["all"])], [], "nothing changed");
    await world.report(queueReport("relay-1", { ...figures(1, 3), ...idle }));
    await world.sites.reconcile("site-a");
    assert.deepEqual([...(world.siteStates.at(-1) ?? ["all"])], ["example.com"], "mail queued for one domain");
  });

  it("is Ready only when every relay it asks for is ready", async () => {
    const world = new World();
    world.site({ replicas: 2 });
    await world.sites.reconcile("site-a");
    await world.relaysReady(1);
    await world.sites.reconcile("site-a");
    const half = condition(world.getSite(), "Ready");
    assert.equal(half?.status, "False");
    assert.equal(half?.reason, "RelaysNotReady");
    assert.match(half?.message ?? "", /1 of 2/);
    await world.relaysReady(2);
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "Ready")?.status, "True");
    assert.equal(world.getSite()?.status?.readyReplicas, 2);
  });

  it("names a missing or unusable TLS Secret as the reason it is not Ready", async () => {
    const world = new World();
    world.site({ tls: { secretName: "mx-a-tls" } });
    await world.sites.reconcile("site-a");
    await world.relaysReady(0);
    await world.sites.reconcile("site-a");
    let ready = condition(world.getSite(), "Ready");
    assert.equal(ready?.reason, "TlsSecretMissing");
    assert.match(ready?.message ?? "", /mxwarden\/mx-a-tls/);
    world.siteCluster.seed(Resources.Secret, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "mx-a-tls", namespace: RELAY_NS },
      type: "Opaque",
      data: { "tls.crt": "Y2VydA==" },
    });
    await world.sites.reconcile("site-a");
    ready = condition(world.getSite(), "Ready");
    assert.equal(ready?.reason, "TlsSecretInvalid");
    assert.match(ready?.message ?? "", /tls\.key/);
    await world.siteCluster.mergePatch(Resources.Secret, RELAY_NS, "mx-a-tls", { data: { "tls.key": "a2V5" } });
    await world.relaysReady(2);
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "Ready")?.reason, "RelaysReady");
  });

  it("does not fail the reconcile where its RBAC may not read the TLS Secret", async () => {
    const world = new World();
    world.site({ tls: { secretName: "mx-a-tls" } });
    world.siteCluster.forbidden.add("secrets");
    await world.sites.reconcile("site-a");
    await world.relaysReady(2);
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "Ready")?.reason, "RelaysReady");
    assert.equal(condition(world.getSite(), "ConfigApplied")?.status, "True");
  });

  it("runs a managed NATS: keys generated once in the operator's namespace, the servers in the site's, a leafnode to the peer that advertises, NatsReady from the StatefulSet", async () => {
    const world = new World();
    world.site({ nats: { domain: "site-a", managed: { replicas: 3 } } });
    world.mgmt.seed<Site>(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-b" },
      spec: { hostname: "mx-b.backup.test", nats: { domain: "site-b", managed: { leafnode: { advertise: "leaf-b.test:7422" } } } },
    });
    await world.sites.reconcile("site-a");
    const keys = world.mgmt.peek<Unstructured & { data: Record<string, string> }>(Resources.Secret, "mxwarden-system", "mxwarden-nats-site-a");
    assert.deepEqual(Object.keys(keys?.data ?? {}).sort(), ["encryption.key", "leafnode.seed", "relay.seed", "route.password"]);
    assert.ok(world.mgmt.peek(Resources.Secret, "mxwarden-system", "mxwarden-nats-site-b"), "the peer's keys too: its leafnode user is needed");
    assert.ok(world.siteCluster.peek(Resources.StatefulSet, RELAY_NS, "mxwarden-nats"));
    const relaySecret = world.siteCluster.peek<Unstructured & { data: Record<string, string> }>(Resources.Secret, RELAY_NS, "mxwarden-nats-relay");
    assert.equal(relaySecret?.data["nkey.seed"], keys?.data["relay.seed"], "the relays get the seed kept in the operator's namespace");
    const config = world.siteCluster.peek<ConfigMap>(Resources.ConfigMap, RELAY_NS, "mxwarden-nats")?.data?.["nats.conf"] ?? "";
    assert.match(config, /nats-leaf:\/\/leaf-b\.test:7422/, "site-a sorts first and site-b advertises: site-a dials");
    assert.equal(condition(world.getSite(), "NatsReady")?.reason, "NatsServersNotReady");
    await world.siteCluster.apply(
      Resources.StatefulSet,
      { apiVersion: "apps/v1", kind: "StatefulSet", metadata: { name: "mxwarden-nats", namespace: RELAY_NS }, status: { replicas: 3, readyReplicas: 3 } },
      { subresource: "status" },
    );
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "NatsReady")?.status, "True");
    const again = world.mgmt.peek<Unstructured & { data: Record<string, string> }>(Resources.Secret, "mxwarden-system", "mxwarden-nats-site-a");
    assert.deepEqual(again?.data, keys?.data, "the keys stay");
  });

  it("names a missing or incomplete NATS TLS Secret on NatsReady and Ready", async () => {
    const world = new World();
    world.site({ nats: { domain: "site-a", managed: { tls: { secretName: "nats-tls" } } } });
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "NatsReady")?.reason, "TlsSecretMissing");
    assert.match(condition(world.getSite(), "Ready")?.message ?? "", /spec\.nats\.managed\.tls\.secretName/);
    world.siteCluster.seed(Resources.Secret, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "nats-tls", namespace: RELAY_NS },
      type: "kubernetes.io/tls",
      data: { "tls.crt": "Y2VydA==", "tls.key": "a2V5" },
    });
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "NatsReady")?.reason, "TlsSecretInvalid");
    assert.match(condition(world.getSite(), "NatsReady")?.message ?? "", /ca\.crt/);
    await world.siteCluster.mergePatch(Resources.Secret, RELAY_NS, "nats-tls", { data: { "ca.crt": "Y2E=" } });
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "NatsReady")?.reason, "NatsServersNotReady");
  });

  it("runs managed clamd and rspamd next to the relays, removes them when the site names its own, and cleans them up with the site", async () => {
    const world = new World();
    world.site({ clamd: { managed: { signatures: { configMap: { name: "signatures" } } } }, rspamd: { managed: {} } });
    await world.sites.reconcile("site-a");
    const engines = ["mxwarden-clamd", "mxwarden-rspamd"];
    const kinds = [Resources.Deployment, Resources.Service, Resources.ConfigMap, Resources.NetworkPolicy, Resources.PodDisruptionBudget];
    for (const name of engines) for (const kind of kinds) assert.ok(world.siteCluster.peek(kind, RELAY_NS, name), `${kind.plural}/${name} applied`);
    const relay = world.siteCluster.peek<Unstructured & { spec: { template: { spec: { containers: { args: string[] }[] } } } }>(
      Resources.Deployment,
      RELAY_NS,
      "mxwarden-relay",
    );
    const args = relay?.spec.template.spec.containers[0]?.args ?? [];
    assert.ok(args.includes("--clamd=mxwarden-clamd.mxwarden.svc:3310") && args.includes("--rspamd=http://mxwarden-rspamd.mxwarden.svc:11333"), args.join(" "));
    assert.equal(condition(world.getSite(), "FiltersReady")?.reason, "FiltersNotReady");
    for (const name of engines) {
      await world.siteCluster.apply(
        Resources.Deployment,
        { apiVersion: "apps/v1", kind: "Deployment", metadata: { name, namespace: RELAY_NS }, status: { replicas: 2, readyReplicas: 2 } },
        { subresource: "status" },
      );
    }
    await world.sites.reconcile("site-a");
    assert.equal(condition(world.getSite(), "FiltersReady")?.status, "True");
    assert.equal(condition(world.getSite(), "FiltersReady")?.message, "clamd 2 of 2 ready, rspamd 2 of 2 ready");

    // The site switches to a clamd of its own: the managed one goes, rspamd stays.
    await world.mgmt.mergePatch(Resources.RelaySite, undefined, "site-a", { spec: { clamd: { managed: null, address: "clamd.av:3310" } } });
    await world.sites.reconcile("site-a");
    for (const kind of kinds) assert.equal(world.siteCluster.peek(kind, RELAY_NS, "mxwarden-clamd"), undefined, `${kind.plural}/mxwarden-clamd removed`);
    assert.ok(world.siteCluster.peek(Resources.Deployment, RELAY_NS, "mxwarden-rspamd"));
    assert.equal(condition(world.getSite(), "FiltersReady")?.message, "rspamd 2 of 2 ready");

    await world.mgmt.delete(Resources.RelaySite, undefined, "site-a");
    await world.sites.reconcile("site-a");
    for (const kind of kinds) assert.equal(world.siteCluster.peek(kind, RELAY_NS, "mxwarden-rspamd"), undefined, `${kind.plural}/mxwarden-rspamd cleaned up`);
  });

  it("marks an unreachable site False and keeps what it knew of the relays", async () => {
    const world = new World();
    world.site();
    world.connection.reachable = false;
    world.connection.lastError = "connect ECONNREFUSED";
    await world.sites.reconcile("site-a");
    const site = world.getSite();
    assert.equal(condition(site, "ClusterReachable")?.reason, "ClusterUnreachable");
    assert.equal(condition(site, "Ready")?.status, "False");
    assert.equal(world.states.get("site-a")?.reachable, false);
    assert.equal(world.siteCluster.requests.length, 0, "nothing was sent to the cut-off cluster");
  });
});

describe("domain reconcile (fake clusters)", () => {
  it("counts every relay's generation: two relays at different generations are ConfigPending until both run the new one", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "Ready")?.status, "True");
    await world.mgmt.mergePatch(Resources.RelayDomain, "team-a", "example", { spec: { maxMessageSize: "1Mi" } });
    const wanted = world.getDomain()?.metadata.generation as number;
    assert.equal(wanted, 2);
    // relay-1 has reloaded, relay-0 not yet; relay-1 wrote last, which alone used to decide.
    await world.report(queueReport("relay-0", figures(1)));
    await world.report(queueReport("relay-1", figures(2)));
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    let domain = world.getDomain();
    assert.equal(condition(domain, "Ready")?.status, "False");
    assert.equal(condition(domain, "site-a.sites.mxwarden.io/Ready")?.reason, "ConfigPending");
    assert.equal(domain?.status?.sites?.[0]?.appliedGeneration, 1, "the lowest generation a relay runs");
    await world.report(queueReport("relay-0", figures(2)));
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    domain = world.getDomain();
    assert.equal(condition(domain, "Ready")?.status, "True");
    assert.equal(domain?.status?.sites?.[0]?.appliedGeneration, 2);
  });

  it("ignores, and removes, the stale report of a relay that is gone", async () => {
    const world = await servedWorld(1);
    // A pod of an earlier rollout, at generation 0, last heard of ten minutes ago.
    await world.report(queueReport("relay-old", figures(0), new Date(Date.now() - 600_000)));
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "Ready")?.status, "True");
    const keys = Object.keys(world.siteCluster.peek<ConfigMap>(Resources.ConfigMap, RELAY_NS, "mxwarden-relay-status")?.data ?? {}).sort();
    assert.deepEqual(keys, [queueReportKey("relay-0"), queueReportKey("relay-1")]);
  });

  it("waits for a ready relay that has not reported yet", async () => {
    const world = await servedWorld(1);
    await world.siteCluster.mergePatch(Resources.ConfigMap, RELAY_NS, "mxwarden-relay-status", { data: { [queueReportKey("relay-1")]: null } });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    const site = condition(world.getDomain(), "site-a.sites.mxwarden.io/Ready");
    assert.equal(site?.reason, "NotReported");
    assert.match(site?.message ?? "", /1 of 2/);
  });

  it("is Ready once the site's relays run the domain's generation", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    const domain = world.getDomain();
    assert.deepEqual(domain?.metadata.finalizers, [DOMAIN_FINALIZER]);
    assert.equal(condition(domain, "Ready")?.reason, "AllSitesReady");
    assert.equal(condition(domain, "site-a.sites.mxwarden.io/Ready")?.reason, "Serving");
    assert.equal(domain?.status?.sitesReady, "1/1");
  });

  it("writes its status only when it changed", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    const written = world.getDomain()?.metadata.resourceVersion;
    await world.domains.reconcile("team-a/example");
    assert.equal(world.getDomain()?.metadata.resourceVersion, written);
    await world.report(queueReport("relay-1", figures(1, 2)));
    world.ageReports();
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(world.getDomain()?.status?.queuedMessages, 2);
  });

  it("keeps its Ready across an operator restart, until the new operator has read the site", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "Ready")?.status, "True");
    // A new operator knows nothing of the site before its first poll.
    world.states.delete("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "Ready")?.status, "True", "not flipped by what the new operator has not read yet");
    assert.equal(condition(world.getDomain(), "site-a.sites.mxwarden.io/Ready")?.reason, "Serving");
    // Once it has read the site, the site's verdict is its own again.
    await world.relaysReady(0);
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "site-a.sites.mxwarden.io/Ready")?.reason, "NoReadyRelays");
    assert.equal(condition(world.getDomain(), "Ready")?.status, "False");
  });

  it("waits with ConfigPending while the relays run an older generation", async () => {
    const world = await servedWorld(0);
    await world.domains.reconcile("team-a/example");
    const domain = world.getDomain();
    assert.equal(condition(domain, "Ready")?.reason, "SitesNotReady");
    assert.equal(condition(domain, "site-a.sites.mxwarden.io/Ready")?.reason, "ConfigPending");
  });

  it("refuses a younger claim on the same mail domain", async () => {
    const world = await servedWorld(1);
    world.domain("younger", "EXAMPLE.com", { creationTimestamp: "2099-01-01T00:00:00Z" });
    await world.domains.reconcile("team-a/younger");
    assert.equal(condition(world.getDomain("younger"), "Ready")?.reason, "DomainConflict");
  });

  it("keeps a deleted domain's finalizer while mail is queued, and lets it go once the relays report the queue empty", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    await world.mgmt.delete(Resources.RelayDomain, "team-a", "example");
    const deletedAt = Date.parse(world.getDomain()?.metadata.deletionTimestamp ?? "");
    const later = new Date(deletedAt + 2000);
    await world.report({ ...queueReport("relay-0", figures(1, 3, true), later), ...queueReport("relay-1", figures(1, 3, true), later) });
    await world.sites.reconcile("site-a");
    const draining = await world.domains.reconcile("team-a/example");
    assert.ok(draining.requeueAfterMs !== undefined);
    assert.equal(condition(world.getDomain(), "Ready")?.reason, "Draining");
    assert.equal(world.getDomain()?.status?.queuedMessages, 3);
    await world.report({ ...queueReport("relay-0", figures(1, 0, true), later), ...queueReport("relay-1", figures(1, 0, true), later) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(world.getDomain(), undefined, "finalizer removed, deletion complete");
  });

  it("lets a deleted domain with an empty queue go as soon as its relays report the deletion, not at the next site poll", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    await world.mgmt.delete(Resources.RelayDomain, "team-a", "example");
    const deletedAt = Date.parse(world.getDomain()?.metadata.deletionTimestamp ?? "");
    world.ageReports();
    const waiting = await world.domains.reconcile("team-a/example");
    assert.match(condition(world.getDomain(), "Ready")?.message ?? "", /0 of 2 relays have loaded the deletion/);
    assert.ok((waiting.requeueAfterMs ?? Infinity) <= 2000, `looks again within seconds, not after the ${POLL_MS} ms poll (${waiting.requeueAfterMs})`);
    // Both relays load the deletion and report at once; the site is not polled in between.
    const later = new Date(deletedAt + 1000);
    await world.report({ ...queueReport("relay-0", figures(1, 0, true), later), ...queueReport("relay-1", figures(1, 0, true), later) });
    world.ageReports();
    const done = await world.domains.reconcile("team-a/example");
    assert.deepEqual(done, {});
    assert.equal(world.getDomain(), undefined, "deletion complete");
    assert.deepEqual(await domainSeries(world.metrics), {}, "a deleted RelayDomain's series are gone");
    const drained = world.mgmt
      .cache<Unstructured & { reason?: string }>(Resources.Event)
      .list()
      .map((e) => e.reason);
    assert.deepEqual(
      drained.filter((r) => r === "Drained"),
      ["Drained"],
    );
  });

  it("waits for queued mail at the poll interval, and for a relay that has not loaded the deletion yet", async () => {
    const world = await servedWorld(1);
    await world.domains.reconcile("team-a/example");
    await world.mgmt.delete(Resources.RelayDomain, "team-a", "example");
    const later = new Date(Date.parse(world.getDomain()?.metadata.deletionTimestamp ?? "") + 1000);
    // relay-1 still runs the configuration from before the deletion and takes mail for the domain.
    await world.report({ ...queueReport("relay-0", figures(1, 0, true), later), ...queueReport("relay-1", figures(1, 0, false), later) });
    world.ageReports();
    await world.domains.reconcile("team-a/example");
    assert.match(condition(world.getDomain(), "Ready")?.message ?? "", /1 of 2 relays have loaded the deletion/);
    await world.report({ ...queueReport("relay-0", figures(1, 4, true), later), ...queueReport("relay-1", figures(1, 4, true), later) });
    world.ageReports();
    const queued = await world.domains.reconcile("team-a/example");
    assert.equal(queued.requeueAfterMs, POLL_MS);
    assert.equal(world.getDomain()?.status?.queuedMessages, 4);
    const series = await domainSeries(world.metrics);
    assert.equal(series.mxwarden_operator_domain_queued_messages?.["team-a/example"], 4, "a draining domain's queue is still shown");
    assert.equal(series.mxwarden_operator_domain_oldest_queued_seconds?.["team-a/example"], 60);
  });

  it("sets PrimaryReachable from the relays' reports: Unknown before any delivery, False when any relay cannot reach it, with the site and error, True again after", async () => {
    const world = await servedWorld(1);
    const events = () =>
      world.mgmt
        .cache<Unstructured & { reason?: string; type?: string; note?: string; metadata: { namespace?: string } }>(Resources.Event)
        .list()
        .filter((e) => e.reason?.startsWith("Primary"));
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.status, "Unknown");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.reason, "NotObserved");
    assert.deepEqual(events(), [], "nothing known is no news");
    assert.deepEqual(await domainSeries(world.metrics), {
      mxwarden_operator_domain_queued_messages: { "team-a/example": 0 },
      mxwarden_operator_domain_oldest_queued_seconds: { "team-a/example": 0 },
    });

    // relay-0 got through a moment ago; relay-1 has found no hop answering since 10:00.
    const down = figures(1, 0, false, {
      primaryReachable: false,
      primaryError: "connect ECONNREFUSED 192.0.2.1:25",
      primaryDownSince: "2026-12-05T10:00:00.000Z",
    });
    const up = figures(1, 0, false, { primaryReachable: true });
    await world.report({ ...queueReport("relay-0", up), ...queueReport("relay-1", down) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    let primary = condition(world.getDomain(), "PrimaryReachable");
    assert.equal(primary?.status, "False");
    assert.equal(primary?.reason, "PrimaryUnreachable");
    assert.match(primary?.message ?? "", /site-a: connect ECONNREFUSED 192\.0\.2\.1:25 since 2026-12-05T10:00:00\.000Z/);
    assert.equal(primary?.observedGeneration, 1);
    const since = primary?.lastTransitionTime;
    let recorded = events();
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0]?.type, "Warning");
    assert.equal(recorded[0]?.reason, "PrimaryUnreachable");
    assert.equal(recorded[0]?.metadata.namespace, "team-a");
    assert.match(recorded[0]?.note ?? "", /example\.com: .*ECONNREFUSED/);
    assert.equal((await domainSeries(world.metrics)).mxwarden_operator_domain_primary_reachable?.["team-a/example"], 0);

    // Unchanged on the next poll: no second Event, the transition time stays.
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.lastTransitionTime, since);
    assert.equal(events().length, 1);

    await world.report({ ...queueReport("relay-0", up), ...queueReport("relay-1", up) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    primary = condition(world.getDomain(), "PrimaryReachable");
    assert.equal(primary?.status, "True");
    assert.equal(primary?.reason, "PrimaryAnswers");
    assert.equal((await domainSeries(world.metrics)).mxwarden_operator_domain_primary_reachable?.["team-a/example"], 1);
    recorded = events();
    assert.deepEqual(
      recorded.map((e) => [e.type, e.reason]),
      [
        ["Warning", "PrimaryUnreachable"],
        ["Normal", "PrimaryReachable"],
      ],
    );
  });

  it("leaves a site whose cluster cannot be reached out of PrimaryReachable", async () => {
    const world = await servedWorld(1);
    const down = figures(1, 0, false, { primaryReachable: false, primaryError: "timed out" });
    await world.report({ ...queueReport("relay-0", down), ...queueReport("relay-1", down) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.status, "False");
    world.connection.reachable = false;
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.status, "Unknown");
    assert.equal(condition(world.getDomain(), "PrimaryReachable")?.reason, "NoReachableSites");
  });

  it("exports queued messages summed and the oldest age as the maximum over the sites, and forgets a RelayDomain that is gone", async () => {
    const world = await servedWorld(1);
    await world.report({ ...queueReport("relay-0", figures(1, 7)), ...queueReport("relay-1", figures(1, 7)) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    let series = await domainSeries(world.metrics);
    assert.equal(series.mxwarden_operator_domain_queued_messages?.["team-a/example"], 7);
    assert.equal(series.mxwarden_operator_domain_oldest_queued_seconds?.["team-a/example"], 60);
    // Gone without this operator seeing the drain (its finalizer removed by hand, say).
    await world.mgmt.mergePatch(Resources.RelayDomain, "team-a", "example", { metadata: { finalizers: null } });
    await world.mgmt.delete(Resources.RelayDomain, "team-a", "example");
    assert.equal(world.getDomain(), undefined);
    await world.domains.reconcile("team-a/example");
    series = await domainSeries(world.metrics);
    assert.deepEqual(series, {});
  });
});

describe("maintenance hold in the domain's status (fake clusters)", () => {
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;

  async function heldWorld(spec: Partial<Domain["spec"]>): Promise<World> {
    const world = await servedWorld(1);
    await world.mgmt.mergePatch(Resources.RelayDomain, "team-a", "example", { spec });
    return world;
  }

  it("shows a hold within four fifths of the queue lifetime as Holding, uncapped, and looks again by the next poll", async () => {
    const until = new Date(Date.now() + HOUR).toISOString();
    const world = await heldWorld({ hold: { until } });
    const outcome = await world.domains.reconcile("team-a/example");
    const domain = world.getDomain();
    assert.deepEqual(domain?.status?.hold, { until, maxHold: "4d", capped: false });
    const held = condition(domain, "Held");
    assert.equal(held?.status, "True");
    assert.equal(held?.reason, "Holding");
    assert.match(held?.message ?? "", new RegExp(until.replace(/\./g, "\\.")));
    assert.ok(outcome.requeueAfterMs !== undefined && outcome.requeueAfterMs <= POLL_MS);
  });

  it("shows the cap when until is further away than four fifths of the queue lifetime, with the same rule as the relay", async () => {
    const untilMs = Date.now() + 2 * HOUR;
    const world = await heldWorld({ hold: { until: new Date(untilMs).toISOString().replace("Z", "+00:00") }, queue: { lifetime: "1h" } });
    await world.domains.reconcile("team-a/example");
    const domain = world.getDomain();
    const until = new Date(untilMs).toISOString();
    assert.deepEqual(domain?.status?.hold, { until, maxHold: "48m", capped: true }, "until in UTC; the cap is four fifths of 1h");
    assert.equal(holdEnd(untilMs, Date.now(), HOUR) < untilMs, true, "the relay would release mail accepted now before until");
    const held = condition(domain, "Held");
    assert.equal(held?.status, "True");
    assert.equal(held?.reason, "HoldCapped");
    const fullFrom = new Date(untilMs - 48 * 60_000).toISOString();
    assert.match(held?.message ?? "", /held at most 48m after it is accepted/);
    assert.ok(held?.message.includes(`mail accepted before ${fullFrom} is released before ${until}`), held?.message);
  });

  it("caps at four fifths of the default lifetime of 5d", async () => {
    const world = await heldWorld({ hold: { until: new Date(Date.now() + 6 * DAY).toISOString() } });
    await world.domains.reconcile("team-a/example");
    assert.equal(world.getDomain()?.status?.hold?.maxHold, "4d");
    assert.equal(world.getDomain()?.status?.hold?.capped, true);
  });

  it("removes the status and the condition when the hold is removed", async () => {
    const world = await heldWorld({ hold: { until: new Date(Date.now() + HOUR).toISOString() } });
    await world.domains.reconcile("team-a/example");
    assert.ok(world.getDomain()?.status?.hold);
    await world.mgmt.mergePatch(Resources.RelayDomain, "team-a", "example", { spec: { hold: null } });
    assert.equal(world.getDomain()?.spec.hold, undefined);
    const outcome = await world.domains.reconcile("team-a/example");
    assert.equal(world.getDomain()?.status?.hold, undefined);
    assert.equal(condition(world.getDomain(), "Held"), undefined);
    assert.equal(outcome.requeueAfterMs, undefined, "no hold, nothing to look at again");
  });

  it("shows nothing for a hold whose until has passed, and removes what it showed once the hold ends", async () => {
    const past = await heldWorld({ hold: { until: new Date(Date.now() - 60_000).toISOString() } });
    await past.domains.reconcile("team-a/example");
    assert.equal(past.getDomain()?.status?.hold, undefined);
    assert.equal(condition(past.getDomain(), "Held"), undefined);

    const ending = await heldWorld({ hold: { until: new Date(Date.now() + HOUR).toISOString() } });
    await ending.domains.reconcile("team-a/example");
    assert.equal(condition(ending.getDomain(), "Held")?.reason, "Holding");
    // The same spec an hour and more later: the hold has ended.
    const until = ending.getDomain()?.spec.hold?.until ?? "";
    await ending.mgmt.mergePatch(Resources.RelayDomain, "team-a", "example", {
      spec: { hold: { until: new Date(Date.parse(until) - 2 * HOUR).toISOString() } },
    });
    await ending.domains.reconcile("team-a/example");
    assert.equal(ending.getDomain()?.status?.hold, undefined);
    assert.equal(condition(ending.getDomain(), "Held"), undefined);
  });

  it("drops the hold from a deleted domain's status: the relays no longer hold its mail", async () => {
    const world = await heldWorld({ hold: { until: new Date(Date.now() + HOUR).toISOString() } });
    await world.domains.reconcile("team-a/example");
    await world.mgmt.delete(Resources.RelayDomain, "team-a", "example");
    const later = new Date(Date.parse(world.getDomain()?.metadata.deletionTimestamp ?? "") + 2000);
    await world.report({ ...queueReport("relay-0", figures(1, 3, true), later), ...queueReport("relay-1", figures(1, 3, true), later) });
    await world.sites.reconcile("site-a");
    await world.domains.reconcile("team-a/example");
    assert.equal(condition(world.getDomain(), "Ready")?.reason, "Draining");
    assert.equal(world.getDomain()?.status?.hold, undefined);
    assert.equal(condition(world.getDomain(), "Held"), undefined);
  });
});
