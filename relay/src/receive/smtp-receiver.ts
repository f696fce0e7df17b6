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
import type { FilterPipeline, PipelineResult } from "../filter/pipeline.ts";
import type { Logger } from "../log.ts";
import type { RejectReason, RelayMetrics, TransactionFailure } from "../metrics.ts";
import { newQueueId, type DeliveryJob, type JobQueue, type QueueConnection, type SpoolReader, type SpoolWriter } from "../queue/index.ts";
import { installEnhancedReplies } from "./enhanced-replies.ts";
import { messageIdOf } from "./message-id.ts";
import { receiveMessage, type IntakeOutcome } from "./message-intake.ts";
import { PromptGreetingServer } from "./prompt-greeting.ts";
import { receivedHeader, receivedTls } from "./received-header.ts";
import { checkRecipient } from "./recipient-policy.ts";
import type { BareNewlinePolicy, SmtpReply } from "../smtp/index.ts";
import { replies, replyError } from "./smtp-reply.ts";

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
  /** Where a bare RCPT TO:<Postmaster> goes (A-label); without it, the first configured domain in A-label order. */
  postmasterDomain?: string | undefined;
}

/** A recipient RCPT said 250 to, with the policy in force then. */
interface AcceptedRecipient {
  address: string;
  policy: DomainPolicy;
  /** Accepted on the domain's allow list (spec.access.allow). */
  allowed: boolean;
}

/** The transaction a MAIL FROM opened. */
interface Transaction {
  /** Whether it was counted for the acceptance SLO yet, and whether it failed on our side. */
  counted: boolean;
  failed: boolean;
  /** What RCPT accepted, by the address as the client wrote it, so a reload before DATA cannot drop it. */
  readonly recipients: Map<string, AcceptedRecipient>;
}

/** What the receiver keeps about one SMTP session, from onConnect to onClose. */
interface SessionState {
  /** The client address the session counts against --max-connections-per-client. */
  readonly client: string;
  /** Recipients refused so far in the session (for the tarpit). */
  refusedRecipients: number;
  /** None before the first MAIL FROM. */
  transaction: Transaction | undefined;
}

/** The recipients of one domain: each group becomes its own delivery job. */
interface RecipientGroup {
  policy: DomainPolicy;
  recipients: string[];
  /** Every recipient of the group was accepted on the domain's allow list. */
  allowed: boolean;
}

/** One message in DATA, as the steps of onData hand it on. */
interface IncomingMessage {
  readonly session: SMTPServerSession;
  readonly state: SessionState;
  readonly groups: RecipientGroup[];
  /** One per group; the first names the message in the reply, the logs and the Received header. */
  readonly queueIds: string[];
  readonly queueId: string;
  readonly jobQueue: JobQueue;
  readonly writer: SpoolWriter;
  readonly spool: SpoolReader;
  readonly log: Logger;
}

type StoredMessage = Extract<IntakeOutcome, { stored: true }>;

const replyReason = new Map<SmtpReply, RejectReason>([
  [replies.relayDenied, "relay_denied"],
  [replies.routingDenied, "routing_denied"],
  [replies.badAddress, "bad_address"],
  [replies.unknownUser, "unknown_user"],
  [replies.tooBigDeclared, "size"],
  [replies.tooBig, "size"],
  [replies.headerTooBig, "size"],
  [replies.loop, "loop"],
  [replies.bareNewline, "bare_newline"],
  [replies.queueUnavailable, "queue_unavailable"],
  [replies.filterFailed, "filter_error"],
  [replies.shuttingDown, "shutting_down"],
  [replies.tooManyFromHost, "too_many_connections"],
]);

/** Largest message any domain accepts: what EHLO advertises before the recipients are known. */
function largestLimit(store: DomainStore): number {
  let largest = 0;
  for (const policy of store.current().byDomain.values()) largest = Math.max(largest, policy.maxMessageBytes);
  return largest || 10 * 1024 * 1024;
}

/**
 * The recipients RCPT accepted, by domain, with the policy in force when RCPT said 250: a reload
 * before DATA (even one that removes the domain) does not take back what was promised.
 */
function recipientGroups(session: SMTPServerSession, transaction: Transaction | undefined): RecipientGroup[] {
  const byDomain = new Map<string, RecipientGroup>();
  for (const rcpt of session.envelope.rcptTo) {
    const entry = transaction?.recipients.get(rcpt.address);
    if (!entry) continue;
    const group = byDomain.get(entry.policy.domain) ?? { policy: entry.policy, recipients: [], allowed: true };
    if (!group.recipients.includes(entry.address)) group.recipients.push(entry.address);
    group.allowed &&= entry.allowed;
    byDomain.set(entry.policy.domain, group);
  }
  return [...byDomain.values()];
}

function senderOf(session: SMTPServerSession): string {
  return session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
}

/** Reads the rest of a message that will not be stored, so the client gets its reply after the dot. */
function discardRest(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.readableEnded) return resolve();
    stream
      .on("end", resolve)
      .on("error", () => resolve())
      .resume();
  });
}

export class SmtpReceiver {
  private readonly server: SMTPServer;
  private shuttingDown = false;
  /** Every open session's state, by session id (its size is the number of open sessions). */
  private readonly sessions = new Map<string, SessionState>();
  /** Open sessions per client address. */
  private readonly perClient = new Map<string, number>();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly options: ReceiverOptions;
  private readonly store: DomainStore;
  private readonly queue: QueueConnection;
  private readonly filters: FilterPipeline;
  private readonly metrics: RelayMetrics;
  private readonly log: Logger;

  constructor(options: ReceiverOptions, store: DomainStore, queue: QueueConnection, filters: FilterPipeline, metrics: RelayMetrics, log: Logger) {
    this.options = options;
    this.filters = filters;
    this.store = store;
    this.queue = queue;
    this.metrics = metrics;
    this.log = log.child({ component: "smtp" });
    installEnhancedReplies();
    const tls = options.tls ? { key: readFileSync(options.tls.keyFile), cert: readFileSync(options.tls.certFile) } : undefined;
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
      onClose: (session) => this.onClose(session),
      onMailFrom: (address, session, callback) => this.onMailFrom(address, session, callback),
      onRcptTo: (address, session, callback) => this.onRcptTo(address, session, callback),
      onData: (stream, session, callback) => {
        this.onData(stream, session).then(
          (message) => callback(null, message),
          (err: Error) => callback(err),
        );
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

  listen(host: string, port: number, reusePort = false): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.server.once("error", reject);
      this.server.listen({ port, host, reusePort }, () => resolve());
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
    if (this.sessions.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.shutdownGraceMs);
        timer.unref();
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    (this.server.options as { closeTimeout?: number }).closeTimeout = 1;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * The domain whose primary gets mail for the bare Postmaster. Without --postmaster-domain, the
   * first domain in A-label order: the same at every relay and after every restart.
   */
  private postmasterDomain(): string | undefined {
    if (this.options.postmasterDomain !== undefined) return this.options.postmasterDomain;
    let first: string | undefined;
    for (const domain of this.store.current().byDomain.keys()) if (first === undefined || domain < first) first = domain;
    return first;
  }

  private refuse(reply: SmtpReply, counter: "recipients" | "messages", reason = replyReason.get(reply)): Error {
    if (reason) (counter === "recipients" ? this.metrics.recipientsRejected : this.metrics.messagesRejected).inc({ reason });
    return replyError(reply);
  }

  /**
   * smtp-server runs the other hooks only after onConnect, which stores the state. A hook that
   * goes on after the client left keeps the state it looked up first.
   */
  private stateOf(session: SMTPServerSession): SessionState {
    const state = this.sessions.get(session.id);
    if (!state) throw new Error(`no state for SMTP session ${session.id}`);
    return state;
  }

  /** Counts the transaction for the acceptance SLO once: at its first recipient taken or its first failure of ours. */
  private countTransaction(state: SessionState): void {
    const transaction = state.transaction;
    if (!transaction || transaction.counted) return;
    transaction.counted = true;
    this.metrics.transactions.inc();
  }

  /** A 4xx the sender did nothing to deserve: it burns the acceptance error budget. */
  private failOnOurSide(state: SessionState, cause: TransactionFailure, reply: SmtpReply, counter: "recipients" | "messages", reason?: RejectReason): Error {
    this.countTransaction(state);
    const transaction = state.transaction;
    if (transaction && !transaction.failed) {
      transaction.failed = true;
      this.metrics.transactionsFailed.inc({ cause });
    }
    return this.refuse(reply, counter, reason);
  }

  private onConnect(session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const state: SessionState = { client: session.remoteAddress, refusedRecipients: 0, transaction: undefined };
    const open = (this.perClient.get(state.client) ?? 0) + 1;
    this.perClient.set(state.client, open);
    this.sessions.set(session.id, state);
    this.metrics.sessions.inc();
    this.metrics.activeSessions.inc();
    if (this.shuttingDown) return callback(this.refuse(replies.shuttingDown, "messages"));
    if (open > this.options.maxConnectionsPerClient) return callback(this.refuse(replies.tooManyFromHost, "messages"));
    if (this.options.greetPauseMs > 0) setTimeout(() => callback(), this.options.greetPauseMs);
    else callback();
  }

  /** The session is gone: it no longer counts against its client address. */
  private onClose(session: SMTPServerSession): void {
    this.metrics.activeSessions.dec();
    const state = this.sessions.get(session.id);
    if (state) {
      this.sessions.delete(session.id);
      const left = (this.perClient.get(state.client) ?? 1) - 1;
      if (left > 0) this.perClient.set(state.client, left);
      else this.perClient.delete(state.client);
    }
    if (this.sessions.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const state = this.stateOf(session);
    state.transaction = { counted: false, failed: false, recipients: new Map() };
    if (this.shuttingDown) return callback(this.refuse(replies.shuttingDown, "messages"));
    // Refuse before the client sends 50 MB that could not be stored anyway.
    if (!this.queue.isReady()) return callback(this.failOnOurSide(state, "queue_unavailable", replies.queueUnavailable, "messages"));
    callback();
  }

  /** RCPT with the tarpit: once a session has collected enough refusals, every answer waits. */
  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const state = this.stateOf(session);
    const refusedBefore = state.refusedRecipients;
    this.checkRcpt(address, session, state, (err) => {
      state.refusedRecipients = refusedBefore + (err ? 1 : 0);
      if (refusedBefore >= this.options.tarpitAfter) setTimeout(() => callback(err), this.options.tarpitDelayMs);
      else callback(err);
    });
  }

  private checkRcpt(address: SMTPServerAddress, session: SMTPServerSession, state: SessionState, callback: (err?: Error | null) => void): void {
    const verdict = checkRecipient(
      address.address,
      (domain) => this.store.lookup(domain),
      () => this.postmasterDomain(),
    );
    if (!verdict.accept) {
      this.log.info("recipient refused", {
        session: session.id,
        client: session.remoteAddress,
        recipient: address.address.slice(0, 320),
        reply: verdict.reply.code,
      });
      return callback(this.refuse(verdict.reply, "recipients"));
    }
    const mailArgs = session.envelope.mailFrom ? session.envelope.mailFrom.args : false;
    const declared = mailArgs && typeof mailArgs.SIZE === "string" ? Number(mailArgs.SIZE) : 0;
    if (declared > verdict.policy.maxMessageBytes) return callback(this.refuse(replies.tooBigDeclared, "recipients"));
    const accept = (allowed: boolean): void => {
      state.transaction?.recipients.set(address.address, { address: verdict.address, policy: verdict.policy, allowed });
      this.countTransaction(state);
      callback();
    };
    if (!this.filters.hasRecipientFilters) return accept(false);
    this.filters
      .runRcpt({
        clientAddress: plainAddress(session.remoteAddress),
        heloName: session.hostNameAppearsAs,
        sender: senderOf(session),
        recipient: verdict.address,
        domain: verdict.domain,
      })
      .then(
        (filtered) => {
          if (filtered.action === "continue" || filtered.action === "allow") return accept(filtered.action === "allow");
          callback(this.refuse(filtered.reply, "recipients", filtered.action === "reject" ? "filter_reject" : "filter_tempfail"));
        },
        (err: unknown) => {
          this.log.warn("recipient filter failed; answered 451", { error: err });
          callback(this.failOnOurSide(state, "filter_error", replies.filterFailed, "recipients"));
        },
      );
  }

  /** DATA in steps: who it is for, read and store it, filter, commit to the queue, answer. */
  private async onData(stream: Readable, session: SMTPServerSession): Promise<string> {
    const started = performance.now();
    const message = await this.prepare(stream, session, this.stateOf(session));
    const stored = await this.receive(stream, message);
    const filterHeaders = await this.filter(message, stored);
    const jobs = await this.commit(message, stored, filterHeaders);
    // The peer site's copy is written after the message is ours, and the 250 does not wait for it.
    this.queue.shadow?.copy(jobs, stored.inlineBody);
    return this.answer(message, jobs, started);
  }

  /** Groups the recipients and opens the spool; DATA without recipients or without a queue is refused here. */
  private async prepare(stream: Readable, session: SMTPServerSession, state: SessionState): Promise<IncomingMessage> {
    const groups = recipientGroups(session, state.transaction);
    if (groups.length === 0) {
      await discardRest(stream);
      throw this.refuse(replies.noRecipients, "messages");
    }
    let jobQueue: JobQueue;
    try {
      jobQueue = this.queue.jobs({ throughReplyInbox: true });
    } catch {
      await discardRest(stream);
      throw this.failOnOurSide(state, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    const queueIds = groups.map(() => newQueueId());
    const queueId = queueIds[0] as string;
    return {
      session,
      state,
      groups,
      queueIds,
      queueId,
      jobQueue,
      writer: this.queue.spoolWriter(queueIds),
      spool: this.queue.spoolReader(),
      log: this.log.child({ queueId, session: session.id }),
    };
  }

  /** Reads DATA to its end behind our Received header, normalised and checked, into the spool. */
  private async receive(stream: Readable, message: IncomingMessage): Promise<StoredMessage> {
    const { session, log } = message;
    let outcome: IntakeOutcome;
    try {
      outcome = await receiveMessage(stream, this.traceHeader(message), message.writer, {
        authservId: this.options.hostname,
        maxBytes: Math.min(...message.groups.map((g) => g.policy.maxMessageBytes)),
        maxReceivedHeaders: this.options.maxReceivedHeaders,
        bareNewline: this.options.bareNewline,
      });
    } catch (err) {
      await discardRest(stream);
      log.warn("could not store message; answered 451", { error: err });
      await this.purgePartial(message);
      throw this.failOnOurSide(message.state, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    if (!outcome.stored) {
      log.info("message refused", { reason: outcome.reason, size: outcome.size });
      await this.purgePartial(message);
      throw this.refuse(outcome.reply, "messages");
    }
    if (outcome.bareNewlines > 0) this.metrics.bareNewlines.inc();
    if (outcome.forgedAuthResults > 0)
      log.info("removed Authentication-Results that claimed this relay's name", { fields: outcome.forgedAuthResults, client: session.remoteAddress });
    return outcome;
  }

  /** The Received header goes in front of what the client sent (RFC 5321 §4.4). */
  private traceHeader({ session, queueId }: IncomingMessage): Buffer {
    const secure = session.secure;
    const utf8 = Boolean(session.envelope.smtpUtf8);
    return Buffer.from(
      receivedHeader({
        heloName: session.hostNameAppearsAs,
        clientHostname: session.clientHostname,
        clientAddress: session.remoteAddress,
        byHostname: this.options.hostname,
        protocol: `${utf8 ? "UTF8SMTP" : "ESMTP"}${secure ? "S" : ""}` as "ESMTP",
        queueId,
        recipients: session.envelope.rcptTo.map((r) => r.address),
        tls: secure && session.tlsOptions ? receivedTls(session.tlsOptions) : undefined,
        date: new Date(),
      }),
      "utf8",
    );
  }

  /** Runs the DATA-stage filters on the stored message; returns the header fields they add. */
  private async filter(message: IncomingMessage, stored: StoredMessage): Promise<string> {
    if (!this.filters.hasMessageFilters) return "";
    const { session, groups, queueId, log } = message;
    let body;
    try {
      body = await message.spool.get(queueId, stored.inlineBody);
      if (!body) throw new Error("stored body not found");
    } catch (err) {
      log.warn("stored message unreadable for the filters; answered 451", { error: err });
      await this.purgePartial(message);
      throw this.failOnOurSide(message.state, "internal_error", replies.queueUnavailable, "messages");
    }
    let result: PipelineResult;
    try {
      result = await this.filters.runData({
        queueId,
        allowed: groups.every((g) => g.allowed),
        clientAddress: plainAddress(session.remoteAddress),
        heloName: session.hostNameAppearsAs,
        sender: senderOf(session),
        recipients: groups.flatMap((g) => g.recipients),
        domains: groups.map((g) => g.policy.domain),
        size: message.writer.size,
        open: () => body.open(),
      });
    } catch (err) {
      log.warn("a message filter failed; answered 451", { error: err });
      await this.purgePartial(message);
      throw this.failOnOurSide(message.state, "filter_error", replies.filterFailed, "messages");
    }
    const verdict = result.verdict;
    if (verdict.action === "tempfail" && verdict.unavailable) {
      await this.purgePartial(message);
      throw this.failOnOurSide(message.state, "filter_unavailable", verdict.reply, "messages", "filter_tempfail");
    }
    if (verdict.action !== "continue") {
      await this.purgePartial(message);
      throw this.refuse(verdict.reply, "messages", verdict.action === "reject" ? "filter_reject" : "filter_tempfail");
    }
    return result.headers;
  }

  /** One delivery job per domain: the message is ours once every job has its PubAck. */
  private async commit(message: IncomingMessage, stored: StoredMessage, filterHeaders: string): Promise<DeliveryJob[]> {
    const { session } = message;
    const now = Date.now();
    const messageId = messageIdOf(stored.header);
    const jobs: DeliveryJob[] = message.groups.map((group, index) => ({
      v: 1,
      queueId: message.queueIds[index] as string,
      kind: "relay",
      domain: group.policy.domain,
      sender: senderOf(session),
      recipients: group.recipients,
      size: message.writer.size,
      eightBit: stored.eightBit || session.envelope.bodyType === "8bitmime",
      smtpUtf8: Boolean(session.envelope.smtpUtf8),
      acceptedAt: now,
      expiresAt: now + group.policy.queueLifetimeMs,
      attempts: 0,
      // For message tracking (queue/tracking.ts), which records them when the message leaves the queue.
      client: plainAddress(session.remoteAddress),
      ...(messageId !== undefined ? { messageId } : {}),
      ...(filterHeaders ? { headers: filterHeaders } : {}),
      ...(stored.inlineBody ? { inline: true as const } : {}),
    }));
    try {
      // An inline body is durable once its job has its PubAck: the job is the message's only copy.
      await Promise.all(jobs.map((job) => message.jobQueue.enqueue(job, stored.inlineBody)));
    } catch (err) {
      message.log.warn("could not queue delivery job; answered 451", { error: err });
      await this.purgePartial(message);
      throw this.failOnOurSide(message.state, "queue_unavailable", replies.queueUnavailable, "messages");
    }
    return jobs;
  }

  /** Counts and logs the queued message; returns the text of the 250. */
  private answer(message: IncomingMessage, jobs: DeliveryJob[], started: number): string {
    this.metrics.messagesAccepted.inc(jobs.length);
    this.metrics.bytesAccepted.inc(message.writer.size * jobs.length);
    this.metrics.acceptLatency.observe((performance.now() - started) / 1000);
    for (const job of jobs) {
      message.log.info("message queued", {
        queueId: job.queueId,
        domain: job.domain,
        sender: job.sender,
        recipients: job.recipients.length,
        size: job.size,
        client: message.session.remoteAddress,
      });
    }
    return `Ok: queued as ${message.queueId}`;
  }

  /** Takes back what reached the spool when the message is not accepted after all. */
  private async purgePartial({ writer, spool, queueIds }: IncomingMessage): Promise<void> {
    // A body kept for its job never reached the spool: nothing to take back.
    if (!writer.spooled) return;
    await Promise.all(queueIds.map((id) => spool.purge(id).catch(() => undefined)));
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
