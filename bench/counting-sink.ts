// The primary every server relays to: Postfix's smtp-sink, dumping each transaction to its own file
// in memory (/dev/shm), so that 1 GB of 100 KB messages costs no disk I/O that would compete with
// the fsyncs of the server under test. It can be stopped and started again on its port.
// (Its `-c` counter would need no files, but it is block-buffered on a pipe.)

import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestProcess } from "../test/harness/child.ts";
import { eventually, freePort, portOpen } from "../test/harness/workspace.ts";

function smtpSinkBinary(): string {
  for (const dir of ["/usr/sbin", "/usr/bin"]) if (existsSync(join(dir, "smtp-sink"))) return join(dir, "smtp-sink");
  throw new Error("smtp-sink not found; run 'make deps' (Debian package postfix)");
}

export class CountingSink {
  readonly port: number;
  private readonly dumpDir: string;
  private process: TestProcess | undefined;
  private runs = 0;

  private constructor(port: number, dumpDir: string) {
    this.port = port;
    this.dumpDir = dumpDir;
  }

  static async start(): Promise<CountingSink> {
    const memory = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
    const sink = new CountingSink(await freePort(), mkdtempSync(join(memory, "mxwarden-bench-sink-")));
    // smtp-sink drops to "nobody" when run as root, and must still write there.
    chmodSync(sink.dumpDir, 0o777);
    await sink.resume();
    return sink;
  }

  /** Messages received so far. */
  get received(): number {
    return readdirSync(this.dumpDir).length;
  }

  async resume(): Promise<void> {
    // Each run its own file prefix: a new smtp-sink within the same second would pick the same names.
    const pattern = `${this.dumpDir}/${++this.runs}-%s.`;
    const args = [...(process.getuid?.() === 0 ? ["-u", "nobody"] : []), "-d", pattern, `127.0.0.1:${this.port}`, "256"];
    this.process = new TestProcess(smtpSinkBinary(), args);
    await eventually("smtp-sink to listen", () => portOpen(this.port), 10_000, 50);
  }

  /** Stop listening: the primary goes down. */
  async pause(): Promise<void> {
    await this.process?.stop();
  }

  async stop(): Promise<void> {
    await this.pause();
    rmSync(this.dumpDir, { recursive: true, force: true });
  }

  /**
   * Resolves once `count` messages have arrived, with the milliseconds since `since`. Listing a
   * directory of 20,000 dump files every 50 ms took a good part of a core from the server under
   * test (docs/benchmarks.md, round 5), so the listings get rarer while the end is far: the next
   * one comes after half the time the remaining messages need at the rate seen so far, between
   * 50 ms and 1 s.
   */
  async waitFor(count: number, since: number, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let previous = { at: performance.now(), received: this.received };
    let delay = 50;
    while (previous.received < count) {
      if (performance.now() > deadline) throw new Error(`${count} messages at the primary: not within ${timeoutMs} ms (${previous.received} arrived)`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      const now = { at: performance.now(), received: this.received };
      const perMs = (now.received - previous.received) / Math.max(1, now.at - previous.at);
      delay = perMs > 0 ? Math.min(1000, Math.max(50, (count - now.received) / perMs / 2)) : Math.min(1000, delay * 2);
      previous = now;
    }
    return performance.now() - since;
  }
}
