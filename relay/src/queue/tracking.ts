// Message tracking: one record per queue id in a KV bucket (layout.ts TRACKING_BUCKET), written when
// the message is accepted and updated when it leaves the queue (delivered, bounced, expired, or
// deleted by an administrator), so that `mxwarden-queue find` answers "did message X arrive, and
// where did it go" after the job itself is gone. Each write carries its own TTL (the writer's
// --tracking-retention), counted from the record's last update.
//
// Records are never on the path of a 250 or an acknowledgement: callers fire and forget, and a
// failed write is logged (it loses tracking, never mail). Several relays may write one record (the
// one that accepted the message, the one that delivered it, an administrator): every update is a
// read, a merge and a write guarded by the record's revision, repeated on a conflict.

import { JetStreamApiError, type JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { TRACKING_BUCKET } from "./layout.ts";

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
    // The acceptance write may arrive after the outcome: it must not turn a finished message back to queued.
    if (key === "outcome" && value === "queued" && base.outcome !== "queued") continue;
    (next as unknown as Record<string, unknown>)[key] = value;
  }
  next.updatedAt = now.toISOString();
  if (event) next.history = [...(base.history ?? []), event].slice(-MAX_EVENTS);
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
  private readonly ttl: string;

  private constructor(js: JetStreamClient, kv: KV, retentionMs: number) {
    this.js = js;
    this.kv = kv;
    this.ttl = `${Math.max(1, Math.round(retentionMs / 1000))}s`;
  }

  /** Create the bucket if missing (a relay), with per-record TTLs. */
  static async open(js: JetStreamClient, options: { replicas: number; retentionMs: number }): Promise<TrackingStore> {
    // markerTTL turns on per-message TTLs for the bucket's stream (and leaves a marker when one expires).
    const kv = await new Kvm(js).create(TRACKING_BUCKET, { history: 1, replicas: options.replicas, markerTTL: 60_000 });
    return new TrackingStore(js, kv, options.retentionMs);
  }

  /** Bind to an existing bucket (the admin tool); undefined when no relay has created it yet. */
  static async bind(js: JetStreamClient, retentionMs: number): Promise<TrackingStore | undefined> {
    try {
      return new TrackingStore(js, await new Kvm(js).open(TRACKING_BUCKET), retentionMs);
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
  async record(update: TrackingUpdate, event?: Omit<TrackingEvent, "at">): Promise<StoredTrackingRecord> {
    for (let attempt = 0; ; attempt++) {
      const entry = await this.kv.get(update.queueId);
      const current = entry && entry.operation === "PUT" ? decodeTrackingRecord(entry.value) : undefined;
      const now = new Date();
      const next = merge(current, update, event ? { at: now.toISOString(), ...event } : undefined, now);
      try {
        await this.js.publish(`$KV.${TRACKING_BUCKET}.${update.queueId}`, encoder.encode(JSON.stringify(next)), {
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
