import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { startPeriodic } from "../../relay/src/status/periodic.ts";

describe("periodic tasks", () => {
  it("run at once, never overlap, report failures and keep going", async () => {
    let runs = 0;
    let ticks = 0;
    let release: (() => void) | undefined;
    const errors: unknown[] = [];
    // An hour between ticks: only runNow() drives the task in this test.
    const periodic = startPeriodic(
      3_600_000,
      async () => {
        runs++;
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        if (runs === 2) throw new Error("second run fails");
      },
      (err) => errors.push(err),
      () => ticks++,
    );
    try {
      assert.equal(runs, 1, "the first run starts at once");
      release?.();
      await nextTurn();
      periodic.runNow();
      assert.equal(runs, 2);
      assert.equal(ticks, 2, "everyTick runs on every tick");
      release?.();
      await nextTurn();
      assert.equal(errors.length, 1);
      assert.match(String(errors[0]), /second run fails/);
      periodic.runNow();
      assert.equal(runs, 3, "a failed run does not stop the next");
      release?.();
      await nextTurn();
    } finally {
      periodic.stop();
    }
  });

  it("runs once more right after a run that was going when asked, however often asked", async () => {
    let runs = 0;
    let ticks = 0;
    let release: (() => void) | undefined;
    const periodic = startPeriodic(
      3_600_000,
      async () => {
        runs++;
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      () => {},
      () => ticks++,
    );
    try {
      periodic.runNow();
      periodic.runNow();
      assert.equal(runs, 1, "no second run while the first is going");
      assert.equal(ticks, 3, "everyTick runs on every tick, busy or not");
      release?.();
      await nextTurn();
      assert.equal(runs, 2, "the change seen during the first run gets a run of its own");
      release?.();
      await nextTurn();
      assert.equal(runs, 2, "and only one");
    } finally {
      periodic.stop();
    }
  });
});
