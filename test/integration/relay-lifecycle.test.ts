// The relay as an operator runs it: a 120 MB message with bounded memory, hot reload of the
// RelayDomain files without dropping sessions, the embedded nats-server, and SIGTERM.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { WebSocket } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SMTPServer } from "smtp-server";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, relayDomainYaml, writeDomains } from "../harness/relay-process.ts";
import { startRelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

describe("relay lifecycle", () => {
  it("relays 50 MB and 120 MB messages with memory that does not grow with the message size", async (t) => {
    const dir = tempDir("large");
    const nats = await TestNatsServer.start(join(dir.path, "nats"));
    const primary = await DigestPrimary.start();
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, maxMessageSize: "150Mi" },
    ]);
    const relay = await startWithInspector(() => RelayProcess.start({ dir: dir.path, domainsPath: join(dir.path, "domains.yaml"), nats: nats.url }));
    let inspector: RelayInspector | undefined;
    const line = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\r\n");
    const block = Buffer.concat(Array.from({ length: 13_000 }, () => line)); // 1,014,000 bytes
    /** What the relay holds at two points of one message: with all but its last block received, and half-way through its delivery. */
    interface Held {
      receiving: number;
      delivering: number;
    }
    /**
     * Send `blocks` MB through the relay and check it arrives unchanged; returns ms from final dot
     * to 250, and with `probe` what the relay held while receiving and while delivering.
     */
    const relayLarge = async (blocks: number, probe?: RelayInspector): Promise<{ acceptMs: number; held: Held | undefined }> => {
      const recipient = `big${blocks}@example.com`;
      const session = await RawSmtpSession.open(relay.smtpPort);
      assert.equal(await session.command("EHLO client.test"), 250);
      assert.equal(await session.command(`MAIL FROM:<s@client.test> SIZE=${blocks * block.length + 100}`), 250);
      assert.equal(await session.command(`RCPT TO:<${recipient}>`), 250);
      assert.equal(await session.command("DATA"), 354);
      // The primary stops reading half-way through the message, while the relay is delivering it.
      const deliveryHeld = probe ? primary.holdAfter((blocks * block.length) / 2) : undefined;
      const hash = createHash("sha256");
      const head = `Subject: large ${blocks}\r\nMessage-ID: <large-${blocks}@client.test>\r\n\r\n`;
      hash.update(head);
      await session.written(head);
      let receiving = 0;
      for (let i = 0; i < blocks; i++) {
        // Before the last block, the relay has read all that was written but what the two sockets' buffers hold.
        if (probe && i === blocks - 1) receiving = await probe.liveBytes();
        hash.update(block);
        await session.written(block);
      }
      const started = performance.now();
      const reply = await session.command(".");
      const acceptMs = performance.now() - started;
      assert.equal(reply, 250);
      await session.quit();
      let delivering = 0;
      if (probe && deliveryHeld) {
        const resume = await deliveryHeld;
        delivering = await probe.liveBytes();
        resume();
      }
      assert.equal(await primary.digestOf(recipient, 120_000), hash.digest("hex"), "body arrives unchanged");
      return { acceptMs, held: probe ? { receiving, delivering } : undefined };
    };
    const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
    // Streaming holds a few 1 MiB chunks at a time, whatever the message size and however busy the
    // machine; a relay holding the message would hold what it has read of it, which must be more.
    const bound = 32 * 2 ** 20;
    try {
      const unread = socketBufferBytes();
      assert.ok(
        119 * block.length - unread > bound,
        `the sockets can buffer ${mib(unread)} MiB: the relay need not have read enough of the message for this test to see it held`,
      );
      await relay.ready();
      inspector = await RelayInspector.connect(relay);
      // A 5 MB message first: it takes the relay to its working memory (buffers, heap, pools).
      await relayLarge(5);
      const idle = await inspector.liveBytes();
      const { acceptMs } = await relayLarge(50);
      const { held } = await relayLarge(120, inspector);
      assert.ok(held);
      t.diagnostic(
        `held after a full GC: idle ${mib(idle)} MiB; 120 MB message: receiving ${mib(held.receiving)} MiB, delivering ${mib(held.delivering)} MiB; final dot to 250 for 50 MB: ${acceptMs.toFixed(0)} ms`,
      );
      assert.ok(held.receiving - idle < bound, `the relay held ${mib(held.receiving - idle)} MiB more than idle while receiving a 120 MB message`);
      assert.ok(held.delivering - idle < bound, `the relay held ${mib(held.delivering - idle)} MiB more than idle while delivering a 120 MB message`);
    } finally {
      inspector?.close();
      await relay.stop();
      await primary.close();
      await nats.stop();
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
      await eventually("new domain loaded", async () => (await relay.metric("mxwarden_config_generation")) > generation, 15_000);
      // The same session, opened before the reload, now reaches the new domain.
      assert.equal((await dialogue.command("RCPT TO:<a@new.example>")).code, 250);

      // An invalid document is reported and the last good configuration stays in force.
      writeFileSync(
        join(domainsDir, "new-example.yaml"),
        "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: {name: x}\nspec: {domain: 'not a domain'}\n",
      );
      await eventually("invalid document reported", async () => (await relay.metric("mxwarden_config_errors")) > 0, 15_000);
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

/** Starts a relay with the V8 inspector on a free loopback port (NODE_OPTIONS reaches Node through relay/bin/mxwarden-relay). */
async function startWithInspector(start: () => Promise<RelayProcess>): Promise<RelayProcess> {
  const before = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = [before, "--inspect=127.0.0.1:0"].filter(Boolean).join(" ");
  try {
    return await start();
  } finally {
    if (before === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = before;
  }
}

/**
 * The relay's V8 inspector: a full garbage collection in the relay, then its process.memoryUsage().
 * What is left after the collection is what the relay holds on to, whenever its collector would
 * have run on its own: unlike peak RSS, it does not depend on how busy the machine is.
 */
class RelayInspector {
  private readonly socket: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, (reply: { result?: unknown; error?: { message: string } }) => void>();

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      const reply = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (reply.id === undefined) return;
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
  }

  static async connect(relay: RelayProcess): Promise<RelayInspector> {
    const line = await relay.process.waitForLine(/Debugger listening on ws:\/\//);
    const url = /(ws:\/\/\S+)/.exec(line)?.[1];
    assert.ok(url, line);
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.addEventListener("open", resolve, { once: true });
      socket.addEventListener("error", reject, { once: true });
    });
    return new RelayInspector(socket);
  }

  private call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (reply) => (reply.error ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(reply.result)));
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** JavaScript heap and buffers (external memory, ArrayBuffers included) still in use after a full collection. */
  async liveBytes(): Promise<number> {
    await this.call("HeapProfiler.collectGarbage");
    const evaluated = (await this.call("Runtime.evaluate", { expression: "JSON.stringify(process.memoryUsage())", returnByValue: true })) as {
      result: { value: string };
    };
    const usage = JSON.parse(evaluated.result.value) as { heapUsed: number; external: number };
    return usage.heapUsed + usage.external;
  }

  close(): void {
    this.socket.close();
  }
}

/** The most the two ends of a loopback TCP connection can buffer between them: the largest send buffer and the largest receive buffer. */
function socketBufferBytes(): number {
  const largest = (name: string): number => Number(readFileSync(`/proc/sys/net/ipv4/${name}`, "utf8").trim().split(/\s+/).pop());
  return largest("tcp_wmem") + largest("tcp_rmem");
}

/** An SMTP client on a plain socket that knows when the kernel has taken what it wrote, so when the relay has read all but what the socket buffers hold. */
class RawSmtpSession {
  private readonly socket: Socket;
  private buffered = "";
  private readonly codes: number[] = [];
  private readonly waiting: Array<(code: number) => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.buffered += text;
      for (let end = this.buffered.indexOf("\r\n"); end >= 0; end = this.buffered.indexOf("\r\n")) {
        const replyLine = this.buffered.slice(0, end);
        this.buffered = this.buffered.slice(end + 2);
        // The last line of a reply has a space after its code, the others a hyphen.
        if (!/^\d{3}(?: |$)/.test(replyLine)) continue;
        const code = Number(replyLine.slice(0, 3));
        const waiter = this.waiting.shift();
        if (waiter) waiter(code);
        else this.codes.push(code);
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      for (const waiter of this.waiting.splice(0)) waiter(0);
    });
  }

  static async open(port: number): Promise<RawSmtpSession> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const session = new RawSmtpSession(socket);
    assert.equal(await session.reply(), 220);
    return session;
  }

  /** The code of the next reply (0: the connection closed). */
  reply(): Promise<number> {
    const code = this.codes.shift();
    if (code !== undefined) return Promise.resolve(code);
    if (this.socket.closed) return Promise.resolve(0);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Resolves once the kernel has taken `data`. */
  written(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  async command(line: string): Promise<number> {
    await this.written(`${line}\r\n`);
    return this.reply();
  }

  async quit(): Promise<void> {
    await this.command("QUIT");
    this.socket.end();
  }
}

/**
 * A primary that keeps a digest of each message instead of the message (from its Subject on: the
 * relay's Received header comes first), and that can stop reading a message part way through:
 * its TCP window closes, and the relay's delivery waits as for a slow primary.
 */
class DigestPrimary {
  port = 0;
  private readonly server: SMTPServer;
  private readonly digests = new Map<string, string>();
  private readonly arrivals: Array<() => void> = [];
  private hold: { afterBytes: number; reached: (resume: () => void) => void } | undefined;

  private constructor() {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["AUTH", "STARTTLS"],
      logger: false,
      size: 300 * 2 ** 20,
      onData: (stream, session, callback) => {
        const hash = createHash("sha256");
        let head: Buffer | undefined = Buffer.alloc(0);
        let bytes = 0;
        stream.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (head) {
            head = Buffer.concat([head, chunk]);
            const subject = head.indexOf("Subject: ");
            if (subject < 0) return;
            hash.update(head.subarray(subject));
            head = undefined;
          } else {
            hash.update(chunk);
          }
          const hold = this.hold;
          if (hold && bytes >= hold.afterBytes) {
            this.hold = undefined;
            stream.pause();
            hold.reached(() => stream.resume());
          }
        });
        stream.on("end", () => {
          for (const recipient of session.envelope.rcptTo) this.digests.set(recipient.address, hash.digest("hex"));
          for (const arrived of this.arrivals.splice(0)) arrived();
          callback();
        });
      },
    });
  }

  static async start(): Promise<DigestPrimary> {
    const primary = new DigestPrimary();
    await new Promise<void>((resolve, reject) => {
      primary.server.server.once("error", reject);
      primary.server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = primary.server.server.address();
    primary.port = typeof address === "object" && address ? address.port : 0;
    return primary;
  }

  /** Stop reading the next message after `bytes` of it; resolves then, with what lets it go on. */
  holdAfter(bytes: number): Promise<() => void> {
    return new Promise((reached) => {
      this.hold = { afterBytes: bytes, reached };
    });
  }

  /** The SHA-256 of the message for `recipient`, once it has arrived. */
  async digestOf(recipient: string, timeoutMs: number): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.digests.has(recipient) && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.arrivals.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.digests.get(recipient);
  }

  close(): Promise<void> {
    (this.server.options as { closeTimeout?: number }).closeTimeout = 0;
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
