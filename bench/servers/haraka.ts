// Haraka (from the npm registry, pinned in bench/haraka/package-lock.json and installed under .tmp/bench/haraka by
// `make deps-bench`) as a backup MX: the relay plugin accepts the one domain (dest_domains) and
// routes it to the primary (force_routing with a nexthop); accepted mail goes through Haraka's
// outbound queue, whose files are fsynced before the 250. One process, as it runs by default.

import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { TestProcess } from "../../test/harness/child.ts";
import { eventually, freePort, peakRss, portOpen, repoRoot } from "../../test/harness/workspace.ts";
import type { BackupMx, BackupMxOptions } from "./backup-mx.ts";

const run = promisify(execFile);

export const HARAKA_DIR = join(repoRoot, ".tmp", "bench", "haraka", "node_modules", "Haraka");

/** The installed Haraka's version, or an error saying how to install it. */
export function harakaVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(HARAKA_DIR, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    throw new Error(`Haraka not installed in ${HARAKA_DIR}; run 'make deps-bench'`);
  }
}

export class HarakaBackupMx implements BackupMx {
  readonly name = "Haraka";
  readonly port: number;
  private readonly process: TestProcess;

  private constructor(port: number, process: TestProcess) {
    this.port = port;
    this.process = process;
  }

  static async start(options: BackupMxOptions): Promise<HarakaBackupMx> {
    harakaVersion();
    const port = await freePort();
    const home = join(options.dir, "haraka");
    const config = join(home, "config");
    // `haraka -i` lays out an instance with the stock configuration; ours overrides a few files.
    await run(process.execPath, [join(HARAKA_DIR, "bin", "haraka"), "-i", home], { timeout: 60_000 });
    mkdirSync(join(home, "queue"), { recursive: true });
    const files: Record<string, string> = {
      "smtp.ini": `listen=127.0.0.1:${port}\n`,
      me: "haraka-backup.test\n",
      plugins: "relay\n",
      "relay.ini": "[relay]\nacl=false\nforce_routing=true\ndest_domains=true\n",
      "relay_dest_domains.ini": `[domains]\n${options.domain} = { "action": "accept", "nexthop": "127.0.0.1:${options.primaryPort}" }\n`,
      "outbound.ini": "enable_tls=false\n",
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(config, name), text);
    // The size limit (25 MiB by default) as for the others: 60 MiB.
    const connectionIni = join(config, "connection.ini");
    writeFileSync(connectionIni, readFileSync(connectionIni, "utf8").replace(/^bytes=\d+$/m, `bytes=${60 * 2 ** 20}`));
    const child = new TestProcess(process.execPath, [join(HARAKA_DIR, "bin", "haraka"), "-c", home], { logFile: join(home, "haraka.log"), cwd: home });
    const haraka = new HarakaBackupMx(port, child);
    await eventually(
      "Haraka to listen",
      async () => {
        if (!child.running) throw new Error(`Haraka exited: ${child.lines.slice(-10).join("\n")}`);
        return portOpen(port);
      },
      60_000,
      100,
    );
    return haraka;
  }

  /** SIGHUP: Haraka retries its temp-fail queue at once. */
  async flush(): Promise<void> {
    this.process.signal("SIGHUP");
  }

  peakRss(): number {
    return peakRss(this.process.pid);
  }

  processes(): number[] {
    return [this.process.pid];
  }

  async stop(): Promise<void> {
    await this.process.stop(30_000);
  }
}
