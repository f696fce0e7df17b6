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
    const periodic = startPeriodic(3_600_000, async () => {
      runs++;
      await new Promise<void>((resolve) => { release = resolve; });
      if (runs === 2) throw new Error("second run fails");
    }, (err) => errors.push(err), () => ticks++);
    try {
      assert.equal(runs, 1, "the first run starts at once");
      periodic.runNow();
      periodic.runNow();
      assert.equal(runs, 1, "no second run while the first is going");
      assert.equal(ticks, 3, "everyTick runs on every tick, busy or not");
      release?.();
      await nextTurn();
      periodic.runNow();
      assert.equal(runs, 2);
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
});
