// Publishes queue depth and the age of the oldest queued message as metrics. The figures are
// the whole site's queue, the same on every relay (aggregate with max() in PromQL, not sum()).

import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { JetStreamManager } from "@nats-io/jetstream";
import { JobQueue } from "./job-queue.ts";
import { QUEUE_STREAM, QUEUE_SUBJECTS } from "./layout.ts";
import { summariseQueuedSubjects } from "./queue-id.ts";
import { startPeriodic } from "../status/periodic.ts";
import type { QueueConnection } from "./queue-connection.ts";

export function startQueueMonitor(queue: QueueConnection, metrics: RelayMetrics, log: Logger, intervalMs: number): () => void {
  const sample = async (): Promise<void> => {
    if (!queue.isReady()) return;
    const { js, jsm } = queue.get();
    const depth = await new JobQueue(js, jsm, queue.publishTimeoutMs).depth();
    metrics.queueMessages.set({ state: "ready" }, depth.ready);
    metrics.queueMessages.set({ state: "deferred" }, depth.deferred);
    metrics.queueOldestAge.set(await oldestQueuedSeconds(jsm));
  };
  const reportUp = (): void => { metrics.queueUp.set(queue.isReady() ? 1 : 0); };
  return startPeriodic(intervalMs, sample, (err) => log.debug("queue sample failed", { error: err }), reportUp).stop;
}

/**
 * Age of the oldest message still queued, from the acceptance times in the queue stream's subject
 * index. (Neither the stream's first record, since a retry re-publishes its job, nor the spool,
 * which holds only large bodies, would do.)
 */
export async function oldestQueuedSeconds(jsm: JetStreamManager, now = Date.now()): Promise<number> {
  const info = await jsm.streams.info(QUEUE_STREAM, { subjects_filter: QUEUE_SUBJECTS });
  return Math.max(0, (now - summariseQueuedSubjects(info.state.subjects ?? {}, now).oldestAcceptedAt) / 1000);
}
