// Message tracking: what became of each message after it left the queue (delivered with the
// primary's reply, bounced, expired, taken over, deleted by an administrator), so that
// `mxwarden-queue find` answers "did message X arrive, and where did it go" after the job is gone.
// While a message is queued its job is its record: the job carries what the acceptance knew
// (Message-ID, client address), and find reads the queued jobs together with this log.
//
// The log is a stream (TRACKING_STREAM, subjects QueueLayout.trackingSubjects) of batches: each
// record is a tracking entry (the message's fields and one event), a relay collects its entries for
// up to FLUSH_INTERVAL_MS and writes them as one message, with its own TTL (--tracking-retention).
// Readers fold the entries of a queue id in stream order. Per-message writes to a KV bucket cost
// the relay a fifth to a third of its end-to-end rate on the bench (one more fsynced write per
// message; docs/architecture.md, "Queue operations"); a batch every quarter second costs nothing
// measurable. Nothing is written at acceptance, and nothing waits for a batch: a failed write is
// logged with its queue ids (it loses tracking, never mail); a relay killed with SIGKILL loses the
// entries of its last quarter second (a SIGTERM writes them first).

import { DiscardPolicy, JetStreamError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { Logger } from "../log.ts";
import { TRACKING_STREAM, type QueueLayout } from "./layout.ts";
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

/** A record with what happened to the message, oldest first. */
export interface StoredTrackingRecord extends TrackingRecord {
  history?: TrackingEvent[];
}

/** What one writer knows of a message at one moment: the fields to fold into its record. */
export type TrackingUpdate = Partial<Omit<TrackingRecord, "queueId" | "updatedAt">> & Pick<TrackingRecord, "queueId">;

/** One line of a batch: an update and the event it records. */
interface TrackingEntry {
  update: TrackingUpdate;
  event: TrackingEvent;
}

/** At most this many events per record: a message retried for five days stays one small record. */
const MAX_EVENTS = 50;
/** A relay writes its entries at most this often, and at once when MAX_BATCH are waiting. */
export const FLUSH_INTERVAL_MS = 250;
const MAX_BATCH = 500;
/** The envelope is the first writer's: a retried job names only the recipients still to do. */
const ENVELOPE_FIELDS = new Set(["sender", "recipients", "domain", "arrivedAt", "messageId", "client", "site"]);

/** Fold one entry into the record of its queue id. */
export function foldEntry(current: StoredTrackingRecord | undefined, update: TrackingUpdate, event: TrackingEvent): StoredTrackingRecord {
  const next: StoredTrackingRecord = current
    ? { ...current }
    : {
        queueId: update.queueId,
        sender: update.sender ?? "",
        recipients: update.recipients ?? [],
        domain: update.domain ?? "",
        arrivedAt: update.arrivedAt ?? event.at,
        outcome: "queued",
        updatedAt: event.at,
      };
  for (const [key, value] of Object.entries(update)) {
    if (value === undefined) continue;
    if (ENVELOPE_FIELDS.has(key) && current && (current as unknown as Record<string, unknown>)[key] !== undefined) continue;
    (next as unknown as Record<string, unknown>)[key] = value;
  }
  if (event.at > next.updatedAt) next.updatedAt = event.at;
  next.history = [...(current?.history ?? []), event].sort((a, b) => a.at.localeCompare(b.at)).slice(-MAX_EVENTS);
  return next;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encodeBatch(entries: readonly TrackingEntry[]): Uint8Array {
  return encoder.encode(entries.map((e) => JSON.stringify(e)).join("\n"));
}

function decodeBatch(data: Uint8Array): TrackingEntry[] {
  const entries: TrackingEntry[] = [];
  for (const line of decoder.decode(data).split("\n")) {
    try {
      const entry = JSON.parse(line) as TrackingEntry;
      if (typeof entry.update?.queueId === "string" && typeof entry.event?.at === "string") entries.push(entry);
    } catch {
      // A damaged line is skipped: tracking is a record of mail, never mail.
    }
  }
  return entries;
}

/** All messages of a direct batch; the server ends a short batch with a 404 status. */
async function collect(batch: QueuedIterator<StoredMsg>): Promise<StoredMsg[]> {
  const out: StoredMsg[] = [];
  try {
    for await (const m of batch) out.push(m);
  } catch (err) {
    const code = err instanceof JetStreamError ? (err as JetStreamError & { code?: number }).code : undefined;
    if (code !== 404) throw err;
  }
  return out;
}

/** The site's tracking log, through a live JetStream connection. */
export class TrackingLog {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly layout: QueueLayout;

  constructor(js: JetStreamClient, jsm: JetStreamManager, layout: QueueLayout) {
    this.js = js;
    this.jsm = jsm;
    this.layout = layout;
  }

  /** Create the stream if missing. Its records expire by their own TTLs (each writer's retention). */
  async ensure(replicas: number): Promise<void> {
    const existing = await this.jsm.streams.info(TRACKING_STREAM).catch(() => undefined);
    if (existing) return;
    await this.jsm.streams
      .add({
        name: TRACKING_STREAM,
        subjects: [this.layout.trackingSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: replicas,
        discard: DiscardPolicy.Old,
        allow_msg_ttl: true,
        allow_direct: true,
      })
      .catch(async (err: unknown) => {
        // Another relay created it meanwhile.
        if (!(await this.jsm.streams.info(TRACKING_STREAM).catch(() => undefined))) throw err;
      });
  }

  /** Whether the site has a tracking log yet. */
  async exists(): Promise<boolean> {
    return (await this.jsm.streams.info(TRACKING_STREAM).catch(() => undefined)) !== undefined;
  }

  /** Append entries as one message, kept for `retentionMs`. */
  async append(entries: readonly TrackingEntry[], origin: "relay" | "admin", retentionMs: number): Promise<void> {
    if (entries.length === 0) return;
    await this.js.publish(this.layout.trackingSubject(origin), encodeBatch(entries), { ttl: `${Math.max(1, Math.round(retentionMs / 1000))}s` });
  }

  /** The records of every message (or of those `wanted`) with entries written since `since`, folded. */
  async records(since?: Date, wanted?: (queueId: string) => boolean): Promise<Map<string, StoredTrackingRecord>> {
    const records = new Map<string, StoredTrackingRecord>();
    let next: { seq: number } | { start_time: Date } = since ? { start_time: since } : { seq: 1 };
    for (;;) {
      const batch = await collect(
        await this.jsm.direct.getBatch(TRACKING_STREAM, { ...next, batch: 200, max_bytes: 8 * 1024 * 1024, next_by_subj: this.layout.trackingSubjects }),
      );
      if (batch.length === 0) break;
      for (const m of batch) {
        next = { seq: m.seq + 1 };
        for (const { update, event } of decodeBatch(m.data)) {
          if (wanted && !wanted(update.queueId)) continue;
          records.set(update.queueId, foldEntry(records.get(update.queueId), update, event));
        }
      }
    }
    return records;
  }
}

/**
 * The relay's writer: collects entries and appends them to the log every FLUSH_INTERVAL_MS (or at
 * MAX_BATCH entries). Never throws to its callers and never delays mail.
 */
export class MessageTracking {
  private pending: TrackingEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ensured: Promise<void> | undefined;
  private readonly queue: QueueConnection;
  private readonly options: { replicas: number; retentionMs: number; site?: string | undefined };
  private readonly log: Logger;

  constructor(queue: QueueConnection, options: { replicas: number; retentionMs: number; site?: string | undefined }, log: Logger) {
    this.queue = queue;
    this.options = options;
    this.log = log.child({ component: "tracking" });
  }

  /** Record `event` for a message, with what this relay knows of it. */
  record(update: TrackingUpdate, event: Omit<TrackingEvent, "at"> & { at?: string }): void {
    const site = this.options.site;
    this.pending.push({ update: site !== undefined ? { site, ...update } : update, event: { ...event, at: event.at ?? new Date().toISOString() } });
    if (this.pending.length >= MAX_BATCH) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
  }

  /** Write what is waiting (also at shutdown). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const entries = this.pending;
    this.pending = [];
    if (entries.length === 0) return;
    try {
      const { js, jsm } = this.queue.get();
      const log = new TrackingLog(js, jsm, this.queue.layout);
      this.ensured ??= log.ensure(this.options.replicas).catch((err: unknown) => {
        this.ensured = undefined;
        throw err;
      });
      await this.ensured;
      await log.append(entries, "relay", this.options.retentionMs);
    } catch (err) {
      this.log.warn("tracking records not written; the messages themselves are unaffected", {
        queueIds: entries.map((e) => e.update.queueId),
        events: entries.map((e) => e.event.event),
        error: err,
      });
    }
  }
}
