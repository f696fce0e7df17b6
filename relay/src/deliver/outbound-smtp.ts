// Sends one job's message to its next hop over SMTP and reports the outcome per recipient.
// Connections are reused across jobs for the same hop (a drain after an outage sends thousands
// of messages to one primary) and limited per destination, so a recovering primary is not
// flooded. The one SMTP client of the relay is nodemailer's SMTPConnection.

import type { Readable } from "node:stream";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import type { Logger } from "../log.ts";
import type { NextHop, Route } from "./next-hop.ts";

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

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  recipient?: string;
  rejectedErrors?: SmtpError[];
}

interface PooledConnection {
  connection: SMTPConnection;
  key: string;
  idleTimer?: NodeJS.Timeout | undefined;
  broken: boolean;
  /** Transactions completed on this connection. */
  transactions: number;
}

interface HopPool {
  idle: PooledConnection[];
  open: number;
  waiters: Array<() => void>;
}

function statusFromReply(code: number | undefined, reply: string, fallback: string): string {
  const enhanced = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply);
  if (enhanced?.[1]) return enhanced[1];
  if (code === undefined) return fallback;
  return code >= 500 ? "5.0.0" : "4.0.0";
}

function classify(code: number | undefined): RecipientResult {
  // 503 (bad sequence of commands) is a protocol slip between the two MTAs, not a verdict on the
  // recipient: retrying on a fresh connection is right, bouncing would lose the message.
  if (code === 503) return "temporary";
  return code !== undefined && code >= 500 && code < 600 ? "permanent" : "temporary";
}

function describe(err: SmtpError): string {
  return (err.response ?? err.message).replace(/[\r\n]+/g, " ").slice(0, 500);
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
        lastError = `${hop.host}[${hop.address}]:${hop.port}: ${describe(err as SmtpError)}`;
        if ((err as SmtpError).code === "ETLS") {
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
          lastError = `${hop.host}[${hop.address}]:${hop.port}: ${describe(err as SmtpError)}`;
          continue;
        }
      }
      return { remoteMta: report.remoteMta, unreachable: report.unreachable, outcomes: report.outcomes };
    }
    return {
      remoteMta: undefined,
      unreachable: tlsFailure === undefined,
      outcomes: envelope.recipients.map((recipient) => ({
        recipient, result: "temporary", reply: tlsFailure ?? lastError, status: tlsFailure ? "4.7.5" : "4.4.1",
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
        if (reused.broken) {
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
      const connection = await this.connect(hop, route);
      const pooled: PooledConnection = { connection, key, broken: false, transactions: 0 };
      connection.once("end", () => { pooled.broken = true; });
      connection.on("error", () => { pooled.broken = true; });
      return pooled;
    } catch (err) {
      pool.open--;
      pool.waiters.shift()?.();
      throw err;
    }
  }

  private connect(hop: NextHop, route: Route): Promise<SMTPConnection> {
    const required = route.tls.mode === "required";
    const connection = new SMTPConnection({
      host: hop.address,
      port: hop.port,
      name: this.options.hostname,
      servername: hop.host === hop.address ? undefined : hop.host,
      requireTLS: required,
      opportunisticTLS: !required,
      tls: { rejectUnauthorized: route.tls.verifyCertificate, minVersion: "TLSv1.2" },
      connectionTimeout: this.options.connectTimeoutMs,
      greetingTimeout: this.options.connectTimeoutMs,
      socketTimeout: this.options.socketTimeoutMs,
      allowInternalNetworkInterfaces: true,
      logger: false,
    });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        connection.close();
        reject(err);
      };
      connection.once("error", onError);
      connection.connect(() => {
        connection.removeListener("error", onError);
        resolve(connection);
      });
    });
  }

  private send(pooled: PooledConnection, hop: NextHop, envelope: OutboundEnvelope, body: () => Readable): Promise<DeliveryReport & { staleConnection: boolean }> {
    const remoteMta = hop.host;
    const all = (result: RecipientResult, reply: string, status: string): RecipientOutcome[] =>
      envelope.recipients.map((recipient) => ({ recipient, result, reply, status }));
    return new Promise((resolve) => {
      const stream = body();
      stream.on("error", (err) => {
        pooled.broken = true;
        pooled.connection.close();
        resolve({ remoteMta, unreachable: false, staleConnection: false, outcomes: all("temporary", `reading the queued body failed: ${err.message}`, "4.3.0") });
      });
      pooled.connection.send({
        from: envelope.sender === "" ? false : envelope.sender,
        to: envelope.recipients,
        size: envelope.size,
        use8BitMime: envelope.eightBit,
      }, stream, (err, info) => {
        const reused = pooled.transactions > 0;
        pooled.transactions++;
        if (err) {
          const failure = err as SmtpError;
          const connectionLevel = failure.code !== "EENVELOPE" && failure.code !== "EMESSAGE";
          // After a refused envelope or message the transaction state on the other side is not
          // certain (nodemailer does not RSET): never reuse such a connection.
          pooled.broken = true;
          if (connectionLevel && reused && !stream.readableDidRead) {
            stream.destroy();
            resolve({ remoteMta, unreachable: false, staleConnection: true, outcomes: [] });
            return;
          }
          if (failure.rejectedErrors?.length) {
            resolve({ remoteMta, unreachable: false, staleConnection: false, outcomes: this.perRecipient(envelope.recipients, [], failure.rejectedErrors) });
            return;
          }
          const reply = describe(failure);
          const result = classify(failure.responseCode);
          resolve({ remoteMta, unreachable: false, staleConnection: false, outcomes: all(result, reply, statusFromReply(failure.responseCode, reply, "4.4.2")) });
          return;
        }
        const sent = info as { accepted: string[]; rejectedErrors?: SmtpError[]; response?: string };
        resolve({
          remoteMta,
          unreachable: false,
          staleConnection: false,
          outcomes: this.perRecipient(envelope.recipients, sent.accepted, sent.rejectedErrors ?? [], sent.response),
        });
      });
    });
  }

  private perRecipient(recipients: string[], accepted: string[], rejected: SmtpError[], response = "250 OK"): RecipientOutcome[] {
    const acceptedSet = new Set(accepted.map((a) => a.toLowerCase()));
    const rejectedBy = new Map(rejected.map((e) => [String(e.recipient ?? "").toLowerCase(), e]));
    return recipients.map((recipient) => {
      const key = recipient.toLowerCase();
      const error = rejectedBy.get(key);
      if (error) {
        const reply = describe(error);
        return { recipient, result: classify(error.responseCode), reply, status: statusFromReply(error.responseCode, reply, "4.0.0") };
      }
      if (acceptedSet.has(key)) return { recipient, result: "delivered", reply: response.slice(0, 500), status: "2.0.0" };
      return { recipient, result: "temporary", reply: "recipient outcome unknown", status: "4.0.0" };
    });
  }

  private release(pooled: PooledConnection): void {
    const pool = this.poolFor(pooled.key);
    if (pooled.broken || this.closed) {
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
    if (polite && !pooled.broken) pooled.connection.quit();
    else pooled.connection.close();
    pool.waiters.shift()?.();
  }
}
