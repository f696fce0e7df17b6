// Flushing a domain's held mail when its primary comes back (Postfix's "fast flush": deliver the
// mail deferred for one destination now, instead of at each message's retry time). Held jobs
// (mxw.queue.defer.<dom>.*) are taken through the domain's consumer, mxw-drain-<dom>, and
// delivered where they are: the acknowledgement that follows a delivery removes the held record,
// one write per message. Moving each job back to the ready subjects first would cost two more
// writes (the ready copy, the cancelled schedule), each fsynced by nats-server, and the flush
// would wait on the disk (docs/benchmarks.md, round 4).
//
// A held record keeps its retry schedule while it is delivered in place. Were the schedule to
// fire mid-delivery, a second copy would reach mxw-deliver and the primary would get the message
// twice. So only jobs whose schedule is at least IN_PLACE_MIN_MS away are delivered in place, and
// their final dot is not sent later than FINISH_MARGIN_MS before the schedule (the reply to the
// dot and the settling writes fit in that margin); the others are moved to ready the atomic way
// (JobQueue.release), which cancels the schedule. Both times are in delivery-timing.ts.

import { FINISH_MARGIN_MS, IN_PLACE_MIN_MS, PULL_EXPIRES_MS } from "./delivery-timing.ts";
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "../log.ts";
import { QUEUE_STREAM, ensureFlushConsumer, scheduledAt, type QueueConnection } from "../queue/index.ts";

/** How the flush hands a job to the delivery worker's slots. */
export interface DeliverySlots {
  /** Resolves when a delivery slot is free. */
  waitForSlot(): Promise<void>;
  /** Deliver the job in `msg`, with no final dot after `finishBy`, and settle it through `msg`; resolves when it is settled. */
  deliver(msg: JsMsg, finishBy: number): Promise<void>;
  /** False once the worker is stopping. */
  readonly running: boolean;
}

export interface FlushResult {
  /** Held jobs delivered (or re-deferred, or bounced) in place. */
  inPlace: number;
  /** Held jobs whose schedule was near, moved to the ready subjects. */
  released: number;
}

export interface FlushDeps {
  queue: QueueConnection;
  slots: DeliverySlots;
  /** True while the domain's destination is known to be down again: the flush stops. */
  isUnreachable: (domain: string) => boolean;
  /** Deliveries this relay runs at once: how many held jobs it pulls ahead. */
  concurrency: number;
  log: Logger;
  /** How often the flush checks whether it is finished. */
  checkIntervalMs?: number;
}

export class HeldMailFlush {
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private readonly domain: string;
  private readonly deps: FlushDeps;

  constructor(domain: string, deps: FlushDeps) {
    this.domain = domain;
    this.deps = deps;
  }

  stop(): void {
    this.stopped = true;
    this.messages?.stop();
  }

  /**
   * Deliver the jobs held for the domain when the flush starts. Jobs held later (a delivery that
   * failed again, or the primary going down again) keep their schedules: the flush ends when the
   * consumer has nothing older to give and this relay's deliveries are settled.
   */
  async run(): Promise<FlushResult> {
    const { queue, slots, log } = this.deps;
    const { js, jsm } = queue.get();
    const jobs = queue.jobs();
    // Most recoveries (a relay's start-up check among them) find nothing held: no consumer for those.
    if (!(await jobs.hasHeld(this.domain))) return { inPlace: 0, released: 0 };
    // Records stored after this point are not part of this flush.
    const lastSeq = (await jsm.streams.info(QUEUE_STREAM)).state.last_seq;
    let name: string;
    try {
      name = await ensureFlushConsumer(jsm, queue.layout, this.domain, queue.settings);
    } catch (err) {
      // E.g. the stream's consumer limit: the slower way, every held job moved back to ready.
      log.warn("no consumer for the domain's held mail; moving held jobs to the ready queue instead", { domain: this.domain, error: err });
      return { inPlace: 0, released: await jobs.releaseDeferred(this.domain) };
    }
    const consumer = await js.consumers.get(QUEUE_STREAM, name);
    if (this.stopped) return { inPlace: 0, released: 0 };
    const messages = await consumer.consume({ max_messages: this.deps.concurrency, expires: PULL_EXPIRES_MS });
    this.messages = messages;

    const result: FlushResult = { inPlace: 0, released: 0 };
    const settling = new Set<Promise<void>>();
    let checking = false;
    const check = setInterval(() => {
      if (checking) return;
      checking = true;
      consumer
        .info()
        .then(
          (info) => {
            const finished = info.num_pending === 0 && settling.size === 0;
            if (finished || this.deps.isUnreachable(this.domain) || !slots.running) messages.stop();
          },
          (err: unknown) => {
            log.warn("flush progress check failed; stopping the flush, held jobs keep their schedules", { domain: this.domain, error: err });
            messages.stop();
          },
        )
        .finally(() => {
          checking = false;
        });
    }, this.deps.checkIntervalMs ?? 1000);
    check.unref();
    try {
      for await (const msg of messages) {
        if (this.stopped || !slots.running || this.deps.isUnreachable(this.domain)) break;
        // Held after the flush began: left unacknowledged, it comes back to a later flush after
        // the ack wait, or its schedule makes it ready.
        if (msg.seq > lastSeq) continue;
        const due = scheduledAt(msg.headers);
        if (due !== undefined && due - Date.now() >= IN_PLACE_MIN_MS) {
          await slots.waitForSlot();
          const task = slots.deliver(msg, due - FINISH_MARGIN_MS).then(() => {
            result.inPlace++;
          });
          settling.add(task);
          void task.finally(() => settling.delete(task));
        } else {
          if (await jobs.release({ seq: msg.seq, subject: msg.subject, data: msg.data })) result.released++;
          // Released or not, the held record is gone or replaced: this consumer is done with it.
          msg.ack();
        }
      }
    } finally {
      clearInterval(check);
      messages.stop();
      await Promise.allSettled([...settling]);
    }
    return result;
  }
}
