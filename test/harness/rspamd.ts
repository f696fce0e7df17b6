// A real rspamd (Debian package) for tests, offline: the stock rules with our own listener,
// logging and action thresholds, and a DNS server that does not exist so nothing leaves the host.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { eventually, freePort, portOpen } from "./workspace.ts";

/** The GTUBE test string every spam filter flags. */
export const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-" + "ANTI-UBE-TEST-EMAIL*C.34X";

export class TestRspamd {
  readonly port: number;
  private readonly dir: string;
  private process: TestProcess | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(dir: string): Promise<TestRspamd> {
    if (!existsSync("/etc/rspamd/common.conf")) throw new Error("rspamd not installed; run 'make deps' (Debian package rspamd)");
    mkdirSync(join(dir, "local.d"), { recursive: true });
    mkdirSync(join(dir, "db"), { recursive: true });
    const rspamd = new TestRspamd(await freePort(), dir);
    writeFileSync(
      join(dir, "rspamd.conf"),
      [
        '.include "$CONFDIR/common.conf"',
        "options {",
        `  pidfile = "${join(dir, "rspamd.pid")}";`,
        '  .include "$CONFDIR/options.inc"',
        "  disable_hyperscan = true;",
        "}",
        `logging { type = "file"; filename = "${join(dir, "rspamd.log")}"; level = "warning"; }`,
        'worker "normal" {',
        `  bind_socket = "127.0.0.1:${rspamd.port}";`,
        '  .include "$CONFDIR/worker-normal.inc"',
        "  count = 1;",
        "}",
        "",
      ].join("\n"),
    );
    // Port 9 on loopback: every DNS query fails at once, offline and deterministic. In local.d, the
    // only place rspamd merges it into the stock options' dns block (a second dns block is ignored).
    writeFileSync(join(dir, "local.d", "options.inc"), 'dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }\n');
    // Fixed thresholds (greylisting is mxwarden's own job, not rspamd's here).
    writeFileSync(join(dir, "local.d", "actions.conf"), "reject = 15;\nadd_header = 3;\ngreylist = null;\nrewrite_subject = null;\n");
    await rspamd.resume();
    return rspamd;
  }

  async resume(): Promise<void> {
    const vars = [`CONFDIR=/etc/rspamd`, `LOCAL_CONFDIR=${this.dir}`, `DBDIR=${join(this.dir, "db")}`, `RUNDIR=${this.dir}`, `LOGDIR=${this.dir}`];
    this.process = new TestProcess(
      "rspamd",
      ["-f", "-i", "-u", "root", "-g", "root", "-c", join(this.dir, "rspamd.conf"), ...vars.flatMap((v) => ["--var", v])],
      {
        logFile: join(this.dir, "rspamd.out"),
      },
    );
    // rspamd compiles its rules before it listens: tens of seconds on a small machine.
    await eventually("rspamd to listen", () => portOpen(this.port), 120_000, 200);
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }
}
