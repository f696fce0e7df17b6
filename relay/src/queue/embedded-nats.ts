// Without --nats the relay runs its own single nats-server with JetStream under --data: the
// embedded mode of `make run` and of single-host installs. The server is supervised (restarted
// if it dies) and configured to fsync before every acknowledgement, like production.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../log.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export function findNatsServer(): string {
  const fromEnv = process.env.MXWARDEN_NATS_SERVER;
  if (fromEnv) return fromEnv;
  const pinned = join(repoRoot, ".tools/bin/nats-server");
  return existsSync(pinned) ? pinned : "nats-server";
}

/** A loopback TCP port nobody listens on right now. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolvePort(port));
    });
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

export class EmbeddedNats {
  private child: ChildProcess | undefined;
  private stopping = false;
  private readonly dir: string;
  private readonly log: Logger;
  url = "";

  constructor(dataDir: string, log: Logger) {
    this.dir = resolve(dataDir, "nats");
    this.log = log.child({ component: "embedded-nats" });
  }

  async start(): Promise<string> {
    await mkdir(join(this.dir, "jetstream"), { recursive: true });
    await this.stopOrphan();
    const port = await freeLoopbackPort();
    const config = [
      `listen: "127.0.0.1:${port}"`,
      `pid_file: "${join(this.dir, "nats-server.pid")}"`,
      "jetstream {",
      `  store_dir: "${join(this.dir, "jetstream")}"`,
      "  sync_interval: always",
      "}",
      "",
    ].join("\n");
    await writeFile(join(this.dir, "nats-server.conf"), config);
    this.url = `nats://127.0.0.1:${port}`;
    this.spawnServer();
    return this.url;
  }

  /** A relay killed with SIGKILL leaves its server running and holding the store: stop it. */
  private async stopOrphan(): Promise<void> {
    const pidFile = join(this.dir, "nats-server.pid");
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
    let command = "";
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return;
    }
    if (!command.includes("nats-server") || !command.includes(this.dir)) return;
    this.log.warn("stopping a nats-server left behind by a previous relay", { pid });
    process.kill(pid, "SIGTERM");
    if (!(await waitForExit(pid, 15_000))) process.kill(pid, "SIGKILL");
    await waitForExit(pid, 5000);
  }

  private spawnServer(): void {
    const binary = findNatsServer();
    const child = spawn(binary, ["-c", join(this.dir, "nats-server.conf")], { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) if (/\[(ERR|FTL|WRN)\]/.test(line)) this.log.warn("nats-server", { line: line.trim() });
    });
    child.on("error", (err) => this.log.error("cannot start nats-server; run 'make deps' or set MXWARDEN_NATS_SERVER", { binary, error: err }));
    child.on("exit", (code, signal) => {
      if (this.stopping) return;
      this.log.error("embedded nats-server exited; restarting", { code, signal });
      setTimeout(() => {
        if (!this.stopping) this.spawnServer();
      }, 1000).unref();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.pid === undefined) return;
    child.kill("SIGTERM");
    if (!(await waitForExit(child.pid, 15_000))) child.kill("SIGKILL");
  }
}
