// The writes of an action on one queued job (admin/queue-admin.ts decides which, and when it is
// safe). Each names the exact record it replaces: a move is guarded by the expected last subject
// sequence, a removal deletes by sequence, so a job that moved meanwhile makes the write fail
// (JetStreamApiError) instead of leaving two copies.

import { JetStreamApiError, PubHeaders, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { queueBounce } from "../deliver/bounce.ts";
import type { Logger } from "../log.ts";
import {
  JobQueue,
  QUEUE_STREAM,
  SpoolReader,
  SpoolWriter,
  chunkSizeFor,
  decodeJobRecord,
  inlineBodyMaxFor,
  type QueueLayout,
  type RetiredBecause,
  type ShadowCopies,
} from "../queue/index.ts";
import type { StoredJob } from "./queued-jobs.ts";

/** The relay's counters of DSNs: the admin tool has none (an administrator's bounce is in the audit and the tracking log). */
const NO_METRICS = {
  recipientsBounced: { inc: () => undefined },
  dsnsSent: { inc: () => undefined },
  delayWarningsSent: { inc: () => undefined },
};

export interface JobMovesContext {
  js: JetStreamClient;
  jsm: JetStreamManager;
  layout: QueueLayout;
  /** The site's shadow copies, when it keeps them: what is removed here is retired there. */
  shadow: ShadowCopies | undefined;
  /** The server's max_payload, for the DSN's body. */
  maxPayload: number;
  timeoutMs: number;
  /** Reporting-MTA of the DSNs. */
  hostname: string;
  log: Logger;
}

export class JobMoves {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly layout: QueueLayout;
  private readonly context: JobMovesContext;
  private readonly log: Logger;

  constructor(context: JobMovesContext) {
    this.js = context.js;
    this.jsm = context.jsm;
    this.layout = context.layout;
    this.context = context;
    this.log = context.log;
  }

  /** Deferred or held → ready, cancelling its schedule, in one write that only succeeds if the record is still `stored`. */
  async moveToReady(stored: StoredJob): Promise<void> {
    const { job } = stored;
    await this.js.publish(this.layout.readySubject(job.domain, job.queueId), stored.data, {
      msgID: `${job.queueId}.x${stored.seq}`,
      cancelSchedule: { scheduleSubject: stored.subject },
      expect: { lastSubjectSequence: stored.seq, lastSubjectSequenceSubject: stored.subject },
    });
  }

  /**
   * Ready or deferred → held. The held record carries a schedule for the job's expiry, so held
   * mail whose queue lifetime ends becomes ready then and bounces like any expired mail. From
   * deferred it is one write (the new schedule replaces the old one). From ready it is two: the
   * held copy, guarded by the ready record's sequence, then the ready record's removal; the paused
   * consumer cannot hand the ready copy out in between.
   */
  async hold(stored: StoredJob): Promise<void> {
    const { job } = stored;
    const h = natsHeaders();
    h.set(PubHeaders.Schedule, `@at ${new Date(Math.max(job.expiresAt, Date.now() + 1000)).toISOString()}`);
    h.set(PubHeaders.ScheduleTarget, this.layout.readySubject(job.domain, job.queueId));
    h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, String(stored.seq));
    h.set(PubHeaders.ExpectedLastSubjectSequenceSubjectHdr, stored.subject);
    h.set(PubHeaders.MsgIdHdr, `${job.queueId}.h${stored.seq}`);
    if (stored.state === "deferred") {
      h.set(PubHeaders.Scheduler, stored.subject);
      h.set(PubHeaders.ScheduleNext, "purge");
    }
    await this.js.publish(this.layout.heldSubject(job.domain, job.queueId), stored.data, { headers: h });
    if (stored.state === "ready") await this.deleteRecord(stored.seq);
  }

  private async deleteRecord(seq: number): Promise<void> {
    try {
      await this.jsm.streams.deleteMessage(QUEUE_STREAM, seq, false);
    } catch (err) {
      if (err instanceof JetStreamApiError) throw err;
      throw new Error(`could not remove record ${seq}: ${(err as Error).message}`);
    }
  }

  /** Remove the job (its exact record), then its spooled body and its shadow copy. */
  async remove(stored: StoredJob, because: RetiredBecause): Promise<void> {
    const { queueId } = stored.job;
    await this.deleteRecord(stored.seq);
    if (!stored.job.inline) {
      await new SpoolReader(this.jsm, this.layout)
        .purge(queueId)
        .catch((err: unknown) => this.log.warn("body not purged; the spool ages it out", { queueId, error: err }));
    }
    // A peer site that took over this site's mail would otherwise deliver the copy.
    await this.context.shadow?.retire(queueId, because).catch((err: unknown) => this.log.warn("shadow copy not retired", { queueId, error: err }));
  }

  /** An RFC 3464 DSN to the sender, then the job's removal. */
  async bounce(stored: StoredJob): Promise<true | string> {
    const { job } = stored;
    if (job.sender === "") return "from the null sender: no bounce can be sent (use delete)";
    const { body: inline } = decodeJobRecord(stored.data);
    const spool = new SpoolReader(this.jsm, this.layout);
    const body = await spool.get(job.queueId, inline);
    const maxPayload = this.context.maxPayload;
    const timeout = this.context.timeoutMs;
    const diagnostic = `returned to the sender by the mail administrator of ${this.context.hostname}${job.lastError ? `; last error: ${job.lastError}` : ""}`;
    const sent = await queueBounce(
      {
        queue: { spoolWriter: (ids) => new SpoolWriter(this.js, this.layout, ids, chunkSizeFor(maxPayload), timeout, inlineBodyMaxFor(maxPayload)) },
        jobs: new JobQueue(this.js, this.jsm, this.layout, timeout),
        hostname: this.context.hostname,
        metrics: NO_METRICS,
        log: this.log,
      },
      job,
      job.recipients.map((address) => ({ address, status: "5.0.0", diagnostic, remoteMta: job.lastRemoteMta })),
      "rejected",
      body,
    );
    if (!sent) return "the sender's address cannot receive a bounce (use delete)";
    await this.remove(stored, "bounced");
    return true;
  }
}
