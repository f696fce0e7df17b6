// The receiving side: an smtp-server instance whose hooks apply the relay policy and hand the
// message to the spool and the delivery queue. It answers 250 only once the body and its jobs
// have a PubAck from JetStream; anything that goes wrong before that is a 4xx, never a loss.

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import type { SMTPServer, SMTPServerAddress, SMTPServerSession } from "smtp-server";
import type { DomainStore } from "../config/domain-store.ts";
import type { DomainPolicy } from "../config/relay-domain.ts";
import { plainAddress } from "../filter/client-address.ts";
import type { FilterPipeline } from "../filter/pipeline.ts";
import type { Logger } from "../log.ts";
import type { RejectReason, RelayMetrics, TransactionFailure } from "../metrics.ts";
import type { DeliveryJob } from "../queue/delivery-job.ts";
import { JobQueue } from "../queue/job-queue.ts";
import { newQueueId } from "../queue/queue-id.ts";
import type { QueueConnection } from "../queue/queue-connection.ts";
import { SpoolReader, SpoolWriter, chunkSizeFor, inlineBodyMaxFor } from "../queue/spool.ts";
import { installEnhancedReplies } from "./enhanced-replies.ts";
import { receiveMessage, type BareNewlinePolicy } from "./message-intake.ts";
import { PromptGreetingServer } from "./prompt-greeting.ts";
import { receivedHeader, receivedTls } from "./received-header.ts";
import { checkRecipient } from "./recipient-policy.ts";
import { replies, replyError, type SmtpReply } from "./smtp-reply.ts";

export interface ReceiverOptions {
  hostname: string;
  tls?: { certFile: string; keyFile: string } | undefined;
  maxClients: number;
  maxRecipients: number;
  maxReceivedHeaders: number;
  bareNewline: BareNewlinePolicy;
  socketTimeoutMs: number;
  /** How long sessions in flight may finish after SIGTERM. */
  shutdownGraceMs: number;
  /** Sessions one client address may have open at once. */
  maxConnectionsPerClient: number;
  /**
   * Wait this long before the greeting: a client that talks first is a bot that does not wait
   * for the server (an "early talker"), and smtp-server answers it 421 and hangs up. At 0 the
   * greeting goes out as the connection is accepted, so nothing a client sends can come first.
   */
  greetPauseMs: number;
  /** After this many refused recipients in one session, every further RCPT reply is delayed... */
  tarpitAfter: number;
  /** ...by this much: address harvesting and dictionary attacks slow to a crawl. */
  tarpitDelayMs: number;
  /** Trust a PROXY protocol header from these peers (a load balancer that hides client IPs). */
  proxyProtocol?: boolean | string[] | undefined;
}

const replyReason = new Map<SmtpReply, RejectReason>([
  [replies.relayDenied, "relay_denied"], [replies.routingDenied, "routing_denied"], [replies.badAddress, "bad_address"],
  [replies.unknownUser, "unknown_user"], [replies.tooBigDeclared, "size"], [replies.tooBig, "size"], [replies.headerTooBig, "size"], [replies.loop, "loop"],
  [replies.bareNewline, "bare_newline"], [replies.queueUnavailable, "queue_unavailable"], [replies.shuttingDown, "shutting_down"],
  [replies.tooManyFromHost, "too_many_connections"],
]);

/** Largest message any domain accepts: what EHLO advertises before the recipients are known. */
function largestLimit(store: DomainStore): number {
  let largest = 0;
  for (const policy of store.current().byDomain.values()) largest = Math.max(largest, policy.maxMessageBytes);
  return largest || 10 * 1024 * 1024;
}

function drain(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.readableEnded) return resolve();
    stream.on("end", resolve).on("error", () => resolve()).resume();
  });
}

export class SmtpReceiver {
  private readonly server: SMTPServer;
  private shuttingDown = false;
  /** The client address of every open session (its size is the number of open sessions). */
  private readonly sessionClient = new Map<string, string>();
  /** Open sessions per client address. */
  private readonly perClient = new Map<string, number>();
  /** Recipients refused so far in each session (for the tarpit). */
  private readonly refusedRecipients = new WeakMap<SMTPServerSession, number>();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly options: ReceiverOptions;
  private readonly store: DomainStore;
  private readonly queue: QueueConnection;
  private readonly filters: FilterPipeline;
  private readonly metrics: RelayMetrics;
  private readonly log: Logger;
  /** Whether the current transaction was counted yet, and whether it failed on our side. */
  private readonly transactions = new WeakMap<SMTPServerSession, { counted: boolean; failed: boolean }>();
  /** What RCPT accepted in the current transaction, so a reload before DATA cannot drop it. */
  private readonly acceptedRecipients = new WeakMap<SMTPServerSession, Map<string, { address: string; policy: DomainPolicy }>>();

  constructor(options: ReceiverOptions, store: DomainStore, queue: QueueConnection, filters: FilterPipeline, metrics: RelayMetrics, log: Logger) {
    this.options = options;
    this.filters = filters;
    this.store = store;
    this.queue = queue;
    this.metrics = metrics;
    this.log = log.child({ component: "smtp" });
    installEnhancedReplies();
    const tls = options.tls
      ? { key: readFileSync(options.tls.keyFile), cert: readFileSync(options.tls.certFile) }
      : undefined;
    // Senders fall back to plain text or give up on an expired certificate: alert before it does.
    if (tls) this.metrics.tlsCertificateExpiry.set(Date.parse(new X509Certificate(tls.cert).validTo) / 1000);
    this.server = new PromptGreetingServer({
      name: options.hostname,
      banner: "mxwarden ESMTP",
      size: largestLimit(store),
      // AUTH has no use on an MX and would make MAIL FROM answer 530 to unauthenticated senders.
      disabledCommands: tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
      // DSN and REQUIRETLS are promises about onward delivery this relay does not keep yet.
      hideDSN: true,
      hideREQUIRETLS: true,
      hideENHANCEDSTATUSCODES: false,
      disableReverseLookup: true,
      maxClients: options.maxClients,
      maxRecipients: options.maxRecipients,
      socketTimeout: options.socketTimeoutMs,
      closeTimeout: options.shutdownGraceMs,
      useProxy: options.proxyProtocol ?? false,
      logger: false,
      ...(tls ?? {}),
      onConnect: (session, callback) => this.onConnect(session, callback),
      onSecure: (_socket, _session, callback) => {
        this.metrics.tlsHandshakes.inc({ result: "success" });
        callback();
      },
      onClose: (session) => {
        this.metrics.activeSessions.dec();
        const client = this.sessionClient.get(session.id);
        if (client !== undefined) {
          this.sessionClient.delete(session.id);
          const left = (this.perClient.get(client) ?? 1) - 1;
          if (left > 0) this.perClient.set(client, left);
          else this.perClient.delete(client);
        }
        if (this.sessionClient.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      },
      onMailFrom: (address, session, callback) => this.onMailFrom(address, session, callback),
      onRcptTo: (address, session, callback) => this.onRcptTo(address, session, callback),
      onData: (stream, session, callback) => {
        this.onData(stream, session).then((message) => callback(null, message), (err: Error) => callback(err));
      },
    });
    // smtp-server reports a failed handshake twice (the TLS socket's 'error' and '_tlsError'),
    // with the same error object: count and log it once.
    const reported = new WeakSet<Error>();
    this.server.on("error", (err) => {
      if (reported.has(err)) return;
      reported.add(err);
      if (isTlsHandshakeError(err)) this.metrics.tlsHandshakes.inc({ result: "failure" });
      this.log.warn("SMTP connection error", { error: err });
    });
    store.onChange(() => {
      (this.server.options as { size?: number }).size = largestLimit(store);
    });
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
  }

  address(): { host: string; port: number } {
    const addr = this.server.server.address();
    if (addr === null || typeof addr === "string") throw new Error("SMTP server is not listening");
    return { host: addr.address, port: addr.port };
  }

  /**
   * Stop accepting connections and let the sessions in flight finish their transaction (a new
   * MAIL gets 421) within the grace period; whatever is still open then gets 421 and is closed.
   * smtp-server's own close() would answer 421 to every further command at once.
   */
  async close(): Promise<void> {
    this.shuttingDown = true;
    this.server.server.close();
    if (this.sessionClient.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.shutdownGraceMs);
        timer.unref();
        this.idleWaiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
    (this.server.options as { closeTimeout?: number }).closeTimeout = 1;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private refuse(reply: SmtpReply, counter: "recipients" | "messages", reason = replyReason.get(reply)): Error {
    if (reason) (counter === "recipients" ? this.metrics.recipientsRejected : this.metrics.messagesRejected).inc({ reason });
    return replyError(reply);
  }

  /** Counts the transaction for the acceptance SLO once: at its first recipient taken or its first failure of ours. */
  private countTransaction(session: SMTPServerSession): void {
    const transaction = this.transactions.get(session);
    if (!transaction || transaction.counted) return;
    transaction.counted = true;
    this.metrics.transactions.inc();
  }

  /** A 4xx the sender did nothing to deserve: it burns the acceptance error budget. */
  private failOnOurSide(session: SMTPServerSession, cause: TransactionFailure, reply: SmtpReply, counter: "recipients" | "messages", reason?: RejectReason): Error {
    this.countTransaction(session);
    const transaction = this.transactions.get(session);
    if (transaction && !transaction.failed) {
      transaction.failed = true;
      this.metrics.transactionsFailed.inc({ cause });
    }
    return this.refuse(reply, counter, reason);
  }

  private onConnect(session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const client = session.remoteAddress;
    const open = (this.perClient.get(client) ?? 0) + 1;
    this.perClient.set(client, open);
    this.sessionClient.set(session.id, client);
    this.metrics.sessions.inc();
    this.metrics.activeSessions.inc();
    if (this.shuttingDown) return callback(this.refuse(replies.shuttingDown, "messages"));
    if (open > this.options.maxConnectionsPerClient) return callback(this.refuse(replies.tooManyFromHost, "messages"));
    if (this.options.greetPauseMs > 0) setTimeout(() => callback(), this.options.greetPauseMs);
    else callback();
  }

  private onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    this.acceptedRecipients.set(session, new Map());
    this.transactions.set(session, { counted: false, failed: false });
    if (this.shuttingDown) return callback(this.refuse(replies.shuttingDown, "messages"));
    // Refuse before the client sends 50 MB that could not be stored anyway.
    if (!this.queue.isReady()) return callback(this.failOnOurSide(session, "queue_unavailable", replies.queueUnavailable, "messages"));
    callback();
  }

  /** RCPT with the tarpit: once a session has collected enough refusals, every answer waits. */
  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const refusedBefore = this.refusedRecipients.get(session) ?? 0;
    this.checkRcpt(address, session, (err) => {
      const refused = refusedBefore + (err ? 1 : 0);
      this.refusedRecipients.set(session, refused);
      if (refusedBefore >= this.options.tarpitAfter) setTimeout(() => callback(err), this.options.tarpitDelayMs);
      else callback(err);
    });
  }

  private checkRcpt(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const verdict = checkRecipient(address.address, (domain) => this.store.lookup(domain));
    if (!verdict.accept) {
      this.log.info("recipient refused", { session: session.id, client: session.remoteAddress, recipient: address.address.slice(0, 320), reply: verdict.reply.code });
      return callback(this.refuse(verdict.reply, "recipients"));
    }
    const mailArgs = session.envelope.mailFrom ? session.envelope.mailFrom.args : false;
    const declared = mailArgs && typeof mailArgs.SIZE === "string" ? Number(mailArgs.SIZE) : 0;
    if (declared > verdict.policy.maxMessageBytes) return callback(this.refuse(replies.tooBigDeclared, "recipients"));
    const accept = (): void => {
      this.acceptedRecipients.get(session)?.set(address.address, { address: verdict.address, policy: verdict.policy });
      this.countTransaction(session);
      callback();
    };
    if (!this.filters.hasRecipientFilters) return accept();
    this.filters.runRcpt({
      clientAddress: plainAddress(session.remoteAddress),
      heloName: session.hostNameAppearsAs,
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
      recipient: verdict.address,
      domain: verdict.domain,
    }).then((filtered) => {
      if (filtered.action === "continue") return accept();
      callback(this.refuse(filtered.reply, "recipients", filtered.action === "reject" ? "filter_reject" : "filter_tempfail"));
    }, (err: unknown) => {
      this.log.warn("recipient filter failed; answered 451", { error: err });
      callback(this.failOnOurSide(session, "internal_error", replies.queueUnavailable, "recipients"));
    });
  }

  private async onData(stream: Readable, session: SMTPServerSession): Promise<string> {
    const started = performance.now();
    const byDomain = new Map<string, { policy: DomainPolicy; recipients: string[] }>();
    const accepted = this.acceptedRecipients.get(session);
    for (const rcpt of session.envelope.rcptTo) {
      // The policy in force when RCPT said 250: a reload before DATA (even one that removes the
      // domain) does not take back what was promised.
      const entry = accepted?.get(rcpt.address);
      if (!entry) continue;
      const group = byDomain.get(entry.policy.domain) ?? { policy: entry.policy, recipients: [] };
      if (!group.recipients.includes(entry.address)) group.recipients.push(entry.address);
      byDomain.set(entry.policy.domain, group);
    }
    if (byDomain.size === 0) {
      await drain(stream);
      throw this.refuse(replies.noRecipients, "messages");
    }
    let handles;
    try {
      handles = this.queue.get();
    } catch {
      await drain(stream);
      throw this.failOnOurSide(session, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    const groups = [...byDomain.values()];
    const queueIds = groups.map(() => newQueueId());
    const mainId = queueIds[0] as string;
    const secure = session.secure;
    const utf8 = Boolean(session.envelope.smtpUtf8);
    const prefix = Buffer.from(receivedHeader({
      heloName: session.hostNameAppearsAs,
      clientHostname: session.clientHostname,
      clientAddress: session.remoteAddress,
      byHostname: this.options.hostname,
      protocol: `${utf8 ? "UTF8SMTP" : "ESMTP"}${secure ? "S" : ""}` as "ESMTP",
      queueId: mainId,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      tls: secure && session.tlsOptions ? receivedTls(session.tlsOptions) : undefined,
      date: new Date(),
    }), "utf8");
    const writer = new SpoolWriter(handles.js, queueIds, chunkSizeFor(this.queue.maxPayload), this.queue.publishTimeoutMs, inlineBodyMaxFor(this.queue.maxPayload));
    const spool = new SpoolReader(handles.jsm);
    // A body kept for its job never reached the spool: nothing to take back.
    const purgePartial = async (): Promise<unknown> =>
      writer.spooled ? Promise.all(queueIds.map((id) => spool.purge(id).catch(() => undefined))) : undefined;
    const log = this.log.child({ queueId: mainId, session: session.id });
    let outcome;
    try {
      outcome = await receiveMessage(stream, prefix, writer, {
        authservId: this.options.hostname,
        maxBytes: Math.min(...groups.map((g) => g.policy.maxMessageBytes)),
        maxReceivedHeaders: this.options.maxReceivedHeaders,
        bareNewline: this.options.bareNewline,
      });
    } catch (err) {
      await drain(stream);
      log.warn("could not store message; answered 451", { error: err });
      await purgePartial();
      throw this.failOnOurSide(session, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    if (!outcome.stored) {
      log.info("message refused", { reason: outcome.reason, size: outcome.size });
      await purgePartial();
      throw this.refuse(outcome.reply, "messages");
    }
    if (outcome.bareNewlines > 0) this.metrics.bareNewlines.inc();
    if (outcome.forgedAuthResults > 0) log.info("removed Authentication-Results that claimed this relay's name", { fields: outcome.forgedAuthResults, client: session.remoteAddress });
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    let filterHeaders = "";
    if (this.filters.hasMessageFilters) {
      let result;
      try {
        const body = await spool.get(mainId, outcome.inlineBody);
        if (!body) throw new Error("stored body not found");
        result = await this.filters.runData({
          queueId: mainId,
          clientAddress: plainAddress(session.remoteAddress),
          heloName: session.hostNameAppearsAs,
          sender,
          recipients: groups.flatMap((g) => g.recipients),
          domains: groups.map((g) => g.policy.domain),
          size: writer.size,
          open: () => body.open(),
        });
      } catch (err) {
        log.warn("filtering failed (stored message unreadable or a filter broke); answered 451", { error: err });
        await purgePartial();
        throw this.failOnOurSide(session, "internal_error", replies.queueUnavailable, "messages");
      }
      const verdict = result.verdict;
      if (verdict.action === "tempfail" && verdict.unavailable) {
        await purgePartial();
        throw this.failOnOurSide(session, "filter_unavailable", verdict.reply, "messages", "filter_tempfail");
      }
      if (verdict.action !== "continue") {
        await purgePartial();
        throw this.refuse(verdict.reply, "messages", verdict.action === "reject" ? "filter_reject" : "filter_tempfail");
      }
      filterHeaders = result.headers;
    }
    const now = Date.now();
    const jobs: DeliveryJob[] = groups.map((group, index) => ({
      v: 1,
      queueId: queueIds[index] as string,
      kind: "relay",
      domain: group.policy.domain,
      sender,
      recipients: group.recipients,
      size: writer.size,
      eightBit: outcome.eightBit || session.envelope.bodyType === "8bitmime",
      smtpUtf8: utf8,
      acceptedAt: now,
      expiresAt: now + group.policy.queueLifetimeMs,
      attempts: 0,
      ...(filterHeaders ? { headers: filterHeaders } : {}),
      ...(outcome.inlineBody ? { inline: true as const } : {}),
    }));
    try {
      const queue = new JobQueue(handles.js, handles.jsm, this.queue.publishTimeoutMs, handles.inbox);
      // An inline body is durable once its job has its PubAck: the job is the message's only copy.
      await Promise.all(jobs.map((job) => queue.enqueue(job, outcome.inlineBody)));
    } catch (err) {
      log.warn("could not queue delivery job; answered 451", { error: err });
      await purgePartial();
      throw this.failOnOurSide(session, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    this.metrics.messagesAccepted.inc(jobs.length);
    this.metrics.bytesAccepted.inc(writer.size * jobs.length);
    this.metrics.acceptLatency.observe((performance.now() - started) / 1000);
    for (const job of jobs) {
      log.info("message queued", { queueId: job.queueId, domain: job.domain, sender: job.sender, recipients: job.recipients.length, size: job.size, client: session.remoteAddress });
    }
    return `Ok: queued as ${mainId}`;
  }
}

/**
 * smtp-server describes a failed STARTTLS handshake with `meta.tlsProtocol` (the TLS socket
 * existed); other connection errors carry no such detail.
 */
function isTlsHandshakeError(err: Error): boolean {
  const meta = (err as Error & { meta?: { tlsProtocol?: unknown } }).meta;
  return meta !== undefined && "tlsProtocol" in meta;
}
