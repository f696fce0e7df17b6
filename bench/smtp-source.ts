// The load of the throughput scenarios: Postfix's smtp-source, in one of the two ways mail reaches
// an MX. A sending MTA with a queue for us keeps its connection for the next message (-d); most of
// an MX's traffic is the other way, many senders with one message each, a new connection per
// message. The tests' helper (test/harness/postfix-tools.ts) knows only the first.
//
// smtp-source cannot choose its source address, so every connection comes from 127.0.0.1: the
// servers must not hold one address to a per-client limit (see the connection scenario in run.ts).

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

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
  connection: ConnectionUse;
}

function smtpSourceBinary(): string {
  for (const dir of ["/usr/sbin", "/usr/bin"]) if (existsSync(join(dir, "smtp-source"))) return join(dir, "smtp-source");
  throw new Error("smtp-source not found; run 'make deps' (Debian package postfix)");
}

/** Runs smtp-source to completion; resolves with its wall time in milliseconds. */
export function smtpSource(options: SourceOptions): Promise<number> {
  const started = performance.now();
  const args = [
    ...(options.connection === "reuse" ? ["-d"] : []),
    "-s", String(options.sessions), "-m", String(options.messages), "-l", String(options.length),
    "-f", options.from, "-t", options.to, "-M", "client.test", `127.0.0.1:${options.port}`,
  ];
  return new Promise((resolve, reject) => {
    execFile(smtpSourceBinary(), args, { timeout: 600_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`smtp-source failed: ${err.message} ${stderr}`));
      else resolve(performance.now() - started);
    });
  });
}
