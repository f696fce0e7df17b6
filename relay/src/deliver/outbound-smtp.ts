// Sends one job's message to its next hop over SMTP and reports the outcome per recipient.
// Connections are reused across jobs for the same hop (a flush of held mail after an outage sends thousands
// of messages to one primary) and limited per destination, so a recovering primary is not
// flooded. The SMTP dialogue itself is smtp-client.ts.

import type { Readable } from "node:stream";
import type { Logger } from "../log.ts";
import type { NextHop, Route } from "./next-hop.ts";
import { formatReply, type SmtpReply } from "../smtp/index.ts";
import { SmtpClient, SmtpConnectionError, type TransactionReplies } from "./smtp-client.ts";

export type RecipientResult = "delivered" | "temporary" | "permanent";

export interface RecipientOutcome {
  recipient: string;
  result: RecipientResult;
  /** The reply that decided it, e.g. "550 5.1.1 user unknown", or a connection error. */
  reply: string;
  /** Enhanced status code for a bounce. */
  status: string;
}

export interface DeliveryReport {
  outcomes: RecipientOutcome[];
  /** The hop that answered, when one did. */
  remoteMta: string | undefined;
  /** No hop could be reached (the destination looks down). */
  unreachable: boolean;
}

export interface OutboundEnvelope {
  sender: string;
  recipients: string[];
  size: number;
  eightBit: boolean;
  /** No final dot after this time (see SmtpEnvelope.finishBy). */
  finishBy?: number | undefined;
}

export interface OutboundOptions {
  /** Our name in EHLO. */
  hostname: string;
  connectTimeoutMs: number;
  /** Idle time and per-command inactivity limit. */
  socketTimeoutMs: number;
  /** Open connections to one hop at most. */
  maxConnectionsPerHop: number;
  /** How long an idle connection is kept for reuse. */
  idleTimeoutMs: number;
}

interface PooledConnection {
  connection: SmtpClient;
  key: string;
  idleTimer?: NodeJS.Timeout | undefined;
}

interface HopPool {
  idle: PooledConnection[];
  open: number;
  waiters: Array<() => void>;
}

/** The reply's enhanced status code, or one for its class; `fallback` when there was no reply. */
function statusFromReply(reply: SmtpReply | undefined, fallback: string): string {
  if (reply === undefined) return fallback;
  return reply.enhanced ?? (reply.code >= 500 ? "5.0.0" : "4.0.0");
}

function classify(code: number | undefined): RecipientResult {
  // 503 (bad sequence of commands) is a protocol slip between the two MTAs, not a verdict on the
  // recipient: retrying on a fresh connection is right, bouncing would lose the message.
  if (code === 503) return "temporary";
  return code !== undefined && code >= 500 && code < 600 ? "permanent" : "temporary";
}

function describe(err: unknown): string {
  return oneLine(err instanceof Error ? err.message : String(err));
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ").slice(0, 500);
}

const isPositive = (reply: SmtpReply): boolean => reply.code >= 200 && reply.code < 300;

function outcomeOf(recipient: string, reply: SmtpReply): RecipientOutcome {
  const text = oneLine(formatReply(reply));
  if (isPositive(reply)) return { recipient, result: "delivered", reply: text, status: "2.0.0" };
  return { recipient, result: classify(reply.code), reply: text, status: statusFromReply(reply, "4.0.0") };
}

/** Each recipient's outcome: refused at MAIL, at RCPT, or decided by the reply to the message. */
function outcomesOf(recipients: string[], replies: TransactionReplies): RecipientOutcome[] {
  return recipients.map((recipient, i) => {
    if (!isPositive(replies.mail)) return outcomeOf(recipient, replies.mail);
    const rcpt = replies.recipients[i];
    if (!rcpt) return { recipient, result: "temporary", reply: "recipient outcome unknown", status: "4.0.0" };
    if (!isPositive(rcpt)) return outcomeOf(recipient, rcpt);
    if (!replies.data) return { recipient, result: "temporary", reply: "recipient outcome unknown", status: "4.0.0" };
    return outcomeOf(recipient, replies.data);
  });
}

export class OutboundSmtp {
  private readonly pools = new Map<string, HopPool>();
  private closed = false;
  private readonly options: OutboundOptions;
  private readonly log: Logger;

  constructor(options: OutboundOptions, log: Logger) {
    this.options = options;
    this.log = log.child({ component: "outbound" });
  }

  /** Try the route's hops in order until one answers, then deliver over it. */
  async deliver(route: Route, envelope: OutboundEnvelope, body: () => Readable): Promise<DeliveryReport> {
    let lastError = "no next hop";
    let tlsFailure: string | undefined;
    for (const hop of route.hops) {
      let pooled: PooledConnection;
      try {
        pooled = await this.acquire(hop, route);
      } catch (err) {
        lastError = `${hop.host}[${hop.address}]:${hop.port}: ${describe(err)}`;
        if (err instanceof SmtpConnectionError && err.code === "ETLS") {
          // The host answers but cannot encrypt: a policy failure, not an outage to probe for.
          tlsFailure = `TLS is required for this domain, but STARTTLS failed at ${lastError}`;
          this.log.warn("next hop failed the required STARTTLS", { hop: hop.host, address: hop.address, port: hop.port, error: lastError });
        } else {
          this.log.info("next hop unreachable", { hop: hop.host, address: hop.address, port: hop.port, error: lastError });
        }
        continue;
      }
      let report = await this.send(pooled, hop, envelope, body);
      this.release(pooled);
      if (report.staleConnection) {
        // A reused connection died before a byte of this message went out: one fresh try.
        try {
          const fresh = await this.acquire(hop, route);
          report = await this.send(fresh, hop, envelope, body);
          this.release(fresh);
        } catch (err) {
          lastError = `${hop.host}[${hop.address}]:${hop.port}: ${describe(err)}`;
          continue;
        }
      }
      return { remoteMta: report.remoteMta, unreachable: report.unreachable, outcomes: report.outcomes };
    }
    return {
      remoteMta: undefined,
      unreachable: tlsFailure === undefined,
      outcomes: envelope.recipients.map((recipient) => ({
        recipient,
        result: "temporary",
        reply: tlsFailure ?? lastError,
        status: tlsFailure ? "4.7.5" : "4.4.1",
      })),
    };
  }

  /** Close idle connections; new deliveries are refused. */
  async close(): Promise<void> {
    this.closed = true;
    for (const pool of this.pools.values()) {
      for (const pooled of pool.idle.splice(0)) this.discard(pooled, true);
    }
  }

  private poolFor(key: string): HopPool {
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { idle: [], open: 0, waiters: [] };
      this.pools.set(key, pool);
    }
    return pool;
  }

  private async acquire(hop: NextHop, route: Route): Promise<PooledConnection> {
    if (this.closed) throw new Error("relay is shutting down");
    const key = `${hop.address}:${hop.port}:${route.tls.mode}:${route.tls.verifyCertificate}`;
    const pool = this.poolFor(key);
    for (;;) {
      const reused = pool.idle.pop();
      if (reused) {
        clearTimeout(reused.idleTimer);
        // The server may have closed an idle connection since; it is not worth a failed attempt.
        if (reused.connection.closed) {
          this.discard(reused, false);
          continue;
        }
        return reused;
      }
      if (pool.open < this.options.maxConnectionsPerHop) break;
      await new Promise<void>((resolve) => pool.waiters.push(resolve));
    }
    pool.open++;
    try {
      const connection = await SmtpClient.open({
        host: hop.address,
        port: hop.port,
        name: this.options.hostname,
        servername: hop.host === hop.address ? undefined : hop.host,
        tls: route.tls.mode === "required" ? "required" : "opportunistic",
        verifyCertificate: route.tls.verifyCertificate,
        connectTimeoutMs: this.options.connectTimeoutMs,
        socketTimeoutMs: this.options.socketTimeoutMs,
      });
      return { connection, key };
    } catch (err) {
      pool.open--;
      pool.waiters.shift()?.();
      throw err;
    }
  }

  private async send(
    pooled: PooledConnection,
    hop: NextHop,
    envelope: OutboundEnvelope,
    body: () => Readable,
  ): Promise<DeliveryReport & { staleConnection: boolean }> {
    const remoteMta = hop.host;
    const client = pooled.connection;
    const reused = client.transactions > 0;
    const all = (result: RecipientResult, reply: string, status: string): RecipientOutcome[] =>
      envelope.recipients.map((recipient) => ({ recipient, result, reply, status }));
    try {
      const replies = await client.send(envelope, body());
      return { remoteMta, unreachable: false, staleConnection: false, outcomes: outcomesOf(envelope.recipients, replies) };
    } catch (err) {
      if (!(err instanceof SmtpConnectionError)) {
        return {
          remoteMta,
          unreachable: false,
          staleConnection: false,
          outcomes: all("temporary", `reading the queued body failed: ${describe(err)}`, "4.3.0"),
        };
      }
      // A reused connection the server had already dropped: it never answered this transaction,
      // so nothing of the message was accepted.
      if (reused && client.repliesInTransaction === 0) return { remoteMta, unreachable: false, staleConnection: true, outcomes: [] };
      const reply = describe(err);
      return { remoteMta, unreachable: false, staleConnection: false, outcomes: all("temporary", reply, statusFromReply(err.reply, "4.4.2")) };
    }
  }

  private release(pooled: PooledConnection): void {
    const pool = this.poolFor(pooled.key);
    if (pooled.connection.closed || this.closed) {
      this.discard(pooled, false);
      return;
    }
    const waiter = pool.waiters.shift();
    if (waiter) {
      // Hand the open connection straight to the next job for this hop.
      pool.idle.push(pooled);
      waiter();
      return;
    }
    pooled.idleTimer = setTimeout(() => {
      const index = pool.idle.indexOf(pooled);
      if (index !== -1) pool.idle.splice(index, 1);
      this.discard(pooled, true);
    }, this.options.idleTimeoutMs);
    pooled.idleTimer.unref();
    pool.idle.push(pooled);
  }

  private discard(pooled: PooledConnection, polite: boolean): void {
    const pool = this.poolFor(pooled.key);
    pool.open--;
    if (polite && !pooled.connection.closed) pooled.connection.quit();
    else pooled.connection.close();
    pool.waiters.shift()?.();
  }
}
