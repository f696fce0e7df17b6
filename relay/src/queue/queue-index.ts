// The queue stream's subject index, read once and shared. Every queued message has exactly one
// job, on mxw.queue.<state>.<domain token>.<queue id>, and its queue id starts with its acceptance
// time, so the index alone gives the count and the oldest message per domain and for the site.
// The site gauges, the per-domain gauges and the operator's queue report all sample it: one read
// per interval serves them all, where a read per configured domain would be 10,000 requests per
// report with 10,000 domains.

import { QUEUE_STREAM, domainTokenOfQueueSubject } from "./layout.ts";
import { queueIdOfSubject, queueIdTime } from "./queue-id.ts";
import type { QueueConnection } from "./queue-connection.ts";

export interface QueuedSummary {
  /** Jobs queued (ready or deferred). */
  queued: number;
  /** Earliest acceptance time (epoch ms); the snapshot's time when nothing is queued. */
  oldestAcceptedAt: number;
}

export interface QueueIndexSnapshot {
  takenAt: number;
  site: QueuedSummary;
  /** Keyed by domain token (layout.ts domainToken), the form a domain has in a subject. */
  byDomainToken: Map<string, QueuedSummary>;
}

/** Figures for a domain token that has nothing queued. */
export function nothingQueued(snapshot: QueueIndexSnapshot): QueuedSummary {
  return { queued: 0, oldestAcceptedAt: snapshot.takenAt };
}

/** Counts and oldest acceptance time, for the site and per domain token, from a subject index (subject → messages). */
export function summariseQueueIndex(subjects: Record<string, number>, now: number): QueueIndexSnapshot {
  const site: QueuedSummary = { queued: 0, oldestAcceptedAt: now };
  const byDomainToken = new Map<string, QueuedSummary>();
  for (const [subject, count] of Object.entries(subjects)) {
    const acceptedAt = queueIdTime(queueIdOfSubject(subject));
    const oldest = Number.isFinite(acceptedAt) ? acceptedAt : now;
    site.queued += count;
    site.oldestAcceptedAt = Math.min(site.oldestAcceptedAt, oldest);
    const token = domainTokenOfQueueSubject(subject);
    if (token === undefined) continue;
    const domain = byDomainToken.get(token);
    if (domain) {
      domain.queued += count;
      domain.oldestAcceptedAt = Math.min(domain.oldestAcceptedAt, oldest);
    } else {
      byDomainToken.set(token, { queued: count, oldestAcceptedAt: oldest });
    }
  }
  return { takenAt: now, site, byDomainToken };
}

/**
 * Hands out snapshots of the subject index no older than `maxAgeMs`; callers that ask while a
 * read is under way share it.
 */
export class QueueIndex {
  private last: QueueIndexSnapshot | undefined;
  private reading: Promise<QueueIndexSnapshot> | undefined;
  private readonly readSubjects: () => Promise<Record<string, number>>;
  private readonly maxAgeMs: number;
  private readonly clock: () => number;

  constructor(readSubjects: () => Promise<Record<string, number>>, maxAgeMs: number, clock: () => number = Date.now) {
    this.readSubjects = readSubjects;
    this.maxAgeMs = maxAgeMs;
    this.clock = clock;
  }

  /** Reads the relay's queue stream through its live connection. */
  static of(queue: QueueConnection, maxAgeMs: number, clock: () => number = Date.now): QueueIndex {
    return new QueueIndex(
      async () => {
        // All of the stream's subjects: a site's own, and any unscoped ones from before it had a name.
        const info = await queue.get().jsm.streams.info(QUEUE_STREAM, { subjects_filter: ">" });
        return info.state.subjects ?? {};
      },
      maxAgeMs,
      clock,
    );
  }

  snapshot(): Promise<QueueIndexSnapshot> {
    const last = this.last;
    if (last && this.clock() - last.takenAt < this.maxAgeMs) return Promise.resolve(last);
    this.reading ??= this.readSubjects()
      .then((subjects) => (this.last = summariseQueueIndex(subjects, this.clock())))
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }
}
