// One outbound SMTP connection: greeting, EHLO (HELO when refused), STARTTLS, then transactions
// until it is closed. Written for the delivery hot path (a flush of held mail sends thousands over
// a few connections): with PIPELINING a transaction is two writes and two round trips, the
// envelope with DATA, then the body with its terminating dot (RFC 2920); the body is encoded with
// native searches (dot-stuffing.ts). Replies are reported as they are; outbound-smtp.ts decides
// what each one means for the recipients.

import { connect as connectTcp, type Socket } from "node:net";
import { connect as connectTls, TLSSocket } from "node:tls";
import type { Readable } from "node:stream";
import { formatReply, SmtpReplyError, SmtpReplyReader, type SmtpReply } from "../smtp/index.ts";
import { DotStuffer } from "./dot-stuffing.ts";

export type SmtpErrorCode = "ECONNECTION" | "ETIMEDOUT" | "ETLS" | "EPROTOCOL";

/** The connection failed: refused, closed, timed out, or the server said something unusable. */
export class SmtpConnectionError extends Error {
  readonly code: SmtpErrorCode;
  /** The reply that ended it, when there was one (a 421, a refused greeting). */
  readonly reply: SmtpReply | undefined;

  constructor(code: SmtpErrorCode, message: string, reply?: SmtpReply) {
    super(reply ? `${message}: ${formatReply(reply)}` : message);
    this.name = "SmtpConnectionError";
    this.code = code;
    this.reply = reply;
  }
}

export interface SmtpClientOptions {
  host: string;
  port: number;
  /** Our name in EHLO. */
  name: string;
  /** The name the certificate is checked against (SNI); undefined for an address literal. */
  servername: string | undefined;
  /** "required": no transaction without STARTTLS; "opportunistic": STARTTLS when offered. */
  tls: "required" | "opportunistic";
  verifyCertificate: boolean;
  connectTimeoutMs: number;
  /** Longest wait for any reply, and idle limit. */
  socketTimeoutMs: number;
}

export interface SmtpEnvelope {
  sender: string;
  recipients: string[];
  size: number;
  eightBit: boolean;
  /**
   * The final dot is not sent after this time (ms since the epoch): the transaction is abandoned
   * with the connection instead, and the primary never accepts the message. Bounds how long a
   * delivery can end in an acceptance; the reply to the dot still has the socket timeout.
   */
  finishBy?: number | undefined;
}

export interface TransactionReplies {
  /** MAIL FROM's reply. */
  mail: SmtpReply;
  /** One reply per recipient, in order; empty when MAIL was refused without pipelining. */
  recipients: SmtpReply[];
  /** DATA's reply when it was not 354, else the reply to the final dot; undefined when DATA was not sent. */
  data: SmtpReply | undefined;
}

/** Body bytes gathered before one socket write: a small message goes out in one write with its dot. */
const WRITE_BATCH_BYTES = 64 * 1024;

/** Resolves with `socket` once it emits `ready` within `timeoutMs`; otherwise destroys it and rejects with `failure(err)`. */
function whenSocket<T extends Socket>(
  socket: T,
  ready: "connect" | "secureConnect",
  timeoutMs: number,
  failure: (err?: Error) => SmtpConnectionError,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(failure());
    }, timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(failure(err));
    });
  });
}

/** A reply to MAIL or RCPT that lets the transaction go on (250 OK, 251 will forward, ...). */
const accepted = (reply: SmtpReply): boolean => reply.code >= 250 && reply.code < 260;

const hasNonAscii = (text: string): boolean => !/^[\x00-\x7f]*$/.test(text);

export class SmtpClient {
  private socket: Socket | TLSSocket;
  private readonly options: SmtpClientOptions;
  private readonly reader = new SmtpReplyReader();
  private readonly replies: SmtpReply[] = [];
  private readonly waiters: Array<{ resolve: (reply: SmtpReply) => void; reject: (err: Error) => void }> = [];
  private failure: SmtpConnectionError | undefined;
  private extensions = new Map<string, string>();
  /** Replies read in the current transaction: none means the server never answered it. */
  repliesInTransaction = 0;
  /** Transactions completed on this connection. */
  transactions = 0;

  private constructor(socket: Socket, options: SmtpClientOptions) {
    this.socket = socket;
    this.options = options;
    this.attach(socket);
  }

  /** Connect, read the greeting, introduce ourselves and start TLS as the options ask. */
  static async open(options: SmtpClientOptions): Promise<SmtpClient> {
    const socket = await whenSocket(connectTcp({ host: options.host, port: options.port }), "connect", options.connectTimeoutMs, (err) =>
      err
        ? new SmtpConnectionError("ECONNECTION", err.message)
        : new SmtpConnectionError("ETIMEDOUT", `connection timed out after ${options.connectTimeoutMs} ms`),
    );
    const client = new SmtpClient(socket, options);
    try {
      const greeting = await client.read(options.connectTimeoutMs);
      if (greeting.code !== 220) throw new SmtpConnectionError("EPROTOCOL", "greeting refused", greeting);
      await client.hello();
      if (client.extensions.has("STARTTLS")) await client.startTls();
      else if (options.tls === "required") throw new SmtpConnectionError("ETLS", "the server does not offer STARTTLS");
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.failure !== undefined || this.socket.destroyed;
  }

  get secure(): boolean {
    return this.socket instanceof TLSSocket;
  }

  /**
   * One mail transaction. Resolves with the server's replies whatever they say; rejects only
   * when the connection fails, after which it is closed. A refused envelope is followed by RSET,
   * so the connection stays usable.
   */
  async send(envelope: SmtpEnvelope, body: Readable): Promise<TransactionReplies> {
    this.repliesInTransaction = 0;
    try {
      const replies = this.extensions.has("PIPELINING") ? await this.pipelined(envelope, body) : await this.stepByStep(envelope, body);
      this.transactions++;
      return replies;
    } catch (err) {
      body.destroy();
      this.close();
      throw err;
    }
  }

  /** Say goodbye and close (the reply is not waited for). */
  quit(): void {
    if (this.closed) return;
    this.socket.end("QUIT\r\n");
    this.fail(new SmtpConnectionError("ECONNECTION", "connection closed by us"));
  }

  close(): void {
    this.fail(new SmtpConnectionError("ECONNECTION", "connection closed by us"));
    this.socket.destroy();
  }

  private mailCommand(envelope: SmtpEnvelope): string {
    const params: string[] = [];
    if (envelope.eightBit && this.extensions.has("8BITMIME")) params.push("BODY=8BITMIME");
    if (this.extensions.has("SIZE") && envelope.size > 0) params.push(`SIZE=${envelope.size}`);
    const international = hasNonAscii(envelope.sender) || envelope.recipients.some(hasNonAscii);
    if (international && this.extensions.has("SMTPUTF8")) params.push("SMTPUTF8");
    return `MAIL FROM:<${envelope.sender}>${params.length > 0 ? ` ${params.join(" ")}` : ""}\r\n`;
  }

  private async pipelined(envelope: SmtpEnvelope, body: Readable): Promise<TransactionReplies> {
    const commands = `${this.mailCommand(envelope) + envelope.recipients.map((r) => `RCPT TO:<${r}>\r\n`).join("")}DATA\r\n`;
    this.write(commands);
    const mail = await this.reply();
    const recipients: SmtpReply[] = [];
    for (let i = 0; i < envelope.recipients.length; i++) recipients.push(await this.reply());
    const dataReply = await this.reply();
    const anyAccepted = accepted(mail) && recipients.some(accepted);
    if (dataReply.code === 354 && !anyAccepted) {
      // DATA was accepted for nobody (RFC 2920 §3.1): end it empty, then start over.
      this.write(".\r\n");
      await this.reply();
      await this.reset();
      return { mail, recipients, data: undefined };
    }
    if (dataReply.code !== 354) {
      await this.reset();
      return { mail, recipients, data: anyAccepted ? dataReply : undefined };
    }
    return { mail, recipients, data: await this.sendBody(body, envelope.finishBy) };
  }

  private async stepByStep(envelope: SmtpEnvelope, body: Readable): Promise<TransactionReplies> {
    this.write(this.mailCommand(envelope));
    const mail = await this.reply();
    if (!accepted(mail)) {
      await this.reset();
      return { mail, recipients: [], data: undefined };
    }
    const recipients: SmtpReply[] = [];
    for (const recipient of envelope.recipients) {
      this.write(`RCPT TO:<${recipient}>\r\n`);
      recipients.push(await this.reply());
    }
    if (!recipients.some(accepted)) {
      await this.reset();
      return { mail, recipients, data: undefined };
    }
    this.write("DATA\r\n");
    const dataReply = await this.reply();
    if (dataReply.code !== 354) {
      await this.reset();
      return { mail, recipients, data: dataReply };
    }
    return { mail, recipients, data: await this.sendBody(body, envelope.finishBy) };
  }

  /** Stream the body, dot-stuffed, in batches of up to WRITE_BATCH_BYTES; the dot ends the last. */
  private async sendBody(body: Readable, finishBy: number | undefined): Promise<SmtpReply> {
    const stuffer = new DotStuffer();
    let batch: Buffer[] = [];
    let batchBytes = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      const encoded = stuffer.push(chunk);
      batch.push(encoded);
      batchBytes += encoded.length;
      if (batchBytes >= WRITE_BATCH_BYTES) {
        await this.writeAndWait(batch.length === 1 ? encoded : Buffer.concat(batch, batchBytes));
        batch = [];
        batchBytes = 0;
      }
    }
    if (finishBy !== undefined && Date.now() > finishBy) {
      throw new SmtpConnectionError("ETIMEDOUT", "delivery abandoned before the final dot: its time was up");
    }
    batch.push(stuffer.end());
    this.write(Buffer.concat(batch));
    return this.reply();
  }

  private async reset(): Promise<void> {
    this.write("RSET\r\n");
    const reply = await this.reply();
    if (reply.code !== 250) throw new SmtpConnectionError("EPROTOCOL", "RSET refused", reply);
  }

  private async hello(): Promise<void> {
    this.write(`EHLO ${this.options.name}\r\n`);
    let reply = await this.reply();
    if (reply.code === 421) throw new SmtpConnectionError("ECONNECTION", "EHLO refused", reply);
    this.extensions = new Map();
    if (reply.code === 250) {
      for (const line of reply.text.split("\n").slice(1)) {
        const [keyword = "", ...rest] = line.trim().split(/\s+/);
        if (keyword) this.extensions.set(keyword.toUpperCase(), rest.join(" "));
      }
      return;
    }
    this.write(`HELO ${this.options.name}\r\n`);
    reply = await this.reply();
    if (reply.code !== 250) throw new SmtpConnectionError("EPROTOCOL", "EHLO and HELO refused", reply);
  }

  private async startTls(): Promise<void> {
    this.write("STARTTLS\r\n");
    const reply = await this.reply();
    if (reply.code !== 220) {
      if (this.options.tls === "required") throw new SmtpConnectionError("ETLS", "STARTTLS refused", reply);
      return;
    }
    // Anything the server sent after its 220 came in clear text and would be read as replies inside
    // TLS: a man in the middle could inject them (the client side of CVE-2011-0411). Hang up.
    if (this.replies.length > 0 || this.reader.hasPartialReply) {
      this.socket.destroy();
      throw new SmtpConnectionError("ETLS", "the server sent data after its STARTTLS reply; refusing to start TLS on it", reply);
    }
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("end");
    plain.removeAllListeners("close");
    plain.removeAllListeners("timeout");
    plain.removeAllListeners("error");
    plain.setTimeout(0);
    const secure = await whenSocket(
      connectTls({
        socket: plain,
        servername: this.options.servername,
        rejectUnauthorized: this.options.verifyCertificate,
        minVersion: "TLSv1.2",
      }),
      "secureConnect",
      this.options.connectTimeoutMs,
      (err) => new SmtpConnectionError("ETLS", err ? `TLS handshake failed: ${err.message}` : "TLS handshake timed out"),
    );
    this.socket = secure;
    this.attach(secure);
    // RFC 3207: forget what the server said before TLS and ask again.
    await this.hello();
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.setEncoding("utf8");
    socket.setNoDelay(true);
    socket.setTimeout(this.options.socketTimeoutMs);
    socket.on("data", (data: string) => this.onData(data));
    socket.on("timeout", () => {
      this.fail(new SmtpConnectionError("ETIMEDOUT", `no reply within ${this.options.socketTimeoutMs} ms`));
      socket.destroy();
    });
    socket.on("error", (err) => this.fail(new SmtpConnectionError("ECONNECTION", err.message)));
    socket.on("end", () => this.fail(new SmtpConnectionError("ECONNECTION", "connection closed by the server")));
    socket.on("close", () => this.fail(new SmtpConnectionError("ECONNECTION", "connection closed")));
  }

  private onData(data: string): void {
    this.reader.push(data);
    for (;;) {
      let reply: SmtpReply | undefined;
      try {
        reply = this.reader.next();
      } catch (err) {
        if (!(err instanceof SmtpReplyError)) throw err;
        this.fail(new SmtpConnectionError("EPROTOCOL", err.message));
        this.socket.destroy();
        return;
      }
      if (!reply) return;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(reply);
      else this.replies.push(reply);
    }
  }

  private reply(): Promise<SmtpReply> {
    const ready = this.replies.shift();
    const settle = (reply: SmtpReply): SmtpReply => {
      this.repliesInTransaction++;
      if (reply.code === 421) {
        // Service closing: whatever this was the answer to, the connection is over.
        this.fail(new SmtpConnectionError("ECONNECTION", "the server is closing the connection", reply));
        this.socket.destroy();
      }
      return reply;
    };
    if (ready) return Promise.resolve(settle(ready));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve: (r) => resolve(settle(r)), reject }));
  }

  /** A reply with its own deadline (the greeting), shorter than the socket's idle limit. */
  private async read(timeoutMs: number): Promise<SmtpReply> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SmtpConnectionError("ETIMEDOUT", `no greeting within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.reply(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private write(data: string | Buffer): void {
    if (this.failure) throw this.failure;
    this.socket.write(data);
  }

  private async writeAndWait(data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.socket.write(data)) return;
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        this.socket.off("close", onClose);
        resolve();
      };
      const onClose = (): void => {
        this.socket.off("drain", onDrain);
        reject(this.failure ?? new SmtpConnectionError("ECONNECTION", "connection closed"));
      };
      this.socket.once("drain", onDrain);
      this.socket.once("close", onClose);
    });
  }

  private fail(error: SmtpConnectionError): void {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }
}
