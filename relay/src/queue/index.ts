// The queue's public surface: what the rest of the relay may use of relay/src/queue. Jobs and
// spool bodies are reached through the connection (jobs(), spoolWriter(), spoolReader()), which
// knows the publish timeout and the server's max_payload, so no caller sizes chunks or passes
// timeouts. Tests of the queue's own parts import those files directly.

export type { DeliveryJob, JobKind, JobRecord } from "./delivery-job.ts";
export { decodeJobRecord, InvalidJobError } from "./delivery-job.ts";
export { EmbeddedNats, findNatsServer, freeLoopbackPort } from "./embedded-nats.ts";
export type { HeldJob, QueueDepth } from "./job-queue.ts";
export { scheduledAt } from "./job-queue.ts";
export { QUEUE_STREAM, QueueLayout, RATE_LIMIT_STREAM, RESERVED_SITE_NAMES, domainToken } from "./layout.ts";
export type { QueueConnectionOptions, QueueHandles } from "./queue-connection.ts";
export { QueueConnection, QueueUnavailableError } from "./queue-connection.ts";
export { newQueueId, queueIdOfSubject } from "./queue-id.ts";
export type { QueuedSummary, QueueIndexSnapshot } from "./queue-index.ts";
export { nothingQueued, QueueIndex } from "./queue-index.ts";
export type { QueueLayoutOptions } from "./queue-setup.ts";
export { ensureFlushConsumer } from "./queue-setup.ts";
export type { StoredBody } from "./spool.ts";
export { SpoolReader, SpoolWriter, chunkSizeFor, inlineBodyMaxFor } from "./spool.ts";
export { JobQueue } from "./job-queue.ts";
export { isQueueId } from "./queue-id.ts";
export type { StoredTrackingRecord, TrackingEvent, TrackingOutcome, TrackingRecord, TrackingUpdate } from "./tracking.ts";
export { MessageTracking, TrackingLog } from "./tracking.ts";
export { TRACKING_STREAM, stateOfQueueSubject } from "./layout.ts";
export type { RetiredBecause, ShadowCounters } from "./shadow-copies.ts";
export { peerStreamName, RETIRED_HEADER, SHADOW_STREAM, ShadowCopies } from "./shadow-copies.ts";
