// Reconciles one RelaySite: renders what its relays need from the site and the RelayDomains that
// it serves, applies it with server-side apply in the site's cluster, reads back the Deployment
// and the relays' queue report, and writes the RelaySite status. A site whose cluster cannot be
// reached gets ClusterReachable=False and is retried; its relays keep their last configuration.

import type { Logger } from "#relay";
import {
  API_VERSION,
  DEFAULT_CLAMD_REPLICAS,
  DEFAULT_NATS_REPLICAS,
  DEFAULT_RSPAMD_REPLICAS,
  DEFAULT_RELAY_REPLICAS,
  domainKey,
  setCondition,
  type Condition,
  type ConditionInput,
  type RelayDomain,
  type RelaySite,
} from "#api";
import { ApiError, isNotFound, type Unstructured } from "../kube/api-client.ts";
import type { KubeClient, ObjectCache } from "../kube/kube-client.ts";
import { refForKind, Resources } from "../kube/resources.ts";
import { DOMAIN_CONFIG_LABEL, siteDomainConfig } from "../render/domain-config.ts";
import { NATS_NAME, NATS_OBJECTS, type NatsPeer, type NatsRenderOptions } from "../render/nats-objects.ts";
import { CLAMD_NAME, CLAMD_OBJECTS } from "../render/clamd-objects.ts";
import { RSPAMD_NAME, RSPAMD_OBJECTS } from "../render/rspamd-objects.ts";
import {
  DOMAIN_SHARDS_INDEX,
  LEGACY_DOMAINS_CONFIGMAP,
  METRICS_SERVICE,
  RELAY_DOMAINS_CLUSTERROLE,
  RELAY_NAME,
  renderSite,
  siteNamespace,
  SMTP_SERVICE,
  STATUS_CONFIGMAP,
} from "../render/site-objects.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { ReconcileOutcome } from "./controller-runner.ts";
import type { EventRecorder } from "./events.ts";
import { setFinalizer } from "./finalizers.ts";
import { ensureNatsCredentials } from "./nats-credentials.ts";
import { changedViews, domainAtSite, domainView, readSiteReports } from "./relay-reports.ts";
import type { SiteClients } from "./site-connections.ts";
import type { SiteStates } from "./site-state.ts";

export const SITE_FINALIZER = "mxwarden.io/site-cleanup";
/** How often the relays' reports are read while some relay does not run the current configuration yet. */
const REPORT_RECHECK_MS = 1000;
/** For how long after a configuration change; after that, at the poll interval. */
const REPORT_RECHECK_WINDOW_MS = 60_000;

export interface SiteReconcilerDeps {
  client: KubeClient;
  sites: ObjectCache<RelaySite & Unstructured>;
  domains: ObjectCache<RelayDomain & Unstructured>;
  connections: SiteClients;
  states: SiteStates;
  events: EventRecorder;
  metrics: OperatorMetrics;
  relayImage: string;
  /** nats-server image for managed NATS that names none. */
  natsImage: string;
  /** Images of managed clamd and rspamd that name none. */
  filterImages: { clamd: string; rspamd: string };
  /** Where the managed NATS keys are kept (nats-credentials.ts). */
  operatorNamespace: string;
  prometheusRuleGroups: unknown[];
  pollIntervalMs: number;
  /** Called after the site's state was read, so the domains it serves refresh their status: those of `changed` (mail domains), or all when undefined. */
  onSiteState: (siteName: string, changed?: ReadonlySet<string>) => void;
  log: Logger;
}

/** Everything renderSite may create, deleted when the site goes away (namespaces are left: they may hold the user's Secrets). */
const CLEANUP: [kind: string, name: string][] = [
  ["Deployment", RELAY_NAME],
  ["Service", SMTP_SERVICE],
  ["Service", METRICS_SERVICE],
  ["PodDisruptionBudget", RELAY_NAME],
  ["NetworkPolicy", RELAY_NAME],
  ["ConfigMap", LEGACY_DOMAINS_CONFIGMAP],
  ["ConfigMap", DOMAIN_SHARDS_INDEX],
  ["RoleBinding", RELAY_DOMAINS_CLUSTERROLE],
  ["ConfigMap", STATUS_CONFIGMAP],
  ["RoleBinding", RELAY_NAME],
  ["Role", RELAY_NAME],
  ["ServiceAccount", RELAY_NAME],
  ...NATS_OBJECTS,
  ...CLAMD_OBJECTS,
  ...RSPAMD_OBJECTS,
];
const MONITORING: [kind: string, name: string][] = [
  ["ServiceMonitor", RELAY_NAME],
  ["PrometheusRule", RELAY_NAME],
];

export class SiteReconciler {
  private readonly deps: SiteReconcilerDeps;
  /** Sites whose TLS Secret the operator may not read, warned about once. */
  private readonly tlsUncheckable = new Set<string>();

  constructor(deps: SiteReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(name: string): Promise<ReconcileOutcome> {
    const { sites, connections, states } = this.deps;
    const site = sites.get(name);
    if (!site) {
      connections.forget(name);
      states.delete(name);
      this.deps.metrics.siteReachable.remove({ site: name });
      this.deps.onSiteState(name);
      return {};
    }
    if (site.metadata.deletionTimestamp) return await this.finalize(site);
    await setFinalizer(this.deps.client, Resources.RelaySite, site.metadata, SITE_FINALIZER, true);

    let connection;
    try {
      connection = await connections.ensure(site);
    } catch (err) {
      return await this.unusable(site, "KubeconfigInvalid", err instanceof Error ? err.message : String(err));
    }
    this.deps.metrics.siteReachable.set({ site: name }, connection.reachable ? 1 : 0);
    if (!connection.reachable) return await this.unusable(site, "ClusterUnreachable", connection.lastError ?? "the site's API server does not answer");

    const config = siteDomainConfig(site, this.deps.domains.list());
    const peerJetStreamDomains = sites
      .list()
      .filter((other) => other.metadata.name !== name && !other.metadata.deletionTimestamp && other.spec.nats.domain)
      .map((other) => other.spec.nats.domain as string)
      .sort();
    const objects = renderSite(site, config, {
      relayImage: this.deps.relayImage,
      peerJetStreamDomains,
      prometheusOperator: connection.prometheusOperator,
      prometheusRuleGroups: this.deps.prometheusRuleGroups,
      owner:
        site.spec.cluster?.kubeconfigSecretRef || !site.metadata.uid ? undefined : { apiVersion: API_VERSION, kind: "RelaySite", name, uid: site.metadata.uid },
      nats: site.spec.nats.managed ? await this.natsRenderOptions(site) : undefined,
      filterImages: this.deps.filterImages,
    });
    const namespace = siteNamespace(site);
    const previousShards = await this.domainShards(connection.client, namespace);
    for (const object of objects) await connection.client.apply(refForKind(object.kind), object as Unstructured);
    // Shards of an earlier count go once the new set (and its index) is written: relays read the
    // union, so a domain is never missing in between.
    const currentShards = new Set(objects.filter((o) => o.kind === "ConfigMap" && o.metadata.labels?.[DOMAIN_CONFIG_LABEL]).map((o) => o.metadata.name));
    for (const stale of previousShards.filter((shard) => !currentShards.has(shard))) await connection.client.delete(Resources.ConfigMap, namespace, stale);
    // A managed engine the site no longer asks for (it names an address now, or none) goes.
    if (!site.spec.clamd?.managed) await this.removeEngine(connection.client, namespace, CLAMD_NAME, CLAMD_OBJECTS);
    if (!site.spec.rspamd?.managed) await this.removeEngine(connection.client, namespace, RSPAMD_NAME, RSPAMD_OBJECTS);
    if (connection.prometheusOperator && this.deps.prometheusRuleGroups.length === 0)
      await connection.client.delete(Resources.PrometheusRule, namespace, RELAY_NAME);

    const deployment = await connection.client.get<
      Unstructured & {
        metadata: { generation?: number };
        status?: { readyReplicas?: number; replicas?: number; updatedReplicas?: number; observedGeneration?: number };
      }
    >(Resources.Deployment, namespace, RELAY_NAME);
    const readyRelays = deployment.status?.readyReplicas ?? 0;
    // The single mounted ConfigMap of earlier versions, once no pod of an older template runs.
    const rolledOut =
      (deployment.status?.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0) &&
      (deployment.status?.updatedReplicas ?? 0) === (deployment.status?.replicas ?? 0);
    if (rolledOut) await connection.client.delete(Resources.ConfigMap, namespace, LEGACY_DOMAINS_CONFIGMAP);
    const filtersReadiness = await this.filtersReadiness(connection.client, namespace, site);
    const natsReadiness = site.spec.nats.managed
      ? await this.natsReadiness(connection.client, namespace, site.spec.nats.managed.replicas ?? DEFAULT_NATS_REPLICAS)
      : undefined;
    const reportMap = await connection.client.get<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, namespace, STATUS_CONFIGMAP);
    const reports = readSiteReports(reportMap.data, new Date());
    // Every pod of every rollout writes a key of its own: those of pods gone are removed here.
    if (reports.gone.length > 0)
      await connection.client.mergePatch(Resources.ConfigMap, namespace, STATUS_CONFIGMAP, {
        data: Object.fromEntries(reports.gone.map((key) => [key, null])),
      });
    const previous = states.get(name);
    const views = new Map<string, string>();
    let lagging = 0;
    for (const domain of config.domains) {
      const mailDomain = domainKey(domain.spec.domain);
      const atSite = domainAtSite(reports, mailDomain);
      if (atSite.appliedGeneration !== domain.metadata.generation) lagging++;
      views.set(mailDomain, domainView(reports, mailDomain, atSite));
    }
    // The domains whose figures here changed; all of them on the first reading, or when the site's own state changed.
    const changed = previous?.reachable && previous.readyRelays === readyRelays && previous.views ? changedViews(previous.views, views) : undefined;
    const configChangedAt = previous?.configHash === config.hash ? (previous.configChangedAt ?? 0) : Date.now();
    states.set(name, { reachable: true, readyRelays, reports, reportsReadAt: Date.now(), configHash: config.hash, configChangedAt, views });
    this.deps.metrics.siteReadyRelays.set({ site: name }, readyRelays);
    this.deps.metrics.siteConfigGenerationLag.set({ site: name }, lagging);

    if (site.status?.configHash !== config.hash) {
      await this.deps.events.record(
        site,
        "Normal",
        "ConfigApplied",
        "Apply",
        `domain configuration ${config.hash} (${config.domains.length} domains) applied to namespace ${namespace}`,
      );
    }
    const generation = site.metadata.generation ?? 0;
    let conditions: Condition[] = site.status?.conditions ?? [];
    const now = new Date();
    conditions = setCondition(
      conditions,
      { type: "ClusterReachable", status: "True", reason: "Reachable", message: "the site's API server answers", observedGeneration: generation },
      now,
    );
    conditions = setCondition(
      conditions,
      {
        type: "ConfigApplied",
        status: "True",
        reason: "Applied",
        message: `configuration ${config.hash} with ${config.domains.length} domains applied`,
        observedGeneration: generation,
      },
      now,
    );
    // The managed servers and the relays (its ca.crt) mount the NATS TLS Secret: without it neither starts.
    const natsTls = site.spec.nats.managed?.tls;
    const natsTlsProblem = natsTls
      ? await this.tlsSecretProblem(name, connection.client, namespace, natsTls.secretName, {
          field: "spec.nats.managed.tls.secretName",
          keys: ["tls.crt", "tls.key", "ca.crt"],
          pods: "nats-server and relay pods",
        })
      : undefined;
    if (natsReadiness) conditions = setCondition(conditions, { type: "NatsReady", ...(natsTlsProblem ?? natsReadiness), observedGeneration: generation }, now);
    if (filtersReadiness) conditions = setCondition(conditions, { type: "FiltersReady", ...filtersReadiness, observedGeneration: generation }, now);
    else conditions = conditions.filter((c) => c.type !== "FiltersReady");
    const wanted = site.spec.replicas ?? DEFAULT_RELAY_REPLICAS;
    // A relay pod cannot start without its TLS Secret (it waits in ContainerCreating): name the cause.
    const tlsProblem = site.spec.tls ? await this.tlsSecretProblem(name, connection.client, namespace, site.spec.tls.secretName) : undefined;
    conditions = setCondition(
      conditions,
      { type: "Ready", ...(tlsProblem ?? natsTlsProblem ?? relayReadiness(readyRelays, wanted)), observedGeneration: generation },
      now,
    );
    await this.writeStatus(site, {
      observedGeneration: generation,
      conditions,
      replicas: wanted,
      readyReplicas: readyRelays,
      domains: config.domains.length,
      configHash: config.hash,
    });
    this.deps.onSiteState(name, changed);
    // The relays load a change within a second or two and report at once: read their reports
    // again soon, rather than at the next poll, until they all run it (or the window closes, for
    // relays that cannot load it).
    const recheck = lagging > 0 && Date.now() - configChangedAt < REPORT_RECHECK_WINDOW_MS;
    return { requeueAfterMs: recheck ? Math.min(REPORT_RECHECK_MS, this.deps.pollIntervalMs) : this.deps.pollIntervalMs };
  }

  /** The keys, image and leafnode peers of a site's managed NATS; generates the keys on first use. */
  private async natsRenderOptions(site: RelaySite): Promise<NatsRenderOptions> {
    const { client, operatorNamespace } = this.deps;
    const credentials = await ensureNatsCredentials(client, operatorNamespace, site.metadata.name);
    const peers: NatsPeer[] = [];
    const domain = site.spec.nats.domain;
    if (domain) {
      const others = this.deps.sites
        .list()
        .filter((other) => other.metadata.name !== site.metadata.name && !other.metadata.deletionTimestamp && other.spec.nats.managed && other.spec.nats.domain)
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      for (const other of others) {
        const managed = other.spec.nats.managed;
        peers.push({
          domain: other.spec.nats.domain as string,
          advertise: managed?.leafnode?.advertise,
          leafnodePublicKey: (await ensureNatsCredentials(client, operatorNamespace, other.metadata.name)).leafnodePublicKey,
          tls: managed?.tls !== undefined,
        });
      }
    }
    return { natsImage: this.deps.natsImage, credentials, peers };
  }

  /**
   * FiltersReady from the managed engines' Deployments: every clamd and rspamd pod ready (clamd's
   * databases loaded, rspamd answering /ping) or not; undefined when the site runs neither.
   */
  private async filtersReadiness(client: KubeClient, namespace: string, site: RelaySite): Promise<Omit<ConditionInput, "type"> | undefined> {
    const engines: [name: string, deployment: string, wanted: number][] = [];
    if (site.spec.clamd?.managed) engines.push(["clamd", CLAMD_NAME, site.spec.clamd.managed.replicas ?? DEFAULT_CLAMD_REPLICAS]);
    if (site.spec.rspamd?.managed) engines.push(["rspamd", RSPAMD_NAME, site.spec.rspamd.managed.replicas ?? DEFAULT_RSPAMD_REPLICAS]);
    if (engines.length === 0) return undefined;
    const counts: string[] = [];
    let allReady = true;
    for (const [engine, name, wanted] of engines) {
      const deployment = await client
        .get<Unstructured & { status?: { readyReplicas?: number } }>(Resources.Deployment, namespace, name)
        .catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      const ready = deployment?.status?.readyReplicas ?? 0;
      if (ready < wanted) allReady = false;
      counts.push(`${engine} ${ready} of ${wanted} ready`);
    }
    const message = counts.join(", ");
    return allReady ? { status: "True", reason: "FiltersReady", message } : { status: "False", reason: "FiltersNotReady", message };
  }

  /** NatsReady from the StatefulSet: every server ready (JetStream enabled) or not. */
  private async natsReadiness(client: KubeClient, namespace: string, wanted: number): Promise<Omit<ConditionInput, "type">> {
    const statefulSet = await client
      .get<Unstructured & { status?: { readyReplicas?: number } }>(Resources.StatefulSet, namespace, NATS_NAME)
      .catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
    const ready = statefulSet?.status?.readyReplicas ?? 0;
    if (ready < wanted) return { status: "False", reason: "NatsServersNotReady", message: `${ready} of ${wanted} nats-servers ready` };
    return { status: "True", reason: "NatsServersReady", message: `${ready} of ${wanted} nats-servers ready` };
  }

  /** Why the site's TLS Secret cannot serve the relays, if it cannot; undefined when it can, or when the operator may not look. */
  private async tlsSecretProblem(
    siteName: string,
    client: KubeClient,
    namespace: string,
    secretName: string,
    use: { field: string; keys: string[]; pods: string } = { field: "spec.tls.secretName", keys: ["tls.crt", "tls.key"], pods: "relay pods" },
  ): Promise<Omit<ConditionInput, "type"> | undefined> {
    let secret: Unstructured & { data?: Record<string, string> };
    try {
      secret = await client.get(Resources.Secret, namespace, secretName);
    } catch (err) {
      if (isNotFound(err)) {
        return {
          status: "False",
          reason: "TlsSecretMissing",
          message: `Secret ${namespace}/${secretName} (${use.field}) does not exist: ${use.pods} cannot start until it is created in the relays' namespace`,
        };
      }
      if (!(err instanceof ApiError && err.code === 403)) throw err;
      // A site cluster whose siteAccess RBAC predates this check: the relays' readiness still tells.
      if (!this.tlsUncheckable.has(siteName))
        this.deps.log.warn("may not read the site's TLS Secret; upgrade the chart's siteAccess RBAC there", {
          site: siteName,
          secret: `${namespace}/${secretName}`,
        });
      this.tlsUncheckable.add(siteName);
      return undefined;
    }
    const missing = use.keys.filter((key) => !secret.data?.[key]);
    if (missing.length > 0)
      return {
        status: "False",
        reason: "TlsSecretInvalid",
        message: `Secret ${namespace}/${secretName} (${use.field}) has no ${missing.join(" or ")}: it must be a kubernetes.io/tls Secret${use.keys.includes("ca.crt") ? " with its CA" : ""}`,
      };
    return undefined;
  }

  private async unusable(site: RelaySite & Unstructured, reason: string, message: string): Promise<ReconcileOutcome> {
    const name = site.metadata.name;
    const previous = this.deps.states.get(name);
    this.deps.states.set(name, {
      reachable: false,
      problem: { reason, message },
      readyRelays: previous?.readyRelays ?? 0,
      reports: previous?.reports ?? { live: [], gone: [] },
      reportsReadAt: previous?.reportsReadAt ?? 0,
    });
    const generation = site.metadata.generation ?? 0;
    const now = new Date();
    const wasReachable = site.status?.conditions?.find((c) => c.type === "ClusterReachable")?.status !== "False";
    let conditions = setCondition(site.status?.conditions, { type: "ClusterReachable", status: "False", reason, message, observedGeneration: generation }, now);
    conditions = setCondition(
      conditions,
      { type: "Ready", status: "False", reason, message: `relays keep serving with their last configuration; ${message}`, observedGeneration: generation },
      now,
    );
    if (wasReachable) await this.deps.events.record(site, "Warning", reason, "Connect", message);
    await this.writeStatus(site, { ...(site.status ?? {}), observedGeneration: generation, conditions });
    this.deps.onSiteState(name);
    return { requeueAfterMs: this.deps.pollIntervalMs };
  }

  /** Deletes a managed filter engine's objects if its Deployment exists (one read per poll otherwise). */
  private async removeEngine(client: KubeClient, namespace: string, deploymentName: string, objects: [kind: string, name: string][]): Promise<void> {
    try {
      await client.get(Resources.Deployment, namespace, deploymentName);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const [kind, name] of objects) await client.delete(refForKind(kind), namespace, name);
  }

  /** The domain shards the last reconcile wrote, from their index ([] before the first). */
  private async domainShards(client: KubeClient, namespace: string): Promise<string[]> {
    try {
      const index = await client.get<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, namespace, DOMAIN_SHARDS_INDEX);
      return (index.data?.shards ?? "").split(",").filter((name) => name !== "");
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  private async finalize(site: RelaySite & Unstructured): Promise<ReconcileOutcome> {
    if (!(site.metadata.finalizers ?? []).includes(SITE_FINALIZER)) return {};
    let connection;
    try {
      connection = await this.deps.connections.ensure(site);
    } catch (err) {
      // The kubeconfig is gone or broken: nothing can be cleaned up there, and nothing should
      // keep the site from being deleted.
      this.deps.log.warn("cannot reach the site to clean up; removing the finalizer", { site: site.metadata.name, error: err });
      connection = undefined;
    }
    if (connection && !connection.reachable) return await this.unusable(site, "ClusterUnreachable", "waiting for the site's cluster to clean up relays");
    if (connection) {
      const namespace = siteNamespace(site);
      for (const shard of await this.domainShards(connection.client, namespace)) await connection.client.delete(Resources.ConfigMap, namespace, shard);
      for (const [kind, objectName] of [...MONITORING, ...CLEANUP]) {
        if (MONITORING.some(([k]) => k === kind) && !connection.prometheusOperator) continue;
        await connection.client.delete(refForKind(kind), namespace, objectName);
      }
    }
    await this.deps.events.record(site, "Normal", "Deleted", "Delete", "relays removed from the site");
    await setFinalizer(this.deps.client, Resources.RelaySite, site.metadata, SITE_FINALIZER, false);
    this.deps.connections.forget(site.metadata.name);
    return {};
  }

  private async writeStatus(site: RelaySite, status: RelaySite["status"]): Promise<void> {
    try {
      await this.deps.client.apply(
        Resources.RelaySite,
        { apiVersion: API_VERSION, kind: "RelaySite", metadata: { name: site.metadata.name }, status },
        { subresource: "status" },
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/**
 * The site's Ready condition from its relays: True only when every relay the site asks for is
 * ready. One of two ready still takes mail, but with no redundancy left, which is not Ready.
 */
export function relayReadiness(readyRelays: number, wanted: number): Omit<ConditionInput, "type"> {
  if (readyRelays === 0) return { status: "False", reason: "NoReadyRelays", message: "no relay pod is ready yet" };
  if (readyRelays < wanted) return { status: "False", reason: "RelaysNotReady", message: `${readyRelays} of ${wanted} relays ready` };
  return { status: "True", reason: "RelaysReady", message: `${readyRelays} of ${wanted} relays ready` };
}
