// Creates or updates the streams and the shared delivery consumer. Idempotent: every relay runs
// it on start and after each reconnect.

import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { QUEUE_STREAM, SPOOL_STREAM, type QueueLayout } from "./layout.ts";
import { MAX_QUEUE_LIFETIME_MS } from "#api";

export interface QueueLayoutOptions {
  /** JetStream replicas for both streams: 1 for a single server, 3 for a site's cluster. */
  replicas: number;
  /** Jobs a relay process may hold unacknowledged, summed over all relays. */
  maxAckPending: number;
  /** How long a delivery may run before JetStream hands its job to another relay. */
  ackWaitMs: number;
}

const DAY_MS = 86_400_000;

type StreamSettings = Partial<StreamConfig> & { name: string };

export async function ensureQueueLayout(jsm: JetStreamManager, layout: QueueLayout, options: QueueLayoutOptions): Promise<void> {
  const [spoolInfo, queueInfo] = await Promise.all([
    jsm.streams.info(SPOOL_STREAM).catch(() => undefined),
    jsm.streams.info(QUEUE_STREAM).catch(() => undefined),
  ]);
  // A site that gets its name (--site) after running without one keeps the unscoped subjects, so
  // the mail queued before is still stored and delivered (see layout.ts).
  const legacy = layout.legacy;
  const keepLegacy = legacy !== undefined && (queueInfo?.config.subjects ?? []).includes(legacy.queueSubjects);
  layout.keepsUnscoped = keepLegacy;
  const withLegacy = (scoped: string, unscoped: string | undefined): string[] => (keepLegacy && unscoped ? [scoped, unscoped] : [scoped]);
  const spool: StreamSettings = {
    name: SPOOL_STREAM,
    subjects: withLegacy(layout.spoolSubjects, legacy?.spoolSubjects),
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: options.replicas,
    // Longest queue lifetime plus a day for the final bounce: a body is never aged out while
    // its job may still need it. Bodies are purged explicitly when their job finishes.
    max_age: nanos(MAX_QUEUE_LIFETIME_MS + DAY_MS),
    duplicate_window: nanos(120_000),
    discard: DiscardPolicy.New,
  };
  const queue: StreamSettings = {
    name: QUEUE_STREAM,
    subjects: withLegacy(layout.queueSubjects, legacy?.queueSubjects),
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: options.replicas,
    // One job per subject: re-publishing a job replaces the older copy instead of duplicating it.
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(120_000),
    allow_msg_schedules: true,
    // Direct gets let any relay list a domain's held jobs when its primary comes back.
    allow_direct: true,
  };
  await upsertStream(jsm, spool, spoolInfo?.config);
  await upsertStream(jsm, queue, queueInfo?.config);
  await retireUnscopedConsumer(jsm, layout);
  await upsertConsumer(jsm, {
    durable_name: layout.deliverConsumer,
    filter_subjects: withLegacy(layout.readyFilter, legacy?.readyFilter),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(options.ackWaitMs),
    // Retries are scheduled as new jobs, never as redeliveries, so redelivery only happens when a
    // relay died mid-delivery: it must never give up on such a job.
    max_deliver: -1,
    max_ack_pending: options.maxAckPending,
  });
}

/** A flush consumer nobody has pulled from for this long is removed by the server. */
const FLUSH_CONSUMER_IDLE_MS = 3_600_000;

/**
 * The consumer through which relays deliver a domain's held jobs in place. Every relay that sees
 * the domain come back binds to the same one, so they share the work. Redelivery works as on
 * mxw-deliver: a relay that dies mid-delivery leaves its job to the others, or, when the flush
 * is over, to the job's own retry schedule. The server removes it after an idle hour; it is
 * never deleted by a relay, because another relay may still be acknowledging through it.
 */
export async function ensureFlushConsumer(
  jsm: JetStreamManager,
  layout: QueueLayout,
  domain: string,
  options: QueueLayoutOptions,
  /** Create it paused until then (the admin tool, admin/queue-admin.ts); an existing one is left as it is. */
  pausedUntil?: Date,
): Promise<string> {
  const name = layout.flushConsumerName(domain);
  const existing = await jsm.consumers.info(QUEUE_STREAM, name).catch(() => undefined);
  if (existing) return name;
  await jsm.consumers.add(QUEUE_STREAM, {
    durable_name: name,
    filter_subjects: layout.storedUnder.map((stored) => stored.deferFilterForDomain(domain)),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: options.maxAckPending,
    inactive_threshold: nanos(FLUSH_CONSUMER_IDLE_MS),
    ...(pausedUntil ? { pause_until: pausedUntil.toISOString() } : {}),
  });
  return name;
}

/**
 * A site that gets its name removes the delivery consumer it had without one: its filter overlaps
 * the site-named one's, which a work-queue stream refuses. Jobs it held unacknowledged go to the
 * new consumer. All relays of a site change over together (docs/architecture.md): a relay still
 * running without --site would create the old consumer again.
 */
async function retireUnscopedConsumer(jsm: JetStreamManager, layout: QueueLayout): Promise<void> {
  const legacy = layout.legacy;
  if (!legacy) return;
  const existing = await jsm.consumers.info(QUEUE_STREAM, legacy.deliverConsumer).catch(() => undefined);
  if (existing) await jsm.consumers.delete(QUEUE_STREAM, legacy.deliverConsumer);
}

type ConsumerSettings = Partial<ConsumerConfig> & { durable_name: string };

/** Create the consumer, or update the settings a relay may change (a restart with new flags). */
async function upsertConsumer(jsm: JetStreamManager, config: ConsumerSettings): Promise<void> {
  const existing = await jsm.consumers.info(QUEUE_STREAM, config.durable_name).catch(() => undefined);
  if (!existing) {
    await jsm.consumers.add(QUEUE_STREAM, config);
    return;
  }
  const { ack_wait, max_ack_pending, max_deliver, filter_subjects } = config;
  const current = existing.config;
  const currentFilters = current.filter_subjects ?? (current.filter_subject ? [current.filter_subject] : []);
  const filtersChanged = JSON.stringify(currentFilters) !== JSON.stringify(filter_subjects);
  if (current.ack_wait !== ack_wait || current.max_ack_pending !== max_ack_pending || current.max_deliver !== max_deliver || filtersChanged) {
    // A single filter_subject and filter_subjects are exclusive: the update names the list only.
    await jsm.consumers.update(QUEUE_STREAM, config.durable_name, { ack_wait, max_ack_pending, max_deliver, filter_subjects, filter_subject: "" });
  }
}

/** Create the stream, or update the settings of `config` that drifted; its current settings are read first. */
export async function ensureStream(jsm: JetStreamManager, config: StreamSettings): Promise<void> {
  await upsertStream(jsm, config, (await jsm.streams.info(config.name).catch(() => undefined))?.config);
}

async function upsertStream(jsm: JetStreamManager, config: StreamSettings, current: StreamConfig | undefined): Promise<void> {
  const name = config.name;
  if (!current) {
    await jsm.streams.add(config);
    return;
  }
  const drifted = (Object.keys(config) as Array<keyof StreamSettings>).some((key) => JSON.stringify(current[key]) !== JSON.stringify(config[key]));
  if (drifted) await jsm.streams.update(name, { ...current, ...config });
}
