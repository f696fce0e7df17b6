// How soon a new connection gets its 220. An MX mostly sees one message per connection, so any
// wait before the greeting caps the rate at a fixed number of senders (issue 19). Without
// --greet-pause the relay greets at once; with it, clients that talk first still get 421.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { SmtpDialogue } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

/** Milliseconds from starting the TCP connect to reading the greeting, and its reply code. */
async function timeToGreeting(port: number): Promise<{ ms: number; code: number }> {
  const started = performance.now();
  const { dialogue, greeting } = await SmtpDialogue.open(port);
  const ms = performance.now() - started;
  await dialogue.quit();
  dialogue.destroy();
  return { ms, code: greeting.code };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** Everything the server sends to a client that writes `lines` as soon as TCP connects, until it hangs up. */
function talkFirst(port: number, lines: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let text = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(lines));
    socket.on("data", (data: string) => {
      text += data;
    });
    socket.on("close", () => resolve(text));
  });
}

describe("greeting", () => {
  const dir = tempDir("greeting");
  let nats: TestNatsServer;
  let prompt: RelayProcess;
  let pausing: RelayProcess;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    const domainsPath = join(dir.path, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: 9 }] } }]);
    for (const name of ["prompt", "pausing"]) mkdirSync(join(dir.path, name));
    [prompt, pausing] = await Promise.all([
      RelayProcess.start({ dir: join(dir.path, "prompt"), domainsPath, nats: nats.url }),
      RelayProcess.start({ dir: join(dir.path, "pausing"), domainsPath, nats: nats.url, args: ["--greet-pause", "300ms"] }),
    ]);
    await Promise.all([prompt.ready(), pausing.ready()]);
  });

  after(async () => {
    await Promise.all([prompt?.stop(), pausing?.stop()]);
    await nats?.stop();
  });

  it("greets a new connection at once without --greet-pause (no hidden 100 ms)", async (t) => {
    const timings: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { ms, code } = await timeToGreeting(prompt.smtpPort);
      assert.equal(code, 220);
      timings.push(ms);
    }
    t.diagnostic(`time to greeting (ms): median ${median(timings).toFixed(1)}, all ${timings.map((ms) => ms.toFixed(1)).join(" ")}`);
    // smtp-server's own delay is 100 ms per greeting; half of it leaves room for a busy machine.
    assert.ok(median(timings) < 50, `median time to greeting ${median(timings).toFixed(1)} ms`);
  });

  it("without --greet-pause, answers a client that talks first in order, as if it had waited", async () => {
    const transcript = await talkFirst(prompt.smtpPort, "EHLO eager.test\r\nQUIT\r\n");
    const codes = transcript
      .split("\r\n")
      .filter((line) => /^\d{3} /.test(line))
      .map((line) => line.slice(0, 3));
    assert.deepEqual(codes, ["220", "250", "221"], transcript);
  });

  it("with --greet-pause 300ms, answers a client that talks before the greeting with 421 and hangs up", async () => {
    const transcript = await talkFirst(pausing.smtpPort, "EHLO impatient.test\r\nMAIL FROM:<spam@bot.test>\r\n");
    assert.match(transcript, /^421 .*talk too soon/m);
    assert.doesNotMatch(transcript, /^2\d\d /m, "neither greeted nor served");
  });

  it("with --greet-pause 300ms, greets a client that waits, after the pause", async () => {
    const { ms, code } = await timeToGreeting(pausing.smtpPort);
    assert.equal(code, 220);
    // Timers may fire a millisecond early; the pause starts after this client's connect began.
    assert.ok(ms >= 295, `greeted after ${ms.toFixed(1)} ms`);
  });
});
