// Message tracking: one record per queue id in a KV bucket (QueueLayout.trackingBucket), written
// when the message leaves the queue (delivered, bounced, expired, deleted by an administrator), so
// that `mxwarden-queue find` answers "did message X arrive, and where did it go" after the job
// itself is gone. While the message is queued its job is the record: the job carries what the
// acceptance knew (Message-ID, client address), and find reads both.
//
// Nothing is written at acceptance: a durable write per accepted message cost a third of the
// relay's throughput (docs/architecture.md, "Queue operations"). The outcome is one write, off the
// acknowledgement's path: callers fire and forget, and a failed write is logged with the queue id
// (it loses tracking, never mail). Each write carries its own TTL (the writer's
// --tracking-retention), counted from the record's last update. A record that already exists (an
// administrator's action, a partial delivery) is updated by a read, a merge and a write guarded by
// its revision, repeated on a conflict.

import { JetStreamApiError, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "./queue-connection.ts";

export type TrackingOutcome = "queued" | "delivered" | "bounced" | "deleted" | "expired";

export interface TrackingEvent {
  at: string;
  event: string;
  detail?: string;
}

export interface TrackingRecord {
  queueId: string;
  messageId?: string;
  sender: string;
  recipients: string[];
  domain: string;
  client?: string;
  site?: string;
  arrivedAt: string;
  outcome: TrackingOutcome;
  remoteReply?: string;
  updatedAt: string;
}

/** The stored form: the record and what happened to the message, oldest first. */
export interface StoredTrackingRecord extends TrackingRecord {
  history?: TrackingEvent[];
}

/** At most this many events per record: a message retried for five days stays one small record. */
const MAX_EVENTS = 50;
const ENVELOPE_FIELDS = new Set(["sender", "recipients", "domain", "arrivedAt", "messageId", "client", "site"]);
const CONFLICT_RETRIES = 5;

/** What is known of a message at some point: the fields to merge into its record. */
export type TrackingUpdate = Partial<Omit<TrackingRecord, "queueId" | "updatedAt">> & Pick<TrackingRecord, "queueId">;

function merge(current: StoredTrackingRecord | undefined, update: TrackingUpdate, event: TrackingEvent | undefined, now: Date): StoredTrackingRecord {
  const base: StoredTrackingRecord = current ?? {
    queueId: update.queueId,
    sender: update.sender ?? "",
    recipients: update.recipients ?? [],
    domain: update.domain ?? "",
    arrivedAt: update.arrivedAt ?? now.toISOString(),
    outcome: "queued",
    updatedAt: now.toISOString(),
  };
  const next: StoredTrackingRecord = { ...base };
  for (const [key, value] of Object.entries(update)) {
    if (value === undefined) continue;
    // The envelope is the first writer's: a retried job names only the recipients still to do.
    if (ENVELOPE_FIELDS.has(key) && current && (current as unknown as Record<string, unknown>)[key] !== undefined) continue;
    (next as unknown as Record<string, unknown>)[key] = value;
  }
  next.updatedAt = now.toISOString();
  if (event) next.history = [...(base.history ?? []), event].sort((a, b) => a.at.localeCompare(b.at)).slice(-MAX_EVENTS);
  return next;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function decodeTrackingRecord(data: Uint8Array): StoredTrackingRecord | undefined {
  try {
    const parsed = JSON.parse(decoder.decode(data)) as StoredTrackingRecord;
    return typeof parsed.queueId === "string" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The tracking bucket of one site, through a live JetStream client. */
export class TrackingStore {
  private readonly js: JetStreamClient;
  private readonly kv: KV;
  private readonly bucket: string;
  private readonly ttl: string;

  private constructor(js: JetStreamClient, kv: KV, bucket: string, retentionMs: number) {
    this.js = js;
    this.kv = kv;
    this.bucket = bucket;
    this.ttl = `${Math.max(1, Math.round(retentionMs / 1000))}s`;
  }

  /** Create the bucket (QueueLayout.trackingBucket) if missing (a relay), with per-record TTLs. */
  static async open(js: JetStreamClient, bucket: string, options: { replicas: number; retentionMs: number }): Promise<TrackingStore> {
    // markerTTL turns on per-message TTLs for the bucket's stream (and leaves a marker when one expires).
    const kv = await new Kvm(js).create(bucket, { history: 1, replicas: options.replicas, markerTTL: 60_000 });
    return new TrackingStore(js, kv, bucket, options.retentionMs);
  }

  /** Bind to an existing bucket (the admin tool); undefined when no relay has created it yet. */
  static async bind(js: JetStreamClient, bucket: string, retentionMs: number): Promise<TrackingStore | undefined> {
    try {
      const kv = await new Kvm(js).open(bucket);
      // open() does not look for the bucket; status() reads its stream.
      await kv.status();
      return new TrackingStore(js, kv, bucket, retentionMs);
    } catch (err) {
      if (err instanceof Error && /not found/i.test(err.message)) return undefined;
      throw err;
    }
  }

  async get(queueId: string): Promise<StoredTrackingRecord | undefined> {
    const entry = await this.kv.get(queueId);
    if (entry?.operation !== "PUT") return undefined;
    return decodeTrackingRecord(entry.value);
  }

  /** Merge `update` (and `event`) into the record of its queue id, creating it if needed. */
  async record(update: TrackingUpdate, event?: Omit<TrackingEvent, "at"> & { at?: string }): Promise<StoredTrackingRecord> {
    for (let attempt = 0; ; attempt++) {
      const entry = await this.kv.get(update.queueId);
      const current = entry && entry.operation === "PUT" ? decodeTrackingRecord(entry.value) : undefined;
      const now = new Date();
      const next = merge(current, update, event ? { ...event, at: event.at ?? now.toISOString() } : undefined, now);
      try {
        await this.js.publish(`$KV.${this.bucket}.${update.queueId}`, encoder.encode(JSON.stringify(next)), {
          ttl: this.ttl,
          expect: { lastSubjectSequence: entry?.revision ?? 0 },
        });
        return next;
      } catch (err) {
        // Another writer got there first: read its record and merge again.
        if (!(err instanceof JetStreamApiError) || attempt >= CONFLICT_RETRIES) throw err;
      }
    }
  }

  /**
   * Write a record that most likely does not exist yet (a message leaving the queue): one write,
   * which only succeeds if there is no record; else the merge of record().
   */
  async finish(update: TrackingUpdate, event?: Omit<TrackingEvent, "at"> & { at?: string }): Promise<void> {
    const now = new Date();
    const record = merge(undefined, update, event ? { ...event, at: event.at ?? now.toISOString() } : undefined, now);
    try {
      await this.js.publish(`$KV.${this.bucket}.${update.queueId}`, encoder.encode(JSON.stringify(record)), {
        ttl: this.ttl,
        expect: { lastSubjectSequence: 0 },
      });
    } catch (err) {
      if (!(err instanceof JetStreamApiError)) throw err;
      await this.record(update, event);
    }
  }

  /** Every record (the newest revision of each key). */
  async *records(): AsyncIterable<StoredTrackingRecord> {
    const keys: string[] = [];
    for await (const key of await this.kv.keys()) keys.push(key);
    for (const key of keys) {
      const record = await this.get(key);
      if (record) yield record;
    }
  }
}

/**
 * The relay's writer of tracking records: opens the bucket once the queue is ready and writes in
 * the background. A failed write is logged with the queue id and never delays mail.
 */
export class MessageTracking {
  private store: Promise<TrackingStore> | undefined;
  private readonly queue: QueueConnection;
  private readonly options: { replicas: number; retentionMs: number; site?: string | undefined };
  private readonly log: Logger;

  constructor(queue: QueueConnection, options: { replicas: number; retentionMs: number; site?: string | undefined }, log: Logger) {
    this.queue = queue;
    this.options = options;
    this.log = log.child({ component: "tracking" });
  }

  /** Write (or merge into) the message's record in the background. */
  record(update: TrackingUpdate, event?: Omit<TrackingEvent, "at"> & { at?: string }): void {
    const site = this.options.site;
    void this.open()
      .then((store) => store.finish(site !== undefined ? { site, ...update } : update, event))
      .catch((err: unknown) => {
        this.store = undefined;
        this.log.warn("tracking record not written; the message itself is unaffected", { queueId: update.queueId, outcome: update.outcome, error: err });
      });
  }

  private open(): Promise<TrackingStore> {
    this.store ??= TrackingStore.open(this.queue.get().js, this.queue.layout.trackingBucket, this.options);
    return this.store;
  }
}
