import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import { batchedLineWriter, createLogger } from "../../relay/src/log.ts";

describe("log lines", () => {
  it("go out in one write per event-loop turn, in order, each a JSON line", async () => {
    const writes: string[] = [];
    const log = createLogger({ component: "test" }, "info", batchedLineWriter({ write: (chunk: string) => writes.push(chunk) }));
    log.info("queued", { queueId: "A" });
    log.debug("not at info level");
    log.info("delivered", { queueId: "A" });
    assert.equal(writes.length, 0, "nothing is written within the turn");
    await nextTurn();
    assert.equal(writes.length, 1);
    const lines = (writes[0] as string).split("\n");
    assert.equal(lines.pop(), "", "every line ends with a newline");
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { msg: string }).msg),
      ["queued", "delivered"],
    );
    log.warn("next turn", { error: new Error("boom") });
    await nextTurn();
    assert.equal(writes.length, 2);
    assert.deepEqual((JSON.parse(writes[1] as string) as { error: unknown }).error, { name: "Error", message: "boom" });
  });
});
