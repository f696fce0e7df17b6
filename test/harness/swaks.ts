// swaks, the Swiss Army Knife for SMTP (Debian package swaks), as a real client in tests.

import { execFile } from "node:child_process";

export interface SwaksResult {
  exitCode: number;
  transcript: string;
}

/** Run swaks with these arguments; never rejects on an SMTP failure (read exitCode). */
export function swaks(args: string[]): Promise<SwaksResult> {
  return new Promise((resolve, reject) => {
    execFile("swaks", ["--hide-informational", ...args], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(err);
      resolve({ exitCode: typeof err?.code === "number" ? err.code : 0, transcript: stdout + stderr });
    });
  });
}
