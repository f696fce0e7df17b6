// Reading a site's queued jobs: the queue stream's records, as the admin tool sees them (admin/).
// Direct batch gets read them without a consumer (a work-queue stream allows no second consumer
// that would not acknowledge, and acknowledging deletes); a job found by its id is confirmed by the
// stream leader, since a direct get may be answered by a lagging replica.

import { JetStreamError, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import { QUEUE_STREAM, QueueLayout, decodeJobRecord, isQueueId, scheduledAt, stateOfQueueSubject, type DeliveryJob } from "../queue/index.ts";
import type { QueuedMessage, QueuedState, QueueSelector } from "./types.ts";

/** A queued job as stored: where it is, and its record. */
export interface StoredJob {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
  job: DeliveryJob;
  state: QueuedState;
}

function stateOf(subject: string): QueuedState | undefined {
  switch (stateOfQueueSubject(subject)) {
    case "ready":
      return "ready";
    case "defer":
      return "deferred";
    case "held":
      return "held";
    default:
      return undefined;
  }
}

export function addressMatches(pattern: string, address: string): boolean {
  const p = pattern.toLowerCase();
  const a = address.toLowerCase();
  // "@example.org" (or "example.org") selects a whole domain; anything else one address.
  if (p.startsWith("@")) return a.endsWith(p);
  if (!p.includes("@")) return a.endsWith(`@${p}`);
  return a === p;
}

function matches(stored: StoredJob, selector: QueueSelector, now: number): boolean {
  const { job } = stored;
  if (selector.queueIds && !selector.queueIds.includes(job.queueId)) return false;
  if (selector.domain && job.domain !== selector.domain.toLowerCase()) return false;
  if (selector.state && stored.state !== selector.state) return false;
  if (selector.sender !== undefined && !addressMatches(selector.sender, job.sender)) return false;
  if (selector.recipient !== undefined && !job.recipients.some((r) => addressMatches(selector.recipient as string, r))) return false;
  if (selector.olderThanMs !== undefined && job.acceptedAt > now - selector.olderThanMs) return false;
  return true;
}

export function toQueuedMessage(stored: StoredJob): QueuedMessage {
  const { job } = stored;
  const next = stored.state === "deferred" ? scheduledAt(stored.headers) : undefined;
  return {
    queueId: job.queueId,
    domain: job.domain,
    sender: job.sender,
    recipients: job.recipients,
    state: stored.state,
    arrivedAt: new Date(job.acceptedAt).toISOString(),
    size: job.size,
    attempts: job.attempts,
    ...(next !== undefined ? { nextAttemptAt: new Date(next).toISOString() } : {}),
    ...(job.lastError !== undefined ? { lastError: job.lastError } : {}),
  };
}

/** All messages of a direct batch; the server ends a short batch with a 404 status. */
export async function collect(batch: AsyncIterable<StoredMsg>): Promise<StoredMsg[]> {
  const out: StoredMsg[] = [];
  try {
    for await (const m of batch) out.push(m);
  } catch (err) {
    const code = err instanceof JetStreamError ? (err as JetStreamError & { code?: number }).code : undefined;
    if (code !== 404) throw err;
  }
  return out;
}

function toStoredJob(m: StoredMsg): StoredJob | undefined {
  const state = stateOf(m.subject);
  if (!state) return undefined;
  try {
    const { job } = decodeJobRecord(m.data);
    return { seq: m.seq, subject: m.subject, data: m.data, headers: m.header, job, state };
  } catch {
    return undefined;
  }
}

/**
 * The subjects the site's relays use: scoped by the site (its JetStream domain) when the queue
 * stream holds the scoped subjects, unscoped otherwise; and, for a site that got its name after
 * running without one, both (layout.ts, "legacy").
 */
export async function siteLayout(jsm: JetStreamManager): Promise<QueueLayout> {
  const info = await jsm.streams.info(QUEUE_STREAM);
  const subjects = info.config.subjects ?? [];
  const domain = (await jsm.getAccountInfo()).domain;
  const scoped = domain ? new QueueLayout(domain) : undefined;
  if (!scoped || !subjects.includes(scoped.queueSubjects)) return new QueueLayout();
  scoped.keepsUnscoped = scoped.legacy !== undefined && subjects.includes(scoped.legacy.queueSubjects);
  return scoped;
}

/** The queued jobs of one site, read through its layout. */
export class QueuedJobs {
  private readonly jsm: JetStreamManager;
  private readonly layout: QueueLayout;

  constructor(jsm: JetStreamManager, layout: QueueLayout) {
    this.jsm = jsm;
    this.layout = layout;
  }

  /** Every queued job that matches, oldest first. */
  async read(selector: QueueSelector): Promise<StoredJob[]> {
    const now = Date.now();
    const found: StoredJob[] = [];
    if (selector.queueIds) {
      for (const queueId of selector.queueIds) {
        const stored = await this.locate(queueId);
        if (stored && matches(stored, selector, now)) found.push(stored);
      }
      return found;
    }
    for (const layout of this.layout.storedUnder) await this.readUnder(layout.queueFilter(selector.domain?.toLowerCase()), selector, now, found);
    return found.sort((a, b) => a.job.acceptedAt - b.job.acceptedAt || a.job.queueId.localeCompare(b.job.queueId));
  }

  private async readUnder(filter: string, selector: QueueSelector, now: number, found: StoredJob[]): Promise<void> {
    let nextSeq = 1;
    for (;;) {
      // Direct batch gets read jobs without a consumer (a work-queue stream allows no second
      // consumer that would not acknowledge, and acknowledging deletes).
      const batch = await collect(await this.jsm.direct.getBatch(QUEUE_STREAM, { seq: nextSeq, batch: 500, max_bytes: 8 * 1024 * 1024, next_by_subj: filter }));
      if (batch.length === 0) break;
      for (const m of batch) {
        nextSeq = m.seq + 1;
        const stored = toStoredJob(m);
        if (stored && matches(stored, selector, now)) found.push(stored);
      }
    }
  }

  /** Where a queue id's job is now, read from the stream leader; undefined when it is not queued. */
  async locate(queueId: string): Promise<StoredJob | undefined> {
    if (!isQueueId(queueId)) return undefined;
    // The subject index finds the domain; the leader confirms the record (a direct get may lag).
    for (const layout of this.layout.storedUnder) {
      const hit = await this.jsm.direct.getMessage(QUEUE_STREAM, { seq: 1, next_by_subj: layout.queueIdFilter(queueId) });
      if (!hit) continue;
      const leader = await this.jsm.streams.getMessage(QUEUE_STREAM, { last_by_subj: hit.subject }).catch(() => null);
      return leader ? toStoredJob(leader) : undefined;
    }
    return undefined;
  }
}
