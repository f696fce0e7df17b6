// A scriptable primary MX: a real SMTP server (smtp-server) whose answer per recipient the test
// decides, and which records every message it accepts. It can go down and come back on its port.

import { createHash } from "node:crypto";
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from "smtp-server";

export interface ReceivedMessage {
  from: string;
  to: string[];
  body: Buffer;
  heloName: string;
  /** The transaction ran inside STARTTLS. */
  secure: boolean;
  /** MAIL FROM's BODY parameter as the primary saw it: "7bit" (none given) or "8bitmime". */
  bodyType: string;
}

/** undefined accepts; otherwise the SMTP code and text to answer the RCPT with. */
export type RecipientRule = (address: string) => { code: number; message: string } | undefined;

function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

export class TestPrimary {
  readonly messages: ReceivedMessage[] = [];
  port = 0;
  recipientRule: RecipientRule = () => undefined;
  private server: SMTPServer | undefined;
  private waiters: Array<() => void> = [];

  /** With `tls`, the primary offers STARTTLS with that key and certificate (PEM). */
  private tls: { key: Buffer; cert: Buffer } | undefined;

  static async start(port = 0, tls?: { key: Buffer; cert: Buffer }): Promise<TestPrimary> {
    const primary = new TestPrimary();
    primary.tls = tls;
    await primary.listen(port);
    return primary;
  }

  async listen(port = this.port): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: this.tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
      ...(this.tls ?? {}),
      logger: false,
      size: 300 * 1024 * 1024,
      onRcptTo: (address: SMTPServerAddress, _session: SMTPServerSession, callback: (err?: Error | null) => void) => {
        const rule = this.recipientRule(address.address);
        callback(rule ? smtpError(rule.code, rule.message) : null);
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => {
          this.messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            body: Buffer.concat(chunks),
            heloName: session.hostNameAppearsAs,
            secure: session.secure,
            bodyType: (session.envelope as { bodyType?: string }).bodyType ?? "7bit",
          });
          for (const wake of this.waiters.splice(0)) wake();
          callback();
        });
      },
    });
    // A relay killed with -9 resets the connections it kept open to its next hop: normal for a
    // primary, and without a listener smtp-server's "error" event would crash the test process.
    server.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      server.server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    const address = server.server.address();
    this.port = typeof address === "object" && address ? address.port : port;
    this.server = server;
  }

  /** Go down: stop listening and cut every open connection. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    (server.options as { closeTimeout?: number }).closeTimeout = 0;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Resolves once `count` messages arrived in total. */
  async waitForMessages(count: number, timeoutMs = 60_000): Promise<ReceivedMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`primary received ${this.messages.length} of ${count} messages within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.messages;
  }
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The value of the first header with this name in a message. */
export function headerValue(message: Buffer | string, name: string): string | undefined {
  const text = typeof message === "string" ? message : message.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const head = (end === -1 ? text : text.slice(0, end)).replace(/\r\n[ \t]+/g, " ");
  const line = head.split("\r\n").find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(name.length + 1).trim();
}
