// Wires the operator together: informers on RelaySites, RelayDomains, RelayQueueRequests and the
// kubeconfig Secrets in the management cluster, one work queue per controller, the per-site
// connections, and leader election. Only the leader reconciles; every replica serves probes and
// metrics.

import type { Logger } from "#relay";
import type { RelayDomain } from "#api";
import type { RelayQueueRequest, RelaySite } from "#api";
import type { ApiClient, Unstructured } from "../kube/api-client.ts";
import { Informer, objectKeyOf } from "../kube/informer.ts";
import { LeaderElector } from "../kube/leader-election.ts";
import { Resources } from "../kube/resources.ts";
import type { OperatorMetrics } from "../metrics.ts";
import { ControllerRunner } from "./controller-runner.ts";
import { DnsChecker } from "./dns-check.ts";
import { DomainClaims } from "./domain-claims.ts";
import { DomainReconciler } from "./domain-reconciler.ts";
import { EventRecorder } from "./events.ts";
import { QueueRequestReconciler } from "./queue-requests.ts";
import { SiteConnections } from "./site-connections.ts";
import type { SiteQueueConnector } from "./site-queue.ts";
import { SiteReconciler } from "./site-reconciler.ts";
import { SiteStates } from "./site-state.ts";

export interface OperatorOptions {
  client: ApiClient;
  namespace: string;
  identity: string;
  relayImage: string;
  natsImage: string;
  /** Images of managed clamd and rspamd that name none. */
  filterImages: { clamd: string; rspamd: string };
  leaderElection: boolean;
  /** DNS servers for the DNSConfigured check; undefined: the system's; null: no DNS check. */
  dnsServers: string[] | undefined | null;
  prometheusRuleGroups: unknown[];
  pollIntervalMs: number;
  siteHealthIntervalMs: number;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** How queue requests reach a site's queue (QueueAdmin over the site's NATS). */
  connectSiteQueue: SiteQueueConnector;
  metrics: OperatorMetrics;
  log: Logger;
}

/** RelayDomain reconciles at once. */
const DOMAIN_WORKERS = 4;

type SiteObject = RelaySite & Unstructured;
type DomainObject = RelayDomain & Unstructured;
type RequestObject = RelayQueueRequest & Unstructured;

export class Operator {
  readonly sites: Informer<SiteObject>;
  readonly domains: Informer<DomainObject>;
  readonly requests: Informer<RequestObject>;
  private readonly secrets: Informer<Unstructured>;
  private readonly siteController: ControllerRunner;
  private readonly domainController: ControllerRunner;
  private readonly requestController: ControllerRunner;
  private readonly connections: SiteConnections;
  private readonly elector: LeaderElector | undefined;
  private readonly options: OperatorOptions;
  private readonly seenGenerations = new Map<string, string>();
  private readonly claims = new DomainClaims();
  private leading = false;
  private stopped = false;
  private electionDone: Promise<void> | undefined;

  constructor(options: OperatorOptions) {
    this.options = options;
    const { client, log, metrics } = options;
    const states = new SiteStates();
    const events = new EventRecorder(client, options.identity, log);
    this.sites = new Informer<SiteObject>(
      client,
      Resources.RelaySite,
      undefined,
      (key) => this.onSiteEvent(key),
      (err) => log.warn("RelaySite watch failed; re-listing", { error: err }),
    );
    this.domains = new Informer<DomainObject>(
      client,
      Resources.RelayDomain,
      undefined,
      (key) => this.onDomainEvent(key),
      (err) => log.warn("RelayDomain watch failed; re-listing", { error: err }),
    );
    this.requests = new Informer<RequestObject>(
      client,
      Resources.RelayQueueRequest,
      undefined,
      (key) => this.requestController.enqueue(key),
      (err) => log.warn("RelayQueueRequest watch failed; re-listing", { error: err }),
    );
    this.secrets = new Informer<Unstructured>(
      client,
      Resources.Secret,
      options.namespace,
      (key) => this.onSecretEvent(key),
      (err) => log.warn("Secret watch failed; re-listing", { error: err }),
    );
    this.connections = new SiteConnections({
      localClient: client,
      operatorNamespace: options.namespace,
      healthIntervalMs: options.siteHealthIntervalMs,
      healthTimeoutMs: Math.max(1000, Math.min(5000, options.siteHealthIntervalMs)),
      onChange: (site) => this.siteController.enqueue(site),
      onReachability: (site, reachable) => metrics.siteReachable.set({ site }, reachable ? 1 : 0),
      log,
    });
    const siteReconciler = new SiteReconciler({
      client,
      sites: this.sites,
      domains: this.domains,
      connections: this.connections,
      states,
      events,
      metrics,
      relayImage: options.relayImage,
      natsImage: options.natsImage,
      filterImages: options.filterImages,
      operatorNamespace: options.namespace,
      prometheusRuleGroups: options.prometheusRuleGroups,
      pollIntervalMs: options.pollIntervalMs,
      onSiteState: (_site, changed) => {
        const keys = changed ? [...changed].flatMap((mailDomain) => this.claims.of(mailDomain)) : this.domains.list().map((d) => objectKeyOf(d));
        for (const key of keys) this.domainController.enqueue(key);
      },
      log,
    });
    const domainReconciler = new DomainReconciler({
      client,
      sites: this.sites,
      domains: this.domains,
      states,
      connections: this.connections,
      events,
      metrics,
      dns: options.dnsServers === null ? undefined : new DnsChecker(options.dnsServers, 5 * 60_000),
      claimants: (mailDomain) => this.claims.of(mailDomain).flatMap((key) => this.domains.get(key) ?? []),
      pollIntervalMs: options.pollIntervalMs,
      log,
    });
    const requestReconciler = new QueueRequestReconciler({
      client,
      requests: this.requests,
      domains: this.domains,
      sites: this.sites,
      connect: options.connectSiteQueue,
      log,
    });
    this.siteController = new ControllerRunner("relaysite", (key) => siteReconciler.reconcile(key), metrics, log);
    // A domain reconcile mostly waits for its status write: with 10,000 RelayDomains created at
    // once, one at a time managed about 8 a second (bench/cluster-scale.ts).
    this.domainController = new ControllerRunner("relaydomain", (key) => domainReconciler.reconcile(key), metrics, log, DOMAIN_WORKERS);
    this.requestController = new ControllerRunner("relayqueuerequest", (key) => requestReconciler.reconcile(key), metrics, log);
    this.elector = options.leaderElection
      ? new LeaderElector(client, {
          namespace: options.namespace,
          name: "mxwarden-operator",
          identity: options.identity,
          ...(options.leaseDurationMs ? { leaseDurationMs: options.leaseDurationMs } : {}),
          ...(options.renewDeadlineMs ? { renewDeadlineMs: options.renewDeadlineMs } : {}),
          ...(options.retryPeriodMs ? { retryPeriodMs: options.retryPeriodMs } : {}),
        })
      : undefined;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Ready once this replica is leading with synced caches, or standing by. */
  ready(): { ok: boolean; reason?: string } {
    if (this.stopped) return { ok: false, reason: "stopping" };
    if (this.leading && !(this.sites.hasSynced() && this.domains.hasSynced())) return { ok: false, reason: "caches not synced" };
    return { ok: true };
  }

  /** Starts; resolves once leading with synced caches (or at once while standing by, see isLeader). */
  start(onLostLeadership: () => void): void {
    if (!this.elector) {
      void this.startLeading();
      return;
    }
    this.electionDone = this.elector.run(
      () => void this.startLeading(),
      () => {
        if (this.stopped) return;
        this.options.log.error("lost the leader lease; exiting so a fresh replica takes over");
        onLostLeadership();
      },
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.leading = false;
    this.options.metrics.leader.set(0);
    await Promise.all([this.siteController.stop(), this.domainController.stop(), this.requestController.stop()]);
    await Promise.all([this.sites.stop(), this.domains.stop(), this.requests.stop(), this.secrets.stop()]);
    this.connections.stop();
    await this.elector?.stop();
    await this.electionDone;
  }

  private async startLeading(): Promise<void> {
    this.leading = true;
    this.options.metrics.leader.set(1);
    this.options.log.info("leading; starting controllers", { identity: this.options.identity });
    this.sites.start();
    this.domains.start();
    this.secrets.start();
    this.requests.start();
    // Queue requests never hold up the relays' configuration: their CRD may be installed later.
    void Promise.all([this.sites.waitForSync(), this.domains.waitForSync(), this.requests.waitForSync()]).then(() => {
      if (!this.stopped) this.requestController.start();
    });
    await Promise.all([this.sites.waitForSync(), this.domains.waitForSync(), this.secrets.waitForSync()]);
    this.siteController.start();
    this.domainController.start();
  }

  private onSiteEvent(key: string): void {
    this.siteController.enqueue(key);
    if (!this.specChanged(`site/${key}`, this.sites.get(key))) return;
    // Peer JetStream domains of the other sites depend on every site.
    for (const site of this.sites.list()) this.siteController.enqueue(objectKeyOf(site));
    for (const domain of this.domains.list()) this.domainController.enqueue(objectKeyOf(domain));
  }

  private onDomainEvent(key: string): void {
    const claimed = this.claims.update(key, this.domains.get(key));
    this.domainController.enqueue(key);
    if (!this.specChanged(`domain/${key}`, this.domains.get(key))) return;
    for (const site of this.sites.list()) this.siteController.enqueue(objectKeyOf(site));
    // The other claims on the mail domain it had or has may win or lose by the change.
    for (const other of claimed.flatMap((mailDomain) => this.claims.of(mailDomain))) if (other !== key) this.domainController.enqueue(other);
  }

  /**
   * Whether the object's spec or lifecycle changed since last seen. Status writes (ours) change
   * neither, so they do not fan out into reconciles of everything else.
   */
  private specChanged(key: string, object: Unstructured | undefined): boolean {
    const meta = object?.metadata as { generation?: number; deletionTimestamp?: string; uid?: string } | undefined;
    const fingerprint = meta ? `${meta.uid ?? ""}|${meta.generation ?? 0}|${meta.deletionTimestamp ?? ""}` : "gone";
    if (this.seenGenerations.get(key) === fingerprint) return false;
    if (meta) this.seenGenerations.set(key, fingerprint);
    else this.seenGenerations.delete(key);
    return true;
  }

  private onSecretEvent(key: string): void {
    const secretName = key.split("/")[1];
    for (const site of this.sites.list()) {
      if (site.spec.cluster?.kubeconfigSecretRef?.name === secretName) this.siteController.enqueue(objectKeyOf(site));
    }
  }
}
