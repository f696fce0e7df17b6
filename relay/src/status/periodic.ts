// Runs a task at once and then every interval, never two runs at a time: when NATS or an API
// server is slow, runs are skipped rather than piled up. The timer does not keep the process alive.

export interface PeriodicTask {
  /** Run now (for a change that should not wait for the next tick); skipped if a run is going. */
  runNow(): void;
  stop(): void;
}

/**
 * `everyTick` runs on every tick, even while a run is still going: for a cheap figure that must
 * stay current while a slow run waits on a server that went away.
 */
export function startPeriodic(
  intervalMs: number, task: () => Promise<void>, onError: (err: unknown) => void, everyTick?: () => void,
): PeriodicTask {
  let busy = false;
  const runNow = (): void => {
    everyTick?.();
    if (busy) return;
    busy = true;
    task().catch(onError).finally(() => { busy = false; });
  };
  runNow();
  const timer = setInterval(runNow, intervalMs);
  timer.unref();
  return { runNow, stop: () => clearInterval(timer) };
}
