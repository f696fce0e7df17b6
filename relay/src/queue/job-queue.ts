// Publishing and re-scheduling delivery jobs. A job is "ready" (consumed by mxw-deliver) or
// "deferred" (held by a JetStream message schedule until its retry time). Deferred jobs are not
// pending on mxw-deliver (only, during a flush of held mail, on their own domain's flush consumer), so a large
// backlog for one dead primary never blocks other domains.

import { JetStreamApiError, JetStreamError, PubHeaders, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream";
import type { MsgHdrs, QueuedIterator } from "@nats-io/transport-node";
import { QUEUE_STREAM, type QueueLayout } from "./layout.ts";
import { decodeJobRecord, encodeJob, type DeliveryJob } from "./delivery-job.ts";
import type { ReplyInbox } from "./reply-inbox.ts";

/** A held job as read from the stream: where it is, and its record. */
export interface HeldJob {
  seq: number;
  subject: string;
  data: Uint8Array;
}

/** When a held job's schedule (the header defer() gives it) moves it back to ready, or undefined. */
export function scheduledAt(headers: MsgHdrs | undefined): number | undefined {
  const match = /^@at (.+)$/.exec(headers?.get(PubHeaders.Schedule) ?? "");
  if (!match?.[1]) return undefined;
  const at = Date.parse(match[1]);
  return Number.isNaN(at) ? undefined : at;
}

export interface QueueDepth {
  /** Jobs waiting in or taken from the delivery consumer. */
  ready: number;
  /** Jobs held by a retry schedule. */
  deferred: number;
}

export class JobQueue {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly layout: QueueLayout;
  private readonly timeoutMs: number;
  private readonly inbox: ReplyInbox | undefined;

  /** With `inbox`, jobs are stored through it (the relay's per-message path); else through `js`. */
  constructor(js: JetStreamClient, jsm: JetStreamManager, layout: QueueLayout, timeoutMs: number, inbox?: ReplyInbox) {
    this.js = js;
    this.layout = layout;
    this.jsm = jsm;
    this.timeoutMs = timeoutMs;
    this.inbox = inbox;
  }

  /** Queue a job for immediate delivery; an inline job brings its body. */
  async enqueue(job: DeliveryJob, body?: Uint8Array): Promise<void> {
    const subject = this.layout.readySubject(job.domain, job.queueId);
    const msgId = `${job.queueId}.r${job.attempts}`;
    if (this.inbox) await this.inbox.publish(subject, encodeJob(job, body), msgId, this.timeoutMs);
    else await this.js.publish(subject, encodeJob(job, body), { msgID: msgId, timeout: this.timeoutMs });
  }

  /** Hold a job until `at`, when the server moves it back to the ready subjects. */
  async defer(job: DeliveryJob, at: Date, body?: Uint8Array): Promise<void> {
    await this.js.publish(this.layout.deferSubject(job.domain, job.queueId), encodeJob(job, body), {
      msgID: `${job.queueId}.d${job.attempts}.${at.getTime()}`,
      timeout: this.timeoutMs,
      schedule: { specification: at, target: this.layout.readySubject(job.domain, job.queueId) },
    });
  }

  /**
   * Make every deferred job of a domain ready now (its primary came back). Each move cancels the
   * schedule atomically and only if it is still the one we read, so a schedule that fires at the
   * same moment, or another relay flushing the same domain, never produces a second copy.
   */
  async releaseDeferred(domain: string): Promise<number> {
    let released = 0;
    for (const stored of this.layout.storedUnder) released += await this.releaseDeferredUnder(stored.deferFilterForDomain(domain));
    return released;
  }

  private async releaseDeferredUnder(filter: string): Promise<number> {
    const batchSize = 500;
    // Inline bodies make records up to ~130 KiB: a batch is bounded in bytes as well.
    const batchBytes = 8 * 1024 * 1024;
    let released = 0;
    let nextSeq = 1;
    for (;;) {
      // Direct batch gets read the held jobs without a consumer: a work-queue stream allows no
      // second consumer that does not acknowledge, and acknowledging would delete them.
      const batch = await this.jsm.direct.getBatch(QUEUE_STREAM, { seq: nextSeq, batch: batchSize, max_bytes: batchBytes, next_by_subj: filter });
      const moves: Promise<void>[] = [];
      let received = 0;
      for (const stored of await collectBatch(batch)) {
        received++;
        nextSeq = stored.seq + 1;
        moves.push(
          this.release(stored).then((moved) => {
            if (moved) released++;
          }),
        );
      }
      await Promise.all(moves);
      if (received === 0) break;
    }
    return released;
  }

  /** Whether any job of the domain is held (read from the subject index; a lagging replica may miss the newest). */
  async hasHeld(domain: string): Promise<boolean> {
    for (const stored of this.layout.storedUnder) {
      if ((await this.jsm.direct.getMessage(QUEUE_STREAM, { seq: 1, next_by_subj: stored.deferFilterForDomain(domain) })) !== null) return true;
    }
    return false;
  }

  /**
   * Make one held job ready now: the ready copy is stored and the schedule cancelled in one write,
   * and only if the held record is still `held.seq`. False when it is not (the schedule fired, or
   * another relay moved or re-deferred the job): then there is nothing left to move.
   */
  async release(held: HeldJob): Promise<boolean> {
    const { job } = decodeJobRecord(held.data);
    try {
      await this.js.publish(this.layout.readySubject(job.domain, job.queueId), held.data, {
        msgID: `${job.queueId}.x${held.seq}`,
        timeout: this.timeoutMs,
        cancelSchedule: { scheduleSubject: held.subject },
        expect: { lastSubjectSequence: held.seq, lastSubjectSequenceSubject: held.subject },
      });
      return true;
    } catch (err) {
      if (err instanceof JetStreamApiError) return false;
      throw err;
    }
  }

  /** Queue depth for metrics: ready from the consumer, deferred as the rest of the stream. */
  async depth(): Promise<QueueDepth> {
    const [stream, consumer] = await Promise.all([this.jsm.streams.info(QUEUE_STREAM), this.jsm.consumers.info(QUEUE_STREAM, this.layout.deliverConsumer)]);
    const ready = consumer.num_pending + consumer.num_ack_pending;
    return { ready, deferred: Math.max(0, stream.state.messages - ready) };
  }
}

/** All messages of a direct batch; the server ends a short batch with a 404 status. */
async function collectBatch(batch: QueuedIterator<StoredMsg>): Promise<StoredMsg[]> {
  const messages: StoredMsg[] = [];
  try {
    for await (const stored of batch) messages.push(stored);
  } catch (err) {
    // JetStreamStatusError (not exported by the package) extends JetStreamError and carries code.
    const code = err instanceof JetStreamError ? (err as JetStreamError & { code?: number }).code : undefined;
    if (code !== 404) throw err;
  }
  return messages;
}
