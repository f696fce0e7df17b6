// Runs a task at once and then every interval, never two runs at a time: when NATS or an API
// server is slow, ticks are skipped rather than piled up. The timer does not keep the process alive.

export interface PeriodicTask {
  /**
   * Run now, for a change that should not wait for the next tick; while a run is going, once more
   * right after it (that run may have read the state from before the change).
   */
  runNow(): void;
  stop(): void;
}

/**
 * `everyTick` runs on every tick, even while a run is still going: for a cheap figure that must
 * stay current while a slow run waits on a server that went away.
 */
export function startPeriodic(intervalMs: number, task: () => Promise<void>, onError: (err: unknown) => void, everyTick?: () => void): PeriodicTask {
  let busy = false;
  let again = false;
  let stopped = false;
  const run = (): void => {
    busy = true;
    task()
      .catch(onError)
      .finally(() => {
        busy = false;
        if (again && !stopped) {
          again = false;
          run();
        }
      });
  };
  const tick = (): void => {
    everyTick?.();
    if (!busy) run();
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    runNow: () => {
      everyTick?.();
      if (busy) again = true;
      else run();
    },
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
