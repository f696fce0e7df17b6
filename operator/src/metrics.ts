// The operator's metrics registry. Names follow controller-runtime's (reconcile totals, errors,
// durations, work queue depth) under the mxwarden_operator_ prefix; labels are bounded by the
// number of controllers, sites and RelayDomains (never by addresses or messages).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type ReconcileResult = "success" | "error" | "requeue" | "requeue_after";

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: "mxwarden_operator_reconcile_total",
    help: "Reconciles by controller and result",
    labelNames: ["controller", "result"] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: "mxwarden_operator_reconcile_errors_total",
    help: "Reconciles that failed, by controller",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: "mxwarden_operator_reconcile_time_seconds",
    help: "Time a reconcile took, by controller",
    labelNames: ["controller"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly workqueueDepth = new Gauge({
    name: "mxwarden_operator_workqueue_depth",
    help: "Keys waiting in the work queue, by controller",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly siteReachable = new Gauge({
    name: "mxwarden_operator_site_reachable",
    help: "1 when the site's cluster API answers",
    labelNames: ["site"] as const,
    registers: [this.registry],
  });
  readonly siteConfigGenerationLag = new Gauge({
    name: "mxwarden_operator_site_config_generation_lag",
    help: "RelayDomains whose latest generation the site's relays have not loaded yet",
    labelNames: ["site"] as const,
    registers: [this.registry],
  });
  readonly siteReadyRelays = new Gauge({
    name: "mxwarden_operator_site_ready_relays",
    help: "Relay pods ready at the site",
    labelNames: ["site"] as const,
    registers: [this.registry],
  });
  // Per RelayDomain, labelled with its namespace so that Alertmanager routes to the team owning it.
  readonly domainPrimaryReachable = new Gauge({
    name: "mxwarden_operator_domain_primary_reachable",
    help: "1 when the RelayDomain's primary answers the relays, 0 when a site's relays cannot reach it (condition PrimaryReachable); absent while Unknown",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly domainQueuedMessages = new Gauge({
    name: "mxwarden_operator_domain_queued_messages",
    help: "Messages queued for the RelayDomain, summed over the sites serving it",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly domainOldestQueuedSeconds = new Gauge({
    name: "mxwarden_operator_domain_oldest_queued_seconds",
    help: "Age of the oldest message queued for the RelayDomain at any site serving it (0 when none is)",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({ name: "mxwarden_operator_leader", help: "1 while this replica holds the leader lease", registers: [this.registry] });

  /** Sets the RelayDomain's series; `primaryReachable` undefined (Unknown) removes that one. */
  setDomain(
    labels: { namespace: string; name: string },
    figures: { primaryReachable: boolean | undefined; queued: number; oldestQueuedSeconds: number },
  ): void {
    if (figures.primaryReachable === undefined) this.domainPrimaryReachable.remove(labels);
    else this.domainPrimaryReachable.set(labels, figures.primaryReachable ? 1 : 0);
    this.domainQueuedMessages.set(labels, figures.queued);
    this.domainOldestQueuedSeconds.set(labels, figures.oldestQueuedSeconds);
  }

  /** A RelayDomain that is gone takes its series with it. */
  removeDomain(labels: { namespace: string; name: string }): void {
    this.domainPrimaryReachable.remove(labels);
    this.domainQueuedMessages.remove(labels);
    this.domainOldestQueuedSeconds.remove(labels);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "mxwarden_operator_" });
    this.leader.set(0);
  }
}
