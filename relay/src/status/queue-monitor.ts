// Publishes queue depth and the age of the oldest queued message as metrics. The figures are
// the whole site's queue, the same on every relay (aggregate with max() in PromQL, not sum()).

import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueueConnection, QueueIndex } from "../queue/index.ts";
import { startPeriodic } from "./periodic.ts";

export function startQueueMonitor(queue: QueueConnection, index: QueueIndex, metrics: RelayMetrics, log: Logger, intervalMs: number): () => void {
  const sample = async (): Promise<void> => {
    if (!queue.isReady()) return;
    const depth = await queue.jobs().depth();
    metrics.queueMessages.set({ state: "ready" }, depth.ready);
    metrics.queueMessages.set({ state: "deferred" }, depth.deferred);
    // From the acceptance times in the subject index: neither the stream's first record (a retry
    // re-publishes its job) nor the spool (it holds only large bodies) would do.
    const { site, takenAt } = await index.snapshot();
    metrics.queueOldestAge.set(Math.max(0, (takenAt - site.oldestAcceptedAt) / 1000));
  };
  const reportUp = (): void => {
    metrics.queueUp.set(queue.isReady() ? 1 : 0);
  };
  return startPeriodic(intervalMs, sample, (err) => log.debug("queue sample failed", { error: err }), reportUp).stop;
}
