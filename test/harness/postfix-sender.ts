// Real Postfix as the sending MTA of the fault suite: a private instance (its own configuration
// and queue, `postfix -c DIR`) started inside a network namespace, so that it follows the MX
// records of that namespace's DNS server (`ip netns exec` mounts /etc/netns/NAME/resolv.conf over
// /etc/resolv.conf). Messages go in with its sendmail command; its maillog says where each went.
// Its retry timers are seconds instead of minutes, so that a fault suite runs in minutes.

import { execFile, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Namespace } from "./netns.ts";
import { repoRoot } from "./workspace.ts";

const run = promisify(execFile);

// Only what a sending MTA needs; nothing chrooted, so the instance needs no copies of /etc.
const MASTER_CF = `
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

/** Where Postfix's smtp client left one of our messages, from its maillog. */
export interface SendOutcome {
  messageId: string;
  /** status=sent lines: the address of the MX that answered 250 (one per acceptance). */
  sentTo: string[];
  /** The queue id in each 250 ("queued as ..."), in the same order. */
  queueIds: string[];
  bounced: boolean;
  /**
   * Attempts Postfix gave up on after sending the final dot without reading the reply (it logs
   * "message may be sent more than once"): the MX may have taken the message, and the retry can
   * deliver it a second time. SMTP's own duplicate window (RFC 1047), not the relay's.
   */
  ambiguous: number;
}

export class PostfixSender {
  readonly configDir: string;
  readonly maillog: string;
  private readonly shortNames: string;
  private readonly ns: Namespace;

  private constructor(ns: Namespace, configDir: string, maillog: string, shortNames: string) {
    this.ns = ns;
    this.configDir = configDir;
    this.maillog = maillog;
    this.shortNames = shortNames;
  }

  static async start(ns: Namespace, dir: string, hostname: string): Promise<PostfixSender> {
    // Postfix's daemons run as the postfix user: they must be able to walk to their directories.
    for (let d = dir; d.startsWith(repoRoot) && d !== repoRoot; d = dirname(d)) if (existsSync(d)) chmodSync(d, 0o755);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const configDir = join(dir, "etc");
    const dataDir = join(dir, "data");
    const storedQueue = join(dir, "queue");
    for (const d of [configDir, dataDir, storedQueue]) mkdirSync(d, { recursive: true });
    // Unix socket paths are limited to 107 bytes: the queue goes under a short name (see bench/servers/postfix.ts).
    const shortNames = mkdtempSync(join(tmpdir(), "mxw-pfs-"));
    const queueDir = join(shortNames, "q");
    symlinkSync(storedQueue, queueDir);
    const [uid, gid] = await Promise.all(["-u", "-g"].map(async (flag) => Number((await run("id", [flag, "postfix"])).stdout.trim())));
    if (uid === undefined || gid === undefined || Number.isNaN(uid)) throw new Error("no postfix user; run 'make deps' (Debian package postfix)");
    chownSync(dataDir, uid, gid);
    const maillog = join(dir, "maillog");
    const seconds = (s: number): string => `${s}s`;
    writeFileSync(
      join(configDir, "main.cf"),
      [
        "compatibility_level = 3.6",
        `queue_directory = ${queueDir}`,
        `data_directory = ${dataDir}`,
        `maillog_file = ${maillog}`,
        `maillog_file_prefixes = ${dir}`,
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "inet_interfaces = loopback-only",
        "inet_protocols = ipv4",
        `myhostname = ${hostname}`,
        "mydestination =",
        "relayhost =",
        "smtp_host_lookup = dns",
        "smtp_tls_security_level = none",
        // Retry within seconds (Postfix's defaults: 300 s to 4000 s) ...
        `queue_run_delay = ${seconds(2)}`,
        `minimal_backoff_time = ${seconds(2)}`,
        `maximal_backoff_time = ${seconds(4)}`,
        // ... and give up on a dead or silent MX quickly, to try the next one.
        `smtp_connect_timeout = ${seconds(3)}`,
        `smtp_helo_timeout = ${seconds(20)}`,
        `smtp_mail_timeout = ${seconds(20)}`,
        `smtp_rcpt_timeout = ${seconds(20)}`,
        `smtp_data_init_timeout = ${seconds(20)}`,
        `smtp_data_xfer_timeout = ${seconds(30)}`,
        // The wait for the 250 after the final dot: the relays answer within --publish-timeout (10 s).
        `smtp_data_done_timeout = ${seconds(30)}`,
        // Try the primary and then every backup in one attempt (the default stops after two).
        "smtp_mx_session_limit = 5",
        "maximal_queue_lifetime = 1d",
        "bounce_queue_lifetime = 1d",
        "biff = no",
        "",
      ].join("\n"),
    );
    writeFileSync(join(configDir, "master.cf"), MASTER_CF);
    const sender = new PostfixSender(ns, configDir, maillog, shortNames);
    try {
      await ns.exec("/usr/sbin/postfix", ["-c", configDir, "check"]);
      await ns.exec("/usr/sbin/postfix", ["-c", configDir, "start"]);
    } catch (err) {
      rmSync(shortNames, { recursive: true, force: true });
      throw err;
    }
    return sender;
  }

  /** Hand one message to Postfix (its sendmail command; it is queued when this resolves). */
  async send(from: string, to: string, messageId: string, subject: string): Promise<void> {
    const message = [
      `From: <${from}>`,
      `To: <${to}>`,
      `Subject: ${subject}`,
      `Message-ID: ${messageId}`,
      `Date: ${new Date().toUTCString()}`,
      "",
      `Fault suite message ${messageId}.`,
      "",
    ].join("\r\n");
    await new Promise<void>((resolve, reject) => {
      const child = spawn("/usr/sbin/sendmail", ["-C", this.configDir, "-f", from, "-i", "--", to], { stdio: ["pipe", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.once("error", reject);
      child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`sendmail exited ${code}: ${stderr}`))));
      child.stdin.end(message);
    });
  }

  /** Messages still in Postfix's queue (postqueue -j: one JSON object per message). */
  async queued(): Promise<number> {
    const { stdout } = await run("/usr/sbin/postqueue", ["-c", this.configDir, "-j"], { timeout: 30_000 });
    return stdout.split("\n").filter((line) => line.trim() !== "").length;
  }

  /** What the maillog says about each message it has seen, by Message-ID. */
  outcomes(): Map<string, SendOutcome> {
    const text = existsSync(this.maillog) ? readFileSync(this.maillog, "utf8") : "";
    const idByQueueId = new Map<string, string>();
    const outcomes = new Map<string, SendOutcome>();
    for (const line of text.split("\n")) {
      const cleanup = /postfix\/cleanup\[\d+\]: ([0-9A-F]+): message-id=(<[^>]*>)/.exec(line);
      if (cleanup?.[1] && cleanup[2]) {
        idByQueueId.set(cleanup[1], cleanup[2]);
        if (!outcomes.has(cleanup[2])) outcomes.set(cleanup[2], { messageId: cleanup[2], sentTo: [], queueIds: [], bounced: false, ambiguous: 0 });
        continue;
      }
      if (line.includes("may be sent more than once")) {
        const queueId = /postfix\/smtp\[\d+\]: ([0-9A-F]+):/.exec(line)?.[1];
        const outcome = outcomes.get(idByQueueId.get(queueId ?? "") ?? "");
        if (outcome) outcome.ambiguous++;
        continue;
      }
      const smtp = /postfix\/(?:smtp|error|bounce)\[\d+\]: ([0-9A-F]+): to=<[^>]*>, relay=([^,]*),.* status=(sent|bounced)/.exec(line);
      if (smtp?.[1] && smtp[2] && smtp[3]) {
        const outcome = outcomes.get(idByQueueId.get(smtp[1]) ?? "");
        if (!outcome) continue;
        if (smtp[3] === "sent") {
          outcome.sentTo.push(/\[([^\]]+)\]/.exec(smtp[2])?.[1] ?? smtp[2]);
          outcome.queueIds.push(/queued as (\S+)\)/.exec(line)?.[1] ?? "?");
        } else outcome.bounced = true;
      }
    }
    return outcomes;
  }

  async stop(): Promise<void> {
    await this.ns.exec("/usr/sbin/postfix", ["-c", this.configDir, "abort"]).catch(() => undefined);
    rmSync(this.shortNames, { recursive: true, force: true });
  }
}
