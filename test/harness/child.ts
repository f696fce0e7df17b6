// A child process under test: its output is kept (and written to a log file for post-mortems),
// and tests wait for lines it prints instead of sleeping.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";

export class TestProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly log: WriteStream | undefined;
  private readonly watchers: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  private partial = { out: "", err: "" };

  constructor(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; logFile?: string; cwd?: string } = {}) {
    this.log = options.logFile ? createWriteStream(options.logFile, { flags: "a" }) : undefined;
    this.child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    // Output can still arrive after "exit" (buffered, or from a grandchild holding the pipe):
    // the log ends when the pipes close, not when the process exits.
    this.child.once("close", () => this.log?.end());
    this.child.once("error", (err) => {
      this.log?.write(`spawn error: ${err.message}\n`);
      this.onLine(`spawn error: ${err.message}`);
    });
    for (const stream of ["out", "err"] as const) {
      const source = stream === "out" ? this.child.stdout : this.child.stderr;
      source?.setEncoding("utf8");
      source?.on("data", (chunk: string) => {
        // One write per chunk, not per line: a relay under benchmark load prints thousands of
        // lines a second, and this process shares the machine's cores with it.
        if (this.log && !this.log.writableEnded) this.log.write(chunk);
        const text = this.partial[stream] + chunk;
        const parts = text.split("\n");
        this.partial[stream] = parts.pop() ?? "";
        for (const line of parts) this.onLine(line);
      });
    }
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("process did not start");
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first line (already printed or still to come) that matches. */
  waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.lines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; last lines:\n${this.lines.slice(-15).join("\n")}`)),
        timeoutMs,
      );
      const onExit = (): void => {
        clearTimeout(timer);
        reject(new Error(`process exited before printing ${pattern}; last lines:\n${this.lines.slice(-15).join("\n")}`));
      };
      void this.exited.then(onExit);
      this.watchers.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it does not exit in time. */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  async kill9(): Promise<void> {
    if (this.running) this.child.kill("SIGKILL");
    await this.exited;
  }

  private onLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 20_000) this.lines.splice(0, 10_000);
    for (let i = this.watchers.length - 1; i >= 0; i--) {
      const watcher = this.watchers[i];
      if (watcher?.pattern.test(line)) {
        this.watchers.splice(i, 1);
        watcher.resolve(line);
      }
    }
  }
}
