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
import {
  DELIVER_CONSUMER,
  QUEUE_STREAM,
  QUEUE_SUBJECTS,
  READY_FILTER,
  SPOOL_STREAM,
  SPOOL_SUBJECTS,
  deferFilterForDomain,
  flushConsumerName,
} from "./layout.ts";
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

export async function ensureQueueLayout(jsm: JetStreamManager, options: QueueLayoutOptions): Promise<void> {
  const spool: StreamSettings = {
    name: SPOOL_STREAM,
    subjects: [SPOOL_SUBJECTS],
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
    subjects: [QUEUE_SUBJECTS],
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
  await upsertStream(jsm, spool);
  await upsertStream(jsm, queue);
  await upsertConsumer(jsm, {
    durable_name: DELIVER_CONSUMER,
    filter_subject: READY_FILTER,
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
export async function ensureFlushConsumer(jsm: JetStreamManager, domain: string, options: QueueLayoutOptions): Promise<string> {
  const name = flushConsumerName(domain);
  const existing = await jsm.consumers.info(QUEUE_STREAM, name).catch(() => undefined);
  if (existing) return name;
  await jsm.consumers.add(QUEUE_STREAM, {
    durable_name: name,
    filter_subject: deferFilterForDomain(domain),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: options.maxAckPending,
    inactive_threshold: nanos(FLUSH_CONSUMER_IDLE_MS),
  });
  return name;
}

type ConsumerSettings = Partial<ConsumerConfig> & { durable_name: string };

/** Create the consumer, or update the settings a relay may change (a restart with new flags). */
async function upsertConsumer(jsm: JetStreamManager, config: ConsumerSettings): Promise<void> {
  const existing = await jsm.consumers.info(QUEUE_STREAM, config.durable_name).catch(() => undefined);
  if (!existing) {
    await jsm.consumers.add(QUEUE_STREAM, config);
    return;
  }
  const { ack_wait, max_ack_pending, max_deliver } = config;
  const current = existing.config;
  if (current.ack_wait !== ack_wait || current.max_ack_pending !== max_ack_pending || current.max_deliver !== max_deliver) {
    await jsm.consumers.update(QUEUE_STREAM, config.durable_name, { ack_wait, max_ack_pending, max_deliver });
  }
}

async function upsertStream(jsm: JetStreamManager, config: StreamSettings): Promise<void> {
  const name = config.name;
  const existing = await jsm.streams.info(name).catch(() => undefined);
  if (!existing) {
    await jsm.streams.add(config);
    return;
  }
  const current = existing.config;
  const drifted = (Object.keys(config) as Array<keyof StreamSettings>).some((key) => JSON.stringify(current[key]) !== JSON.stringify(config[key]));
  if (drifted) await jsm.streams.update(name, { ...current, ...config });
}
