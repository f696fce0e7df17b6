// A work queue keyed by object, as controller-runtime has it: a key waiting in the queue is there
// once however many events arrive; a key being processed is not handed out twice, and if it
// changes meanwhile it is processed again afterwards; a key added for later comes back at the
// soonest time asked; failures come back after a per-key exponential backoff (5 ms doubling up to
// 1000 s); an overall token bucket (10/s, burst 100) keeps a storm of failures from hammering the
// API servers.

export interface WorkQueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  ratePerSecond?: number;
  burst?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirtyWhileProcessing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private waiters: (() => void)[] = [];
  private shuttingDown = false;
  private tokens: number;
  private lastRefill = Date.now();
  private readonly options: Required<WorkQueueOptions>;

  constructor(options: WorkQueueOptions = {}) {
    this.options = { baseDelayMs: 5, maxDelayMs: 1_000_000, ratePerSecond: 10, burst: 100, ...options };
    this.tokens = this.options.burst;
  }

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirtyWhileProcessing.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.waiters.shift()?.();
  }

  /**
   * Adds the key after `ms`, or sooner if it is already waiting for a sooner time (as client-go's
   * delaying queue): a reconcile that asks to look again in a second must not wait for the poll
   * timer an earlier reconcile set.
   */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    const due = Date.now() + ms;
    const pending = this.timers.get(key);
    if (pending) {
      if (pending.due <= due) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms).unref();
    this.timers.set(key, { timer, due });
  }

  /** After a failure: back off per key and by the overall rate limit, whichever is later. */
  addRateLimited(key: string): void {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const perItem = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** failures);
    this.addAfter(key, Math.max(perItem, this.overallDelay()));
  }

  /** The key succeeded: its next failure starts from the base delay again. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to process, or undefined once shut down. */
  async get(): Promise<string | undefined> {
    while (this.queue.length === 0) {
      if (this.shuttingDown) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    const key = this.queue.shift() as string;
    this.queued.delete(key);
    this.processing.add(key);
    return key;
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirtyWhileProcessing.delete(key)) this.add(key);
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  private overallDelay(): number {
    const now = Date.now();
    this.tokens = Math.min(this.options.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.options.ratePerSecond);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.options.ratePerSecond) * 1000);
  }
}
