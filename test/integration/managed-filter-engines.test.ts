// The configuration the operator renders for a managed clamd and rspamd (clamd-objects.ts,
// rspamd-objects.ts), run by Debian's clamd and rspamd on this host as the stock images' users, the
// way the pods run them: clamd with a ConfigMap's layout as its database directory (the kubelet's
// ..data symlinks) finds the test's signature, rspamd with its LOCAL_CONFDIR from the ConfigMap
// answers /ping and flags GTUBE. Only the pod's paths and ports are moved into a temporary
// directory. The pods themselves run in test/integration/cluster-filters.test.ts.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { clamdConfig, CLAMD_GROUP, CLAMD_USER } from "../../operator/src/render/clamd-objects.ts";
import { rspamdConfig, rspamdOptions, RSPAMD_GROUP, RSPAMD_USER } from "../../operator/src/render/rspamd-objects.ts";
import { TestProcess } from "../harness/child.ts";
import { EICAR, TEST_PATTERN, testSignatureFiles } from "../harness/clamd.ts";
import { GTUBE } from "../harness/rspamd.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

const asRoot = process.getuid?.() === 0;

/** The command as the given user when this test runs as root (it does under `make test`), else as is. */
function asUser(user: number, group: number, command: string[]): [string, string[]] {
  if (!asRoot) return [command[0] as string, command.slice(1)];
  return ["setpriv", [`--reuid=${user}`, `--regid=${group}`, "--clear-groups", ...command]];
}

/** A directory as the kubelet mounts a ConfigMap: the files behind a ..data symlink. */
function configMapVolume(dir: string, files: Record<string, string>): void {
  const version = join(dir, "..2026_12_05_00_00_00.000000001");
  mkdirSync(version, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(version, name), content);
  symlinkSync("..2026_12_05_00_00_00.000000001", join(dir, "..data"));
  for (const name of Object.keys(files)) symlinkSync(join("..data", name), join(dir, name));
}

/** clamd's answer to one INSTREAM of `body`. */
function scan(port: number, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    socket.once("connect", () => {
      const data = Buffer.from(body);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(data.length);
      socket.end(Buffer.concat([Buffer.from("zINSTREAM\0"), length, data, Buffer.alloc(4)]));
    });
    socket.on("data", (chunk) => {
      reply += chunk.toString();
    });
    socket.once("close", () => resolve(reply.replace(/\0$/, "")));
    socket.once("error", reject);
  });
}

describe("the managed engines' rendered configuration, run by Debian's clamd and rspamd as the stock images' users", () => {
  const work = tempDir("managed-filter-engines");
  let clamd: TestProcess | undefined;
  let rspamd: TestProcess | undefined;
  let clamdPort = 0;
  let rspamdPort = 0;

  before(async () => {
    chmodSync(work.path, 0o755);
    // clamd: the rendered clamd.conf with the pod's database directory, /tmp and port moved here.
    const db = join(work.path, "clamd-db");
    configMapVolume(db, testSignatureFiles());
    const clamdTmp = join(work.path, "clamd-tmp");
    mkdirSync(clamdTmp, { mode: 0o1777 });
    chmodSync(clamdTmp, 0o1777);
    clamdPort = await freePort();
    const conf = join(work.path, "clamd.conf");
    writeFileSync(
      conf,
      clamdConfig()
        .replace(/^TCPSocket \d+$/m, `TCPSocket ${clamdPort}\nTCPAddr 127.0.0.1`)
        .replace(/^DatabaseDirectory .*$/m, `DatabaseDirectory ${db}`)
        .replace(/^TemporaryDirectory .*$/m, `TemporaryDirectory ${clamdTmp}`),
    );
    const [clamdCommand, clamdArgs] = asUser(CLAMD_USER, CLAMD_GROUP, ["clamd", "--foreground", `--config-file=${conf}`]);
    clamd = new TestProcess(clamdCommand, clamdArgs, { logFile: join(work.path, "clamd.out") });

    // rspamd: the rendered main file and local.d from the ConfigMap's layout; DBDIR and RUNDIR here.
    const confDir = join(work.path, "rspamd-conf");
    mkdirSync(join(confDir, "local.d"), { recursive: true });
    rspamdPort = await freePort();
    writeFileSync(join(confDir, "rspamd.conf"), rspamdConfig(1).replace(/bind_socket = "\*:\d+";/, `bind_socket = "127.0.0.1:${rspamdPort}";`));
    // Port 9 on loopback: every DNS query fails at once, offline and deterministic.
    writeFileSync(join(confDir, "local.d", "options.inc"), `${rspamdOptions("127.0.0.1:9").trimEnd()}\n`);
    const writable = ["rspamd-db", "rspamd-run"].map((name) => join(work.path, name));
    for (const dir of writable) {
      mkdirSync(dir);
      chmodSync(dir, 0o1777);
    }
    const [rspamdCommand, rspamdArgs] = asUser(RSPAMD_USER, RSPAMD_GROUP, [
      "rspamd",
      "-f",
      "-c",
      join(confDir, "rspamd.conf"),
      "--var",
      `LOCAL_CONFDIR=${confDir}`,
      "--var",
      `DBDIR=${writable[0]}`,
      "--var",
      `RUNDIR=${writable[1]}`,
    ]);
    rspamd = new TestProcess(rspamdCommand, rspamdArgs, { logFile: join(work.path, "rspamd.out") });
  });

  after(async () => {
    await clamd?.stop();
    await rspamd?.stop();
    work.remove();
  });

  it("clamd loads the signatures from a ConfigMap's layout and finds the test pattern and EICAR", async () => {
    await eventually(
      "clamd to answer",
      () =>
        scan(clamdPort, "clean")
          .then((reply) => reply === "stream: OK")
          .catch(() => false),
      60_000,
      200,
    );
    assert.equal(await scan(clamdPort, `hello ${TEST_PATTERN} bye`), "stream: Mxwarden.Test.Pattern.UNOFFICIAL FOUND");
    assert.match(await scan(clamdPort, EICAR), /^stream: Eicar-Test-(Signature|Pattern)\.UNOFFICIAL FOUND$/);
  });

  it("rspamd answers /ping on its normal worker and rejects GTUBE", async () => {
    // rspamd compiles its rules before it listens: tens of seconds on a small machine.
    await eventually(
      "rspamd to answer /ping",
      () =>
        fetch(`http://127.0.0.1:${rspamdPort}/ping`, { signal: AbortSignal.timeout(2000) })
          .then(async (res) => (await res.text()).trim() === "pong")
          .catch(() => false),
      180_000,
      500,
    );
    const res = await fetch(`http://127.0.0.1:${rspamdPort}/checkv2`, { method: "POST", body: `Subject: test\r\n\r\n${GTUBE}\r\n` });
    const result = (await res.json()) as { action: string };
    assert.equal(result.action, "reject");
  });
});
