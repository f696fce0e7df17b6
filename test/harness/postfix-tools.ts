// Postfix's smtp-sink (a real, fast SMTP server that dumps each message to a file) and
// smtp-source (a real SMTP load generator), from the Debian postfix package.

import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { eventually, freePort, portOpen } from "./workspace.ts";

function postfixTool(name: string): string {
  for (const dir of ["/usr/sbin", "/usr/bin", "/usr/lib/postfix"]) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} not found; run 'make deps' (Debian package postfix)`);
}

export class SmtpSink {
  readonly port: number;
  readonly dumpDir: string;
  private process: TestProcess | undefined;
  private readonly flags: string[];

  private constructor(port: number, dumpDir: string, flags: string[]) {
    this.port = port;
    this.dumpDir = dumpDir;
    this.flags = flags;
  }

  /**
   * Start a sink on `port` (or a free one) that dumps every transaction to its own files.
   * `flags` are smtp-sink's own, e.g. ["-e"] (no ESMTP) or ["-p"] (no PIPELINING).
   */
  static async start(port?: number, flags: string[] = []): Promise<SmtpSink> {
    // Under the system temp dir: when run as root, smtp-sink drops to "nobody", which must be
    // able to reach the dump directory (the test's own scratch dirs are private).
    const sink = new SmtpSink(port ?? (await freePort()), mkdtempSync(join(tmpdir(), "mxwarden-sink-")), flags);
    chmodSync(sink.dumpDir, 0o777);
    await sink.resume();
    return sink;
  }

  async resume(): Promise<void> {
    const args = [...(process.getuid?.() === 0 ? ["-u", "nobody"] : []), ...this.flags, "-d", `${this.dumpDir}/%s.`, `127.0.0.1:${this.port}`, "256"];
    this.process = new TestProcess(postfixTool("smtp-sink"), args);
    await eventually("smtp-sink to listen", () => portOpen(this.port), 10_000, 50);
  }

  /** Stop the sink and remove its dump files (read them before). */
  async stop(): Promise<void> {
    await this.process?.stop();
    rmSync(this.dumpDir, { recursive: true, force: true });
  }

  /** The Message-Id of every dumped transaction, duplicates included. */
  messageIds(): string[] {
    const ids: string[] = [];
    for (const file of readdirSync(this.dumpDir)) {
      const text = readFileSync(join(this.dumpDir, file), "latin1");
      const match = /^Message-Id:\s*(<[^>\r\n]*>)/im.exec(text);
      if (match?.[1]) ids.push(match[1]);
    }
    return ids;
  }

  dumpCount(): number {
    return readdirSync(this.dumpDir).length;
  }
}

/**
 * How smtp-source uses its connections: a sending MTA with a queue for us keeps its connection for
 * the next message ("reuse", -d); most of an MX's traffic is many senders with one message each.
 */
export type ConnectionUse = "reuse" | "per-message";

export interface SourceOptions {
  port: number;
  messages: number;
  /** SMTP sessions in parallel: with a new connection per message, concurrent senders. */
  sessions: number;
  /** Body length in bytes (headers excluded). */
  length: number;
  from: string;
  to: string;
  /** Default "reuse". */
  connection?: ConnectionUse;
}

/** Run smtp-source to completion; resolves with its wall time in milliseconds. */
export function smtpSource(options: SourceOptions): Promise<number> {
  const started = performance.now();
  const args = [
    ...((options.connection ?? "reuse") === "reuse" ? ["-d"] : []),
    "-s",
    String(options.sessions),
    "-m",
    String(options.messages),
    "-l",
    String(options.length),
    "-f",
    options.from,
    "-t",
    options.to,
    "-M",
    "client.test",
    `127.0.0.1:${options.port}`,
  ];
  return new Promise((resolve, reject) => {
    execFile(postfixTool("smtp-source"), args, { timeout: 600_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`smtp-source failed: ${err.message} ${stderr}`));
      else resolve(performance.now() - started);
    });
  });
}
