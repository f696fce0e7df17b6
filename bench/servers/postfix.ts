// Postfix (the Debian package) as a backup MX: a private instance with its own configuration,
// queue and data directories, started with `postfix -c DIR start` and stopped the same way. It
// relays one domain to the primary through transport_maps and refuses everything else
// (reject_unauth_destination); its queue files are fsynced before the 250, as always in Postfix.

import { execFile } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { eventually, freePort, portOpen } from "../../test/harness/workspace.ts";
import { pidFromFile } from "../cpu.ts";
import type { BackupMx, BackupMxOptions } from "./backup-mx.ts";

const run = promisify(execFile);

// The services a relay needs (pickup: postqueue -f checks it is up); nothing chrooted, so the instance needs no copies of /etc.
const MASTER_CF = (port: number): string =>
  `
127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`.trimStart();

async function postfixUser(): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all(["-u", "-g"].map(async (flag) => Number((await run("id", [flag, "postfix"])).stdout.trim())));
  if (uid === undefined || gid === undefined || Number.isNaN(uid) || Number.isNaN(gid))
    throw new Error("no postfix user; run 'make deps' (Debian package postfix)");
  return { uid, gid };
}

/** A Postfix set up for more than relaying: its name in the tables, its settings and its helpers. */
export interface PostfixVariant {
  name: string;
  /** main.cf parameters added to the plain backup MX's, or replacing them. */
  settings: Record<string, string>;
  /** Processes outside Postfix that work for it (its milter's filter engines): their CPU is its own too. */
  helpers: () => number[];
}

const PLAIN: PostfixVariant = { name: "Postfix", settings: {}, helpers: () => [] };

export class PostfixBackupMx implements BackupMx {
  readonly name: string;
  readonly port: number;
  private readonly configDir: string;
  private readonly queueDir: string;
  /** Holds the short name of the queue directory (see start()). */
  private readonly shortNames: string;

  private readonly helpers: () => number[];

  private constructor(port: number, configDir: string, queueDir: string, shortNames: string, variant: PostfixVariant) {
    this.name = variant.name;
    this.helpers = variant.helpers;
    this.port = port;
    this.configDir = configDir;
    this.queueDir = queueDir;
    this.shortNames = shortNames;
  }

  static async start(options: BackupMxOptions, variant: PostfixVariant = PLAIN): Promise<PostfixBackupMx> {
    const port = await freePort();
    const configDir = join(options.dir, "postfix", "etc");
    const dataDir = join(options.dir, "postfix", "data");
    const storedQueue = join(options.dir, "postfix", "queue");
    for (const dir of [configDir, storedQueue, dataDir]) mkdirSync(dir, { recursive: true });
    // Postfix connects to some of its sockets (public/postlog) by their full path, which a unix
    // socket address limits to 107 bytes: a checkout in a deep directory went past it. The queue
    // stays on the scratch directory's disk, where the others keep theirs (fsync costs the same),
    // under a short name in the system's temp directory.
    const shortNames = mkdtempSync(join(tmpdir(), "mxw-pf-"));
    const queueDir = join(shortNames, "q");
    symlinkSync(storedQueue, queueDir);
    // The daemons run as the postfix user and keep their state (locks, caches) in the data directory.
    const owner = await postfixUser();
    if (process.getuid?.() === 0) chownSync(dataDir, owner.uid, owner.gid);
    const settings: Record<string, string> = {
      compatibility_level: "3.6",
      queue_directory: queueDir,
      data_directory: dataDir,
      maillog_file: join(options.dir, "postfix", "maillog"),
      maillog_file_prefixes: options.dir,
      mail_owner: "postfix",
      setgid_group: "postdrop",
      inet_interfaces: "loopback-only",
      inet_protocols: "ipv4",
      myhostname: "postfix-backup.test",
      mydestination: "",
      mynetworks: "127.0.0.0/8",
      local_recipient_maps: "",
      relay_domains: options.domain,
      relay_recipient_maps: "",
      transport_maps: `inline:{ { ${options.domain} = smtp:[127.0.0.1]:${options.primaryPort} } }`,
      // No permit_mynetworks: the load comes from loopback, and must not be allowed to relay anywhere.
      smtpd_relay_restrictions: "reject_unauth_destination",
      smtpd_recipient_restrictions: "reject_unauth_destination",
      message_size_limit: String(60 * 2 ** 20),
      smtp_tls_security_level: "none",
      smtpd_tls_security_level: "none",
      biff: "no",
      ...variant.settings,
    };
    writeFileSync(
      join(configDir, "main.cf"),
      Object.entries(settings)
        .map(([name, value]) => `${name} = ${value}\n`)
        .join(""),
    );
    writeFileSync(join(configDir, "master.cf"), MASTER_CF(port));
    const postfix = new PostfixBackupMx(port, configDir, queueDir, shortNames, variant);
    try {
      await postfix.postfix("check");
      await postfix.postfix("start");
    } catch (err) {
      rmSync(shortNames, { recursive: true, force: true });
      throw err;
    }
    await eventually("Postfix to listen", () => portOpen(port), 30_000, 100);
    return postfix;
  }

  private async postfix(command: string): Promise<void> {
    await run("/usr/sbin/postfix", ["-c", this.configDir, command], { timeout: 60_000 });
  }

  /** Retry the deferred queue now (`postqueue -f`), as an administrator would when the primary is back. */
  async flush(): Promise<void> {
    await run("/usr/sbin/postqueue", ["-c", this.configDir, "-f"], { timeout: 60_000 });
  }

  /** Postfix is many processes; only smtpd and cleanup receive, and they come and go: not measured. */
  peakRss(): number {
    return NaN;
  }

  /** The master daemon (every other Postfix process, smtpd, cleanup, qmgr, smtp, ..., is its child) and the helpers. */
  processes(): number[] {
    return [pidFromFile(join(this.queueDir, "pid", "master.pid")), ...this.helpers()];
  }

  async stop(): Promise<void> {
    await this.postfix("stop").catch(() => undefined);
    await eventually("Postfix to stop", async () => !(await portOpen(this.port)), 30_000, 100);
    rmSync(this.shortNames, { recursive: true, force: true });
  }
}
