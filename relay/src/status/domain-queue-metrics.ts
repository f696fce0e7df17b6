// Per-domain queue gauges, opt-in and capped: with 10,000 domains a label per domain would swamp
// Prometheus, so only the `limit` domains whose mail has waited longest get series (the ones an
// operator wants to see), and a gauge says how many were left out. The figures come from the same
// subject index as the operator's queue report (queue-reporter.ts).

import type { DomainStore } from "../config/domain-store.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueueConnection, QueueIndex } from "../queue/index.ts";
import { collectQueueReport } from "./queue-reporter.ts";
import type { DomainQueueFigures } from "#api";
import { startPeriodic } from "./periodic.ts";

/** The domains that get series: oldest mail first, then the longest queue, then by name (stable). */
export function domainsToExport(domains: Record<string, DomainQueueFigures>, limit: number): [string, DomainQueueFigures][] {
  return Object.entries(domains)
    .sort(([nameA, a], [nameB, b]) => b.oldestQueuedSeconds - a.oldestQueuedSeconds || b.queued - a.queued || nameA.localeCompare(nameB))
    .slice(0, limit);
}

export function startDomainQueueMetrics(
  queue: QueueConnection,
  index: QueueIndex,
  store: DomainStore,
  metrics: RelayMetrics,
  limit: number,
  intervalMs: number,
  log: Logger,
): () => void {
  const sample = async (): Promise<void> => {
    if (!queue.isReady()) return;
    const report = await collectQueueReport(index, store, "metrics");
    const exported = domainsToExport(report.domains, limit);
    // Reset first: a domain that fell out of the top N (or was deleted) must not linger.
    metrics.domainQueueMessages.reset();
    metrics.domainQueueOldestAge.reset();
    for (const [domain, figures] of exported) {
      metrics.domainQueueMessages.set({ domain }, figures.queued);
      metrics.domainQueueOldestAge.set({ domain }, figures.oldestQueuedSeconds);
    }
    metrics.domainMetricsOmitted.set(Object.keys(report.domains).length - exported.length);
  };
  return startPeriodic(intervalMs, sample, (err) => log.debug("per-domain queue sample failed", { error: err })).stop;
}
