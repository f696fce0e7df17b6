// The relay as an operator runs it: a 50 MB message with bounded memory, hot reload of the
// RelayDomain files without dropping sessions, the embedded nats-server, and SIGTERM.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RelayProcess, relayDomainYaml, writeDomains } from "../harness/relay-process.ts";
import { startRelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { eventually, peakRss, tempDir } from "../harness/workspace.ts";

describe("relay lifecycle", () => {
  it("relays 50 MB and 120 MB messages with memory that does not grow with the message size", async (t) => {
    const dir = tempDir("large");
    const { primary, relay, stop } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => ({
      domains: [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: peers.primary.port }] }, maxMessageSize: "150Mi" }],
    }));
    const line = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\r\n");
    const block = Buffer.concat(Array.from({ length: 13_000 }, () => line)); // 1,014,000 bytes
    /** Send `blocks` MB through the relay and check it arrives unchanged; returns ms from final dot to 250. */
    const relayLarge = async (blocks: number): Promise<number> => {
      const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
      await dialogue.command("EHLO client.test");
      assert.equal((await dialogue.command(`MAIL FROM:<s@client.test> SIZE=${blocks * block.length + 100}`)).code, 250);
      assert.equal((await dialogue.command(`RCPT TO:<big${blocks}@example.com>`)).code, 250);
      assert.equal((await dialogue.command("DATA")).code, 354);
      const hash = createHash("sha256");
      const head = `Subject: large ${blocks}\r\nMessage-ID: <large-${blocks}@client.test>\r\n\r\n`;
      hash.update(head);
      dialogue.write(head);
      for (let i = 0; i < blocks; i++) {
        hash.update(block);
        dialogue.write(block);
      }
      const started = performance.now();
      dialogue.write(".\r\n");
      const reply = await dialogue.read();
      const acceptMs = performance.now() - started;
      await dialogue.quit();
      assert.equal(reply.code, 250, reply.text);
      const count = primary.messages.length;
      await primary.waitForMessages(count + 1, 120_000);
      const message = primary.messages.find((m) => m.to[0] === `big${blocks}@example.com`);
      assert.ok(message);
      const body = message.body.subarray(message.body.indexOf(`Subject: large ${blocks}`));
      assert.equal(createHash("sha256").update(body).digest("hex"), hash.digest("hex"), "body arrives unchanged");
      return acceptMs;
    };
    try {
      const before = peakRss(relay.process.pid);
      // A 5 MB message first: it takes the relay to its working memory (buffers, heap, pools).
      await relayLarge(5);
      const afterSmall = peakRss(relay.process.pid);
      const acceptMs = await relayLarge(50);
      const afterLarge = peakRss(relay.process.pid);
      // 120 MB: so much more than the 5 MB one that a relay buffering messages could not hide it
      // in the garbage collector's noise (tens of MiB from run to run).
      await relayLarge(120);
      const afterHuge = peakRss(relay.process.pid);
      const growth = afterHuge - afterSmall;
      const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
      t.diagnostic(`peak RSS: idle ${mib(before)} MiB, after 5 MB ${mib(afterSmall)} MiB, after 50 MB ${mib(afterLarge)} MiB, after 120 MB ${mib(afterHuge)} MiB (+${mib(growth)} MiB for 115 MB more); final dot to 250 for 50 MB: ${acceptMs.toFixed(0)} ms`);
      // Streaming holds a few 1 MiB chunks at a time: 24 times the message, not 24 times the memory.
      assert.ok(growth < 64 * 2 ** 20, `peak RSS grew by ${mib(growth)} MiB between the 5 MB and the 120 MB message`);
    } finally {
      await stop();
    }
  });

  it("reloads RelayDomain changes without a restart and without dropping open sessions", async () => {
    const dir = tempDir("reload");
    const { nats, primary, stop } = await startRelayStack({ dir: dir.path, nats: true, primary: true });
    const hosts = [{ host: "127.0.0.1", port: primary.port }];
    const domainsDir = join(dir.path, "domains");
    mkdirSync(domainsDir);
    writeFileSync(join(domainsDir, "example-com.yaml"), relayDomainYaml({ domain: "example.com", primary: { hosts } }));
    const relay = await RelayProcess.start({ dir: dir.path, domainsPath: domainsDir, nats: nats.url });
    try {
      await relay.ready();
      const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
      await dialogue.command("EHLO client.test");
      assert.equal((await dialogue.command("MAIL FROM:<s@client.test>")).code, 250);
      assert.equal((await dialogue.command("RCPT TO:<a@new.example>")).code, 550);

      const generation = await relay.metric("mxwarden_config_generation");
      writeFileSync(join(domainsDir, "new-example.yaml"), relayDomainYaml({ domain: "new.example", primary: { hosts } }));
      await eventually("new domain loaded", async () => await relay.metric("mxwarden_config_generation") > generation, 15_000);
      // The same session, opened before the reload, now reaches the new domain.
      assert.equal((await dialogue.command("RCPT TO:<a@new.example>")).code, 250);

      // An invalid document is reported and the last good configuration stays in force.
      writeFileSync(join(domainsDir, "new-example.yaml"), "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: {name: x}\nspec: {domain: 'not a domain'}\n");
      await eventually("invalid document reported", async () => await relay.metric("mxwarden_config_errors") > 0, 15_000);
      assert.equal((await dialogue.command("RCPT TO:<b@new.example>")).code, 250);
      assert.equal((await dialogue.data(simpleMessage("reload", "reload-1"))).code, 250);
      await dialogue.quit();
      const [message] = await primary.waitForMessages(1);
      assert.deepEqual(message?.to.sort(), ["a@new.example", "b@new.example"]);
      assert.equal(relay.process.running, true);
    } finally {
      await relay.stop();
      await stop();
    }
  });

  it("runs its own nats-server without --nats and survives kill -9 with the queue intact", async () => {
    const dir = tempDir("embedded");
    const primary = await TestPrimary.start();
    const hosts = [{ host: "127.0.0.1", port: primary.port }];
    writeDomains(join(dir.path, "domains.yaml"), [{ domain: "example.com", primary: { hosts } }]);
    await primary.close(); // the primary is down while mail arrives
    // A short ack wait: the killed relay may have taken the job already, and it comes back after it.
    let relay = await RelayProcess.start({ dir: dir.path, domainsPath: join(dir.path, "domains.yaml"), args: ["--ack-wait", "3s"] });
    try {
      await relay.ready();
      const result = await sendMail(relay.smtpPort, { from: "s@client.test", to: ["u@example.com"], body: simpleMessage("embedded", "embedded-1") });
      assert.equal(result.data?.code, 250);
      await relay.kill9(); // leaves its nats-server behind, holding the store
      relay = await RelayProcess.start({ dir: dir.path, domainsPath: join(dir.path, "domains.yaml"), args: ["--probe-interval", "1s", "--ack-wait", "3s"] });
      await relay.ready();
      await primary.listen();
      const [message] = await primary.waitForMessages(1, 120_000);
      assert.equal(headerValue(message?.body ?? Buffer.alloc(0), "Message-ID"), "<embedded-1@client.test>");
    } finally {
      await relay.stop();
      await primary.close();
    }
  });

  it("on SIGTERM lets the open session finish, refuses new work and exits cleanly", async () => {
    const dir = tempDir("sigterm");
    const { relay, stop } = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => ({
      domains: [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: peers.primary.port }] } }],
      args: ["--shutdown-grace", "20s"],
    }));
    try {
      const { dialogue } = await SmtpDialogue.open(relay.smtpPort);
      await dialogue.command("EHLO client.test");
      assert.equal((await dialogue.command("MAIL FROM:<s@client.test>")).code, 250);
      relay.process.signal("SIGTERM");
      await relay.process.waitForLine(/"msg":"shutting down/);
      assert.equal((await fetch(`http://127.0.0.1:${relay.metricsPort}/readyz`)).status, 503);
      // The transaction in flight completes and is queued.
      assert.equal((await dialogue.command("RCPT TO:<u@example.com>")).code, 250);
      const data = await dialogue.data(simpleMessage("sigterm", "sigterm-1"));
      assert.equal(data.code, 250);
      // A new transaction on the same session is told to go elsewhere.
      const next = await dialogue.command("MAIL FROM:<s@client.test>");
      assert.equal(next.code, 421);
      dialogue.destroy();
      const exit = await relay.process.exited;
      assert.equal(exit.code, 0);
      await assert.rejects(SmtpDialogue.open(relay.smtpPort), "the listener is closed");
    } finally {
      await stop();
    }
  });
});
