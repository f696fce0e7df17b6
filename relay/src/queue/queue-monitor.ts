// Publishes queue depth and the age of the oldest queued message as metrics. The figures are
// the whole site's queue, the same on every relay (aggregate with max() in PromQL, not sum()).

import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { JobQueue } from "./job-queue.ts";
import { SPOOL_STREAM } from "./layout.ts";
import type { QueueConnection } from "./queue-connection.ts";

export function startQueueMonitor(queue: QueueConnection, metrics: RelayMetrics, log: Logger, intervalMs: number): () => void {
  let busy = false;
  const sample = async (): Promise<void> => {
    metrics.queueUp.set(queue.isReady() ? 1 : 0);
    if (!queue.isReady() || busy) return;
    busy = true;
    try {
      const { js, jsm } = queue.get();
      const depth = await new JobQueue(js, jsm, queue.publishTimeoutMs).depth();
      metrics.queueMessages.set({ state: "ready" }, depth.ready);
      metrics.queueMessages.set({ state: "deferred" }, depth.deferred);
      // Bodies are purged when their job finishes, so the spool's first message is the oldest
      // message still queued, whatever number of retries it went through.
      const spool = await jsm.streams.info(SPOOL_STREAM);
      const first = Date.parse(spool.state.first_ts);
      metrics.queueOldestAge.set(spool.state.messages > 0 && first > 0 ? Math.max(0, (Date.now() - first) / 1000) : 0);
    } catch (err) {
      log.debug("queue sample failed", { error: err });
    } finally {
      busy = false;
    }
  };
  void sample();
  const timer = setInterval(() => void sample(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
