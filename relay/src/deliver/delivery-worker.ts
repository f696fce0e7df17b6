// The delivery side of a relay: pulls due jobs from the shared mxw-deliver consumer (any relay
// delivers any message), sends them to the next hop, and settles each recipient: delivered,
// retried later (a new deferred job), or bounced. A job is acknowledged only after its follow-up
// (deferred job, bounce, purge) is stored, so a crash at any point repeats work, never loses it.
// A small message's body travels inside its job (delivery-job.ts): no spool read, no purge.

import { Readable } from "node:stream";
import type { JsMsg, ConsumerMessages } from "@nats-io/jetstream";
import type { DomainStore } from "../config/domain-store.ts";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import {
  QUEUE_STREAM,
  decodeJobRecord,
  InvalidJobError,
  queueIdOfSubject,
  type DeliveryJob,
  type JobQueue,
  type JobRecord,
  type MessageTracking,
  type QueueConnection,
  type RetiredBecause,
  type TrackingOutcome,
  type SpoolReader,
  type StoredBody,
} from "../queue/index.ts";
import { queueBounce } from "./bounce.ts";
import { PULL_EXPIRES_MS, SETTLE_BACKOFF_INITIAL_MS, SETTLE_BACKOFF_MAX_MS, SETTLE_RETRY_MS } from "./delivery-timing.ts";
import { noGreeting, type DestinationHealth } from "./destination-health.ts";
import { HeldMailFlush } from "./held-mail-flush.ts";
import { heldUntil, isHeld } from "./maintenance-hold.ts";
import type { DsnReason, FailedRecipient } from "./dsn.ts";
import { RouteError, type DeliveryTarget, type NextHopResolver, type Route } from "./next-hop.ts";
import type { DeliveryReport, OutboundSmtp } from "./outbound-smtp.ts";
import { retryAt } from "./retry-policy.ts";
import { delayWarningDueAt, planDeferral, planSettlement, type SettlementPlan } from "./settlement.ts";

/** The stored message with the filters' header lines in front of it. */
function withHeaders(headers: string | undefined, body: Readable): Readable {
  if (!headers) return body;
  return Readable.from(
    (async function* () {
      yield Buffer.from(headers, "utf8");
      yield* body;
    })(),
    { objectMode: false },
  );
}

const ACK = Buffer.from("+ACK");

/** The subject a JetStream message is acknowledged on (the implementation has it; the type hides it). */
function ackSubject(msg: JsMsg): string | undefined {
  const reply: unknown = (msg as JsMsg & { reply?: unknown }).reply;
  return typeof reply === "string" && reply !== "" ? reply : undefined;
}

export interface DeliveryWorkerOptions {
  hostname: string;
  /** Deliveries this relay runs at once. */
  concurrency: number;
  /** How often a long delivery tells JetStream it is still working on the job. */
  progressIntervalMs: number;
  /** Retry timing for domains no longer configured (their mail is still delivered). */
  fallbackRetry: DomainPolicy["retry"];
}

/** The job being settled, and what carrying out its plan writes through. */
interface SettleContext {
  msg: JsMsg;
  jobs: JobQueue;
  spool: SpoolReader;
  job: DeliveryJob;
  inline: Buffer | undefined;
  body: StoredBody;
  retry: DomainPolicy["retry"];
  /** The domain's spec.queue.delayWarning in ms, undefined when off. */
  delayWarningMs: number | undefined;
  log: Logger;
}

export interface DeliveryDeps {
  queue: QueueConnection;
  store: DomainStore;
  resolver: NextHopResolver;
  outbound: OutboundSmtp;
  health: DestinationHealth;
  metrics: RelayMetrics;
  log: Logger;
  /** Message tracking (mxwarden-queue find): each relay message's outcome, written in the background. */
  tracking?: MessageTracking | undefined;
}

export class DeliveryWorker {
  private isRunning = false;
  private stopped = false;
  private messages: ConsumerMessages | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  /** Queue ids this relay is delivering right now. */
  private readonly delivering = new Set<string>();
  private readonly slotWaiters: Array<() => void> = [];
  /** Domains whose held mail this relay is flushing. */
  private readonly flushes = new Map<string, HeldMailFlush>();
  private readonly options: DeliveryWorkerOptions;
  private readonly deps: DeliveryDeps;
  private readonly log: Logger;
  private loop: Promise<void> | undefined;

  constructor(options: DeliveryWorkerOptions, deps: DeliveryDeps) {
    this.options = options;
    this.deps = deps;
    this.log = deps.log.child({ component: "delivery" });
  }

  start(): void {
    // A start that comes after stop() (a relay shut down while it waited for its peers) does nothing.
    if (this.stopped) return;
    this.isRunning = true;
    this.loop = this.consumeLoop();
  }

  /** Release the jobs not yet started, let deliveries in flight finish within `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.isRunning = false;
    this.messages?.stop();
    for (const flush of this.flushes.values()) flush.stop();
    for (const wake of this.slotWaiters.splice(0)) wake();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.all([...this.inFlight]), deadline]);
    await this.loop?.catch(() => undefined);
  }

  private async consumeLoop(): Promise<void> {
    let delay = 250;
    while (this.isRunning) {
      try {
        await this.deps.queue.whenReady();
        if (!this.isRunning) return;
        const { js } = this.deps.queue.get();
        const consumer = await js.consumers.get(QUEUE_STREAM, this.deps.queue.layout.deliverConsumer);
        this.messages = await consumer.consume({ max_messages: this.options.concurrency, expires: PULL_EXPIRES_MS });
        delay = 250;
        for await (const msg of this.messages) {
          if (!this.isRunning) {
            msg.nak();
            continue;
          }
          await this.waitForSlot();
          if (!this.isRunning) {
            msg.nak();
            continue;
          }
          void this.deliver(msg);
        }
      } catch (err) {
        if (!this.isRunning) return;
        this.log.warn("delivery consumer interrupted; resubscribing", { error: err, retryInMs: delay });
      }
      if (this.isRunning) {
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  get running(): boolean {
    return this.isRunning;
  }

  /**
   * Deliver and settle the job in `msg`, in a slot the caller has waited for. Jobs come from
   * mxw-deliver or from a flush of a domain's held mail (held-mail-flush.ts); either way `msg` is what settles
   * them. Never rejects: a failed task gives its job back to JetStream.
   */
  deliver(msg: JsMsg, finishBy?: number): Promise<void> {
    // JetStream hands out a job again when its progress signals were lost (a leader moved);
    // if this relay is still delivering it, the copy is left alone: the running delivery
    // settles the job, and should it fail the copy comes back after the ack wait.
    const queueId = queueIdOfSubject(msg.subject);
    if (this.delivering.has(queueId)) {
      this.log.debug("job is already being delivered here; ignoring the redelivered copy", { queueId });
      return Promise.resolve();
    }
    this.delivering.add(queueId);
    // Progress signals from the start: every step before the primary is reached (the takeover
    // check, the route) talks to servers too, and a job held silently for an ack wait is handed
    // to another relay while this one still goes on to deliver it.
    const progress = setInterval(() => signalProgress(msg), this.options.progressIntervalMs);
    const task = this.handle(msg, finishBy)
      .finally(() => {
        clearInterval(progress);
        this.delivering.delete(queueId);
      })
      .catch((err: unknown) => {
        this.log.error("delivery task failed; the job will be retried", { error: err });
        msg.nak(5000);
      });
    this.inFlight.add(task);
    void task.finally(() => {
      this.inFlight.delete(task);
      this.slotWaiters.shift()?.();
    });
    return task;
  }

  /** The domain's primary answers again: deliver its held mail now, in the background, one flush per domain at a time. */
  flushHeldMail(domain: string): void {
    if (this.flushes.has(domain) || !this.isRunning) return;
    // Under a maintenance hold the held mail waits for the hold's end, not for the primary
    // (MaintenanceHolds flushes it when the hold is lifted early).
    if (isHeld(this.deps.store.lookup(domain), Date.now())) return;
    const flush = new HeldMailFlush(domain, {
      queue: this.deps.queue,
      slots: this,
      isUnreachable: (d) => this.deps.health.isUnreachable(d),
      concurrency: this.options.concurrency,
      log: this.log,
    });
    this.flushes.set(domain, flush);
    const started = Date.now();
    void flush
      .run()
      .then(
        (result) => {
          this.log.info("held mail flushed", { domain, ...result, ms: Date.now() - started });
        },
        (err: unknown) => {
          this.log.warn("flushing held mail failed; it waits for its retry time", { domain, error: err });
        },
      )
      .finally(() => this.flushes.delete(domain));
  }

  waitForSlot(): Promise<void> {
    if (this.inFlight.size < this.options.concurrency) return Promise.resolve();
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  /** `finishBy`: the message may not be handed over after this time (a flush's in-place delivery). */
  private async handle(msg: JsMsg, finishBy?: number): Promise<void> {
    const disconnectsAtReceipt = this.deps.queue.disconnects;
    let record: JobRecord;
    try {
      record = decodeJobRecord(msg.data);
    } catch (err) {
      if (!(err instanceof InvalidJobError)) throw err;
      this.log.error("unreadable job removed from the queue", { subject: msg.subject, error: err.message });
      msg.term(err.message);
      return;
    }
    const { job, body: inline } = record;
    const log = this.log.child({ queueId: job.queueId, domain: job.domain });
    const jobs = this.deps.queue.jobs();
    const spool = this.deps.queue.spoolReader();
    const body = await spool.get(job.queueId, inline);
    if (!body) {
      // The body is purged just before the job is acknowledged: a job without one was finished
      // by a relay that died before its ack reached the server.
      log.warn("job without a body; it was already completed");
      await msg.ackAck();
      return;
    }
    const now = Date.now();
    const policy = job.kind === "relay" ? this.deps.store.lookup(job.domain) : undefined;
    const retry = policy?.retry ?? this.options.fallbackRetry;
    const delayWarningMs = policy?.delayWarningMs;
    const context: SettleContext = { msg, jobs, spool, job, inline, body, retry, delayWarningMs, log };

    const retiredOut = policy?.retiring !== undefined && now >= policy.retiring.bounceAtMs;
    if (now >= job.expiresAt || retiredOut) {
      const diagnostic = retiredOut ? "the domain was removed from this backup MX and its grace period ended" : (job.lastError ?? "queue lifetime expired");
      const failed = job.recipients.map((address) => ({ address, status: "4.4.7", diagnostic, remoteMta: job.lastRemoteMta }));
      log.warn("queue lifetime expired; bouncing", { recipients: job.recipients.length, attempts: job.attempts });
      await this.bounce(job, failed, "expired", body);
      await this.finish(msg, spool, job, "expired");
      this.track(job, "expired", diagnostic);
      return;
    }

    // A peer site took this message over while this site was cut off or down: it is the peer's to
    // deliver now (deliver/takeover.ts), and delivering it here too would be a second copy.
    const takenOverBy = job.kind === "relay" ? await this.deps.queue.shadow?.takenOverBy(job.queueId) : undefined;
    if (takenOverBy !== undefined) {
      log.info("taken over by a peer site; not delivered here", { peer: takenOverBy });
      this.deps.metrics.deliveryAttempts.inc({ result: "taken_over_by_peer" });
      await this.finish(msg, spool, job, "taken-over");
      this.track(job, undefined, undefined, `by the peer site ${takenOverBy}`, "taken over");
      return;
    }

    const holdEnd = heldUntil(policy, job, now);
    if (holdEnd !== undefined) {
      // A maintenance hold: the job waits for its end as it is, no attempt counted.
      this.deps.metrics.deliveryAttempts.inc({ result: "held" });
      log.debug("held for maintenance", { until: new Date(holdEnd).toISOString() });
      await this.hold(msg, jobs, job, inline, holdEnd);
      return;
    }

    let route: Route;
    try {
      route =
        job.kind === "dsn" ? await this.deps.resolver.forBounce(job.domain) : await this.deps.resolver.forDomain(policy ?? this.unconfiguredTarget(job.domain));
    } catch (err) {
      if (!(err instanceof RouteError)) throw err;
      if (err.permanent) {
        log.warn("no route; bouncing", { error: err.message });
        await this.bounce(
          job,
          job.recipients.map((address) => ({ address, status: "5.1.2", diagnostic: err.message })),
          "rejected",
          body,
        );
        await this.finish(msg, spool, job, "bounced");
        this.track(job, "bounced", err.message);
      } else {
        log.info("no route yet; deferring", { error: err.message });
        await this.deferWithWarning(context, { ...job, attempts: job.attempts + 1, lastError: err.message }, now, false);
      }
      return;
    }

    if (this.deps.health.isUnreachable(job.domain)) {
      // Known down: do not spend a connection timeout per message. The probe flushes it early.
      this.deps.metrics.deliveryAttempts.inc({ result: "skipped_dead_host" });
      await this.deferWithWarning(context, job, now, true);
      return;
    }

    if (this.deps.queue.disconnects !== disconnectsAtReceipt) {
      // The last moment to step back: the connection dropped since JetStream handed this job out,
      // so its progress signals may not have arrived, and another relay may hold it by now. Left
      // unsettled, it comes back after the ack wait, to one relay only.
      log.info("the queue connection dropped while this job was prepared; left to JetStream to hand out again");
      this.deps.metrics.deliveryAttempts.inc({ result: "lease_lost" });
      return;
    }
    const report: DeliveryReport = await this.deps.outbound.deliver(
      route,
      {
        sender: job.sender,
        recipients: job.recipients,
        size: job.size + Buffer.byteLength(job.headers ?? ""),
        eightBit: job.eightBit,
        finishBy,
      },
      () => withHeaders(job.headers, body.open()),
    );
    if (report.unreachable) this.deps.health.markUnreachable(job.domain, route, report.outcomes[0]?.reply ?? noGreeting(route));
    else this.deps.health.markReachable(job.domain);
    const plan = planSettlement({
      job,
      outcomes: report.outcomes,
      remoteMta: report.remoteMta,
      destinationDown: report.unreachable,
      delayWarningMs,
      now: Date.now(),
    });
    await this.settle(plan, context);
  }

  /** Carry out `plan` (settlement.ts) for the job in `msg`: metrics and logs, the bounce, then the deferred job or the end of the job. */
  private async settle(plan: SettlementPlan, context: SettleContext): Promise<void> {
    const { msg, job, log } = context;
    const metrics = this.deps.metrics;
    if (plan.delivered) {
      metrics.recipientsDelivered.inc(plan.delivered.recipients);
      metrics.bytesDelivered.inc(job.size);
      metrics.deliveryLatency.observe(plan.delivered.latencyMs / 1000);
      log.info("delivered", {
        recipients: plan.delivered.recipients,
        remoteMta: plan.delivered.remoteMta,
        reply: plan.delivered.reply,
        attempts: plan.delivered.attempt,
      });
    }
    metrics.deliveryAttempts.inc({ result: plan.attemptResult });
    if (plan.bounce) {
      log.warn("recipients rejected by the next hop; bouncing", { recipients: plan.bounce.map((f) => f.address), reply: plan.bounce[0]?.diagnostic });
      await this.bounce(job, plan.bounce, "rejected", context.body);
    }
    if (plan.delayWarning) {
      log.info("still queued after the domain's delayWarning; warning the sender", { recipients: plan.delayWarning.length });
      await this.bounce(job, plan.delayWarning, "delayed", context.body);
    }
    if (plan.next.kind === "defer") {
      const next = plan.next.job;
      log.info("deferred", { recipients: next.recipients.length, reply: next.lastError, attempts: next.attempts });
      await this.retryLater(context, next, plan.next.failedAt, plan.next.destinationDown);
      // A partial delivery is worth a record: the recipients done are not in the deferred job.
      if (plan.delivered)
        this.track(job, undefined, plan.delivered.reply, `${plan.delivered.recipients} of ${job.recipients.length} recipients`, "partly delivered");
      return;
    }
    await this.finish(msg, context.spool, job, plan.delivered ? "delivered" : "bounced");
    const reply = plan.delivered?.reply ?? plan.bounce?.[0]?.diagnostic;
    this.track(job, plan.delivered ? "delivered" : "bounced", reply, plan.delivered?.remoteMta ? `by ${plan.delivered.remoteMta}` : undefined);
  }

  /** Record what became of a relay message in its tracking record, after the queue writes (never before: a crash repeats the delivery). */
  private track(job: DeliveryJob, outcome: TrackingOutcome | undefined, reply: string | undefined, detail?: string, event: string = outcome ?? "queued"): void {
    if (job.kind !== "relay" || !this.deps.tracking) return;
    this.deps.tracking.record(
      {
        queueId: job.queueId,
        sender: job.sender,
        recipients: job.recipients,
        domain: job.domain,
        arrivedAt: new Date(job.acceptedAt).toISOString(),
        ...(job.messageId !== undefined ? { messageId: job.messageId } : {}),
        ...(job.client !== undefined ? { client: job.client } : {}),
        ...(outcome ? { outcome } : {}),
        ...(reply !== undefined ? { remoteReply: reply } : {}),
      },
      { event, ...(detail || reply ? { detail: [detail, reply].filter(Boolean).join(": ") } : {}) },
    );
  }

  /**
   * Defer `job` without a delivery attempt's plan (no route yet, destination known down): the
   * delay warning it is due now goes out first (settlement.ts decides), then the job, which
   * records it, is held for its retry.
   */
  private async deferWithWarning(context: SettleContext, job: DeliveryJob, now: number, destinationDown: boolean): Promise<void> {
    const deferral = planDeferral(job, context.delayWarningMs, now, { fallbackStatus: destinationDown ? "4.4.1" : "4.4.3" });
    if (deferral.delayWarning) {
      context.log.info("still queued after the domain's delayWarning; warning the sender", { recipients: deferral.delayWarning.length });
      await this.bounce(job, deferral.delayWarning, "delayed", context.body);
    }
    await this.retryLater(context, deferral.job, now, destinationDown);
  }

  /**
   * Hold the job (and its inline body) until its next retry time, then acknowledge the current
   * copy. While its destination is down the job waits at least OUTAGE_HOLD_MS (delivery-timing.ts).
   * A job still owed its delay warning comes back no later than the warning is due, so that the
   * warning is not late by up to a backoff or an outage hold.
   */
  private async retryLater(context: SettleContext, job: DeliveryJob, now: number, destinationDown = false): Promise<void> {
    // Computed once: a repeated publish must carry the same time, so its msg id deduplicates it.
    const at = retryAt(Math.max(1, job.attempts), context.retry, now, job.expiresAt, destinationDown);
    const warnAt = delayWarningDueAt(job, context.delayWarningMs);
    await this.hold(context.msg, context.jobs, job, context.inline, warnAt !== undefined && warnAt > now ? Math.min(at, warnAt) : at);
  }

  /** Store the job (and its inline body) under a schedule for `at`, then acknowledge the current copy. */
  private async hold(msg: JsMsg, jobs: JobQueue, job: DeliveryJob, inline: Buffer | undefined, at: number): Promise<void> {
    const when = new Date(at);
    await this.persist(msg, () => jobs.defer(job, when, inline));
    await this.acknowledge(msg);
  }

  /** Nothing left to do for this job: drop the body (unless it travels in the job), then the job. */
  private async finish(msg: JsMsg, spool: SpoolReader, job: DeliveryJob, because: RetiredBecause = "delivered"): Promise<void> {
    if (!job.inline) await this.persist(msg, () => spool.purge(job.queueId));
    // The peers' copies go too. Not awaited by the ack: a lost retirement leaves a copy that a
    // takeover would deliver a second time, which is what the copies' lag bounds anyway.
    if (job.kind === "relay" && this.deps.queue.shadow) {
      this.deps.queue.shadow
        .retire(job.queueId, because)
        .catch((err: unknown) => this.log.warn("shadow copy not retired", { queueId: job.queueId, error: err }));
    }
    this.deps.metrics.jobsCompleted.inc({ kind: job.kind });
    await this.acknowledge(msg);
  }

  /**
   * Acknowledge, confirmed, and repeated while JetStream is failing over. For a spooled job a lost
   * ack would only cost a redelivery that finds its body purged; for an inline job, whose record
   * is the whole message, a lost ack would deliver the message a second time. Repeating holds a
   * delivery slot while the consumer's leader moves, which is what keeps the primary free of
   * duplicates. The ack goes out as a request on the message's ack subject (what JsMsg.ackAck
   * sends), through the relay's own reply inbox; acknowledging twice is harmless.
   */
  private async acknowledge(msg: JsMsg): Promise<void> {
    const subject = ackSubject(msg);
    try {
      if (subject === undefined) throw new Error("message has no ack subject");
      await this.persist(msg, () => this.deps.queue.get().inbox.request(subject, ACK, this.deps.queue.publishTimeoutMs));
    } catch (err) {
      this.log.warn("acknowledgement not confirmed; the job may come back once", { subject: msg.subject, error: err });
    }
  }

  /**
   * Repeat an idempotent queue write for a while instead of failing the job: while a site's
   * stream leader fails over, JetStream refuses writes for a few seconds, and failing here would
   * hand the job to another delivery, sending mail the primary already has a second time. How
   * long, and how often, is in delivery-timing.ts: FINISH_MARGIN_MS counts on SETTLE_RETRY_MS.
   */
  private async persist<T>(msg: JsMsg, step: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + SETTLE_RETRY_MS;
    let delay = SETTLE_BACKOFF_INITIAL_MS;
    for (;;) {
      try {
        return await step();
      } catch (err) {
        if (Date.now() + delay > deadline) throw err;
        signalProgress(msg);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, SETTLE_BACKOFF_MAX_MS);
      }
    }
  }

  private async bounce(job: DeliveryJob, failed: FailedRecipient[], reason: DsnReason, body: StoredBody): Promise<void> {
    await queueBounce(
      {
        queue: this.deps.queue,
        jobs: this.deps.queue.jobs(),
        hostname: this.options.hostname,
        metrics: this.deps.metrics,
        log: this.log,
      },
      job,
      failed,
      reason,
      body,
    );
  }

  /** A domain removed from the configuration still gets its queued mail, through its MX. */
  private unconfiguredTarget(domain: string): DeliveryTarget {
    return { domain, primaryHosts: [], outboundTls: { mode: "opportunistic", verifyCertificate: false } };
  }
}

/** Tell JetStream the job is still being worked on; a closed connection has nobody to tell. */
function signalProgress(msg: JsMsg): void {
  try {
    msg.working();
  } catch {
    // The connection is closing: the job comes back after the ack wait, as it should.
  }
}
