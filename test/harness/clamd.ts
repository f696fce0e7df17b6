// A real clamd (Debian clamav-daemon) for tests, with a signature database the test writes itself:
// the EICAR test file by hash and a pattern of our own, so nothing is downloaded.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { eventually, freePort } from "./workspace.ts";

/** The EICAR antivirus test file (68 bytes), built from parts so this source is not flagged. */
export const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/** A string our own .ndb signature matches anywhere in a scanned file. */
export const TEST_PATTERN = "mxwarden-test-malware-pattern-0f3c9a";

function clamdBinary(): string {
  for (const path of ["/usr/sbin/clamd", "/usr/bin/clamd"]) if (existsSync(path)) return path;
  throw new Error("clamd not found; run 'make deps' (Debian package clamav-daemon)");
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    socket.once("connect", () => socket.write("zPING\0"));
    socket.on("data", (data) => {
      reply += data.toString();
    });
    socket.once("close", () => resolve(reply.startsWith("PONG")));
    socket.once("error", () => resolve(false));
  });
}

/** The test's own signature database, as files: the EICAR test file by hash, EICAR and TEST_PATTERN anywhere. */
export function testSignatureFiles(): Record<string, string> {
  const eicarMd5 = createHash("md5").update(EICAR).digest("hex");
  return {
    "mxwarden-test.hdb": `${eicarMd5}:${EICAR.length}:Eicar-Test-Signature\n`,
    // Body signatures (like ClamAV's own EICAR one) also match inside a text body, where a hash cannot.
    "mxwarden-test.ndb": [
      `Eicar-Test-Pattern:0:*:${Buffer.from(EICAR).toString("hex")}`,
      `Mxwarden.Test.Pattern:0:*:${Buffer.from(TEST_PATTERN).toString("hex")}`,
      "",
    ].join("\n"),
  };
}

export class TestClamd {
  readonly port: number;
  private readonly config: string;
  private readonly dir: string;
  private process: TestProcess | undefined;

  private constructor(port: number, dir: string, config: string) {
    this.port = port;
    this.dir = dir;
    this.config = config;
  }

  static async start(dir: string): Promise<TestClamd> {
    const db = join(dir, "db");
    mkdirSync(db, { recursive: true });
    for (const [file, content] of Object.entries(testSignatureFiles())) writeFileSync(join(db, file), content);
    const port = await freePort();
    const config = join(dir, "clamd.conf");
    writeFileSync(
      config,
      [
        "Foreground true",
        `TCPSocket ${port}`,
        "TCPAddr 127.0.0.1",
        `DatabaseDirectory ${db}`,
        `LogFile ${join(dir, "clamd.log")}`,
        `PidFile ${join(dir, "clamd.pid")}`,
        "StreamMaxLength 60M",
        "ScanMail true",
        "ScanArchive true",
        "",
      ].join("\n"),
    );
    const clamd = new TestClamd(port, dir, config);
    await clamd.resume();
    return clamd;
  }

  async resume(): Promise<void> {
    this.process = new TestProcess(clamdBinary(), ["--config-file", this.config], { logFile: join(this.dir, "clamd.out") });
    await eventually("clamd to answer PING", () => ping(this.port), 60_000, 100);
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }
}
