// Connection hygiene: clients that talk before the greeting (bots that do not wait for the
// server) are hung up on, and one client address cannot hold more than its share of sessions.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

describe("connection hygiene", () => {
  const dir = tempDir("hygiene");
  let stopStack: RelayStack["stop"] | undefined;
  let relay: RelayProcess;

  before(async () => {
    ({ relay, stop: stopStack } = await startRelayStack(
      { dir: dir.path, nats: true },
      {
        domains: [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: 9 }] } }],
        args: ["--greet-pause", "1s", "--max-connections-per-client", "3", "--tarpit-after", "2", "--tarpit-delay", "1500ms"],
      },
    ));
  });

  after(() => stopStack?.());

  it("answers a client that talks before the greeting with 421 and hangs up", async () => {
    const transcript = await new Promise<string>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port: relay.smtpPort });
      let text = "";
      socket.setEncoding("utf8");
      socket.on("connect", () => socket.write("EHLO impatient.test\r\nMAIL FROM:<spam@bot.test>\r\n"));
      socket.on("data", (data: string) => {
        text += data;
      });
      socket.on("close", () => resolve(text));
    });
    assert.match(transcript, /^421 .*talk too soon/m);
    assert.doesNotMatch(transcript, /^250/m);
  });

  it("greets a client that waits for the greeting", async () => {
    const { dialogue, greeting } = await SmtpDialogue.open(relay.smtpPort);
    assert.equal(greeting.code, 220);
    assert.equal((await dialogue.command("EHLO patient.test")).code, 250);
    await dialogue.quit();
  });

  it("limits the sessions one client address may hold", async () => {
    const held = await Promise.all([1, 2, 3].map(() => SmtpDialogue.open(relay.smtpPort, "127.0.0.1", "127.0.0.20")));
    try {
      const { greeting } = await SmtpDialogue.open(relay.smtpPort, "127.0.0.1", "127.0.0.20");
      assert.equal(greeting.code, 421);
      assert.equal(greeting.status, "4.7.0");
      const other = await SmtpDialogue.open(relay.smtpPort, "127.0.0.1", "127.0.0.21");
      assert.equal(other.greeting.code, 220, "another client is not affected");
      other.dialogue.destroy();
    } finally {
      for (const { dialogue } of held) dialogue.destroy();
    }
    assert.ok((await relay.metric("mxwarden_messages_rejected_total", 'reason="too_many_connections"')) >= 1);
  });

  it("slows every reply once a session has collected refused recipients (tarpit)", async () => {
    const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
    try {
      await dialogue.command("EHLO harvester.test");
      await dialogue.command("MAIL FROM:<h@harvester.test>");
      const timings: number[] = [];
      for (const address of ["x@victim1.test", "y@victim2.test", "z@victim3.test", "ok@example.com"]) {
        const started = performance.now();
        const reply = await dialogue.command(`RCPT TO:<${address}>`);
        timings.push(performance.now() - started);
        assert.equal(reply.code, address.startsWith("ok@") ? 250 : 550);
      }
      assert.ok((timings[0] ?? 0) < 1000 && (timings[1] ?? 0) < 1000, `first two answers are prompt: ${timings.join(", ")}`);
      assert.ok((timings[2] ?? 0) >= 1400 && (timings[3] ?? 0) >= 1400, `later answers wait: ${timings.join(", ")}`);
    } finally {
      dialogue.destroy();
    }
  });
});
