// Runs one controller: takes keys from its work queue (one at a time per worker), reconciles,
// records metrics, and requeues: with backoff after an error, after `requeueAfterMs` when the
// reconcile asks to poll, never otherwise (level-triggered: the next event brings the key back).

import type { Logger } from "#relay";
import type { OperatorMetrics } from "../metrics.ts";
import { WorkQueue } from "../kube/work-queue.ts";

export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

export type Reconcile = (key: string) => Promise<ReconcileOutcome>;

export class ControllerRunner {
  readonly queue = new WorkQueue();
  private readonly name: string;
  private readonly reconcile: Reconcile;
  private readonly metrics: OperatorMetrics;
  private readonly log: Logger;
  private running: Promise<void> | undefined;

  private readonly workers: number;

  /**
   * `workers` reconciles run at once (controller-runtime's MaxConcurrentReconciles), never two of
   * one key: the work queue hands a key out once until it is done.
   */
  constructor(name: string, reconcile: Reconcile, metrics: OperatorMetrics, log: Logger, workers = 1) {
    this.name = name;
    this.reconcile = reconcile;
    this.metrics = metrics;
    this.log = log.child({ controller: name });
    this.workers = workers;
  }

  enqueue(key: string): void {
    this.queue.add(key);
    this.metrics.workqueueDepth.set({ controller: this.name }, this.queue.depth);
  }

  start(): void {
    this.running ??= Promise.all(Array.from({ length: this.workers }, () => this.loop())).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.queue.shutDown();
    await this.running;
  }

  private async loop(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      this.metrics.workqueueDepth.set({ controller: this.name }, this.queue.depth);
      if (key === undefined) return;
      const end = this.metrics.reconcileTime.startTimer({ controller: this.name });
      try {
        const outcome = await this.reconcile(key);
        this.queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) {
          this.queue.addAfter(key, outcome.requeueAfterMs);
          this.metrics.reconcileTotal.inc({ controller: this.name, result: "requeue_after" });
        } else {
          this.metrics.reconcileTotal.inc({ controller: this.name, result: "success" });
        }
      } catch (err) {
        this.metrics.reconcileTotal.inc({ controller: this.name, result: "error" });
        this.metrics.reconcileErrors.inc({ controller: this.name });
        this.log.warn("reconcile failed; will retry", { key, retries: this.queue.retries(key), error: err });
        this.queue.addRateLimited(key);
      } finally {
        end();
        this.queue.done(key);
      }
    }
  }
}
