// A raw SMTP client for protocol tests: the test writes commands and reads replies itself, so it
// can send what a well-behaved library never would (relay tricks, pipelined junk, bare LFs).

import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

export interface Reply {
  code: number;
  /** The enhanced status code (RFC 3463) of the last line, if any. */
  status: string | undefined;
  lines: string[];
  text: string;
}

export class SmtpDialogue {
  private socket: Socket | TLSSocket;
  private buffered = "";
  private readonly pending: Array<(reply: Reply) => void> = [];
  private readonly replies: Reply[] = [];
  private closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  /** `localAddress` picks the client's address, e.g. another 127.0.0.0/8 address to look like another host. */
  static open(port: number, host = "127.0.0.1", localAddress?: string): Promise<{ dialogue: SmtpDialogue; greeting: Reply }> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        const dialogue = new SmtpDialogue(socket);
        void dialogue.read().then((greeting) => resolve({ dialogue, greeting }));
      });
    });
  }

  /**
   * Send every write at once (TCP_NODELAY). With Nagle's algorithm a short write that follows a
   * long one waits for the peer's delayed ACK, about 40 ms on Linux.
   */
  noDelay(): void {
    this.socket.setNoDelay(true);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.setEncoding("utf8");
    socket.on("data", (data: string) => this.onData(data));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.closed = true;
      for (const resolve of this.pending.splice(0)) resolve({ code: 0, status: undefined, lines: [], text: "connection closed" });
    });
  }

  private onData(data: string): void {
    this.buffered += data;
    for (;;) {
      const match = /^((?:\d{3}-[^\n]*\n)*)(\d{3})(?: ([^\n]*))?\r?\n/.exec(this.buffered);
      if (!match) return;
      this.buffered = this.buffered.slice(match[0].length);
      const lines = match[0]
        .trimEnd()
        .split(/\r?\n/)
        .map((l) => l.slice(4).trimEnd());
      const last = lines[lines.length - 1] ?? "";
      const reply: Reply = {
        code: Number(match[2]),
        status: /^([245]\.\d{1,3}\.\d{1,3})\b/.exec(last)?.[1],
        lines,
        text: lines.join("\n"),
      };
      const waiter = this.pending.shift();
      if (waiter) waiter(reply);
      else this.replies.push(reply);
    }
  }

  /** The next reply from the server. */
  read(): Promise<Reply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.resolve({ code: 0, status: undefined, lines: [], text: "connection closed" });
    return new Promise((resolve) => this.pending.push(resolve));
  }

  write(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** Upgrade with STARTTLS (the server's certificate is not checked: tests use a self-signed one). */
  async startTls(servername: string): Promise<Reply> {
    const reply = await this.command("STARTTLS");
    if (reply.code !== 220) return reply;
    const plain = this.socket as Socket;
    plain.removeAllListeners("data");
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const tls = tlsConnect({ socket: plain, servername, rejectUnauthorized: false }, () => resolve(tls));
      tls.once("error", reject);
    });
    this.socket = secure;
    this.attach(secure);
    return reply;
  }

  /** DATA with a body in CRLF form, dot-stuffed here; returns the final reply. */
  async data(body: string | Buffer): Promise<Reply> {
    const go = await this.command("DATA");
    if (go.code !== 354) return go;
    const text = Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
    const stuffed = Buffer.from(text.toString("latin1").replace(/(^|\r\n)\./g, "$1.."), "latin1");
    this.write(stuffed);
    this.write(stuffed.subarray(-2).toString() === "\r\n" ? ".\r\n" : "\r\n.\r\n");
    return this.read();
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      await this.command("QUIT");
      this.socket.end();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One complete transaction; returns every reply in order. */
export async function sendMail(
  port: number,
  envelope: { from: string; to: string[]; body: string | Buffer; ehlo?: string },
): Promise<{ mail: Reply; rcpts: Reply[]; data: Reply | undefined }> {
  const { dialogue } = await SmtpDialogue.open(port);
  try {
    await dialogue.command(`EHLO ${envelope.ehlo ?? "client.test"}`);
    const mail = await dialogue.command(`MAIL FROM:<${envelope.from}>`);
    const rcpts: Reply[] = [];
    for (const rcpt of envelope.to) rcpts.push(await dialogue.command(`RCPT TO:<${rcpt}>`));
    const data = mail.code === 250 && rcpts.some((r) => r.code === 250) ? await dialogue.data(envelope.body) : undefined;
    await dialogue.quit();
    return { mail, rcpts, data };
  } finally {
    dialogue.destroy();
  }
}

export function simpleMessage(subject: string, id: string, body = "Hello.\r\n"): string {
  return `From: sender@client.test\r\nTo: someone@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${id}@client.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n${body}`;
}

export interface RcptProbe {
  from: string;
  to: string[];
  /** The client's own address (another 127.0.0.0/8 address looks like another host). */
  client?: string;
  helo?: string;
}

/** EHLO, MAIL FROM and one RCPT TO per address; returns the RCPT replies and hangs up. */
export async function rcptReplies(port: number, probe: RcptProbe): Promise<Reply[]> {
  const { dialogue } = await SmtpDialogue.open(port, "127.0.0.1", probe.client);
  try {
    await dialogue.command(`EHLO ${probe.helo ?? "client.test"}`);
    await dialogue.command(`MAIL FROM:<${probe.from}>`);
    const replies: Reply[] = [];
    for (const to of probe.to) replies.push(await dialogue.command(`RCPT TO:<${to}>`));
    return replies;
  } finally {
    dialogue.destroy();
  }
}

/** The reply to a single RCPT TO (see rcptReplies). */
export async function rcptReply(port: number, probe: Omit<RcptProbe, "to"> & { to: string }): Promise<Reply> {
  const [reply] = await rcptReplies(port, { ...probe, to: [probe.to] });
  if (!reply) throw new Error("no reply to RCPT");
  return reply;
}
