// The queue-admin library behind mxwarden-queue and the operator's RelayQueueRequest: it reads a
// site's queue stream directly (one job per queued message, on mxw.queue.<state>.<dom>.<qid>) and
// acts on single messages while the site's relays keep delivering.
//
// Race safety. A relay delivering a job holds it unacknowledged on mxw-deliver (ready jobs) or on
// the domain's flush consumer mxw-drain-<dom> (deferred jobs delivered in place). An action must
// never touch such a job: moving or removing it would not stop the delivery, and a moved copy would
// be delivered a second time. So an action first pauses those consumers (JetStream consumer pause,
// with a deadline should this process die), then reads the consumers' delivered sequence: a job at
// or below it has been handed to a relay and is skipped ("being delivered"); a job above it cannot
// be handed out until the pause ends. Every write then names the exact record it replaces
// (expected last subject sequence, or a delete by sequence), so a retry schedule that fires at the
// same moment makes the write fail instead of leaving two copies; the action then finds the job
// where it went and tries again. See docs/architecture.md, "Queue operations".

import { hostname as osHostname } from "node:os";
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import {
  JetStreamApiError,
  JetStreamError,
  PubHeaders,
  jetstream,
  jetstreamManager,
  type ConsumerInfo,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { queueBounce } from "../deliver/bounce.ts";
import { batchedLineWriter, createLogger, type Logger } from "../log.ts";
import {
  DELIVER_CONSUMER,
  JobQueue,
  QUEUE_STREAM,
  SpoolReader,
  SpoolWriter,
  TrackingStore,
  chunkSizeFor,
  decodeJobRecord,
  ensureFlushConsumer,
  flushConsumerName,
  inlineBodyMaxFor,
  isQueueId,
  scheduledAt,
  stateOfQueueSubject,
  QueueLayout,
  SHADOW_STREAM,
  ShadowCopies,
  type DeliveryJob,
  type RetiredBecause,
  type TrackingRecord,
} from "../queue/index.ts";
import type {
  QueueAction,
  QueueActionResult,
  QueueAdminOptions,
  QueuedMessage,
  QueuedState,
  QueueHistoryEvent,
  QueueSelector,
  ShownMessage,
  TrackingQuery,
} from "./types.ts";

/** How long a pause lasts should this process die before resuming the consumers. */
const PAUSE_DEADLINE_MS = 30_000;
/** Messages acted on per pause: the pause is renewed before each batch, so it never runs out mid-batch. */
const ACTION_BATCH = 200;
/** Attempts per message when a schedule or a relay moves it while we act. */
const MOVE_ATTEMPTS = 3;
/** Header section shown by `show --headers` and copied into a bounce. */
const HEADER_LIMIT = 64 * 1024;
/** Tracking records are written by the relays with their own retention; this only bounds the admin's own updates. */
const ADMIN_TRACKING_RETENTION_MS = 7 * 86_400_000;

/** A queued job as stored: where it is, and its record. */
interface StoredJob {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
  job: DeliveryJob;
  state: QueuedState;
}

/** A thrown error with the exit code the CLI should use: 2 for what the user got wrong. */
export class QueueAdminError extends Error {
  readonly usage: boolean;
  constructor(message: string, usage = false) {
    super(message);
    this.name = "QueueAdminError";
    this.usage = usage;
  }
}

function stateOf(subject: string): QueuedState | undefined {
  switch (stateOfQueueSubject(subject)) {
    case "ready":
      return "ready";
    case "defer":
      return "deferred";
    case "held":
      return "held";
    default:
      return undefined;
  }
}

/** A Message-ID as compared: without angle brackets, case-insensitive. */
function bareMessageId(id: string): string {
  return id.trim().replace(/^<|>$/g, "").toLowerCase();
}

function addressMatches(pattern: string, address: string): boolean {
  const p = pattern.toLowerCase();
  const a = address.toLowerCase();
  // "@example.org" (or "example.org") selects a whole domain; anything else one address.
  if (p.startsWith("@")) return a.endsWith(p);
  if (!p.includes("@")) return a.endsWith(`@${p}`);
  return a === p;
}

function matches(stored: StoredJob, selector: QueueSelector, now: number): boolean {
  const { job } = stored;
  if (selector.queueIds && !selector.queueIds.includes(job.queueId)) return false;
  if (selector.domain && job.domain !== selector.domain.toLowerCase()) return false;
  if (selector.state && stored.state !== selector.state) return false;
  if (selector.sender !== undefined && !addressMatches(selector.sender, job.sender)) return false;
  if (selector.recipient !== undefined && !job.recipients.some((r) => addressMatches(selector.recipient as string, r))) return false;
  if (selector.olderThanMs !== undefined && job.acceptedAt > now - selector.olderThanMs) return false;
  return true;
}

export function toQueuedMessage(stored: StoredJob): QueuedMessage {
  const { job } = stored;
  const next = stored.state === "deferred" ? scheduledAt(stored.headers) : undefined;
  return {
    queueId: job.queueId,
    domain: job.domain,
    sender: job.sender,
    recipients: job.recipients,
    state: stored.state,
    arrivedAt: new Date(job.acceptedAt).toISOString(),
    size: job.size,
    attempts: job.attempts,
    ...(next !== undefined ? { nextAttemptAt: new Date(next).toISOString() } : {}),
    ...(job.lastError !== undefined ? { lastError: job.lastError } : {}),
  };
}

/** All messages of a direct batch; the server ends a short batch with a 404 status. */
async function collect(batch: AsyncIterable<StoredMsg>): Promise<StoredMsg[]> {
  const out: StoredMsg[] = [];
  try {
    for await (const m of batch) out.push(m);
  } catch (err) {
    const code = err instanceof JetStreamError ? (err as JetStreamError & { code?: number }).code : undefined;
    if (code !== 404) throw err;
  }
  return out;
}

function toStoredJob(m: StoredMsg): StoredJob | undefined {
  const state = stateOf(m.subject);
  if (!state) return undefined;
  try {
    const { job } = decodeJobRecord(m.data);
    return { seq: m.seq, subject: m.subject, data: m.data, headers: m.header, job, state };
  } catch {
    return undefined;
  }
}

/**
 * The subjects the site's relays use: scoped by the site (its JetStream domain) when the queue
 * stream holds the scoped subjects, unscoped otherwise; and, for a site that got its name after
 * running without one, both (layout.ts, "legacy").
 */
async function siteLayout(jsm: JetStreamManager): Promise<QueueLayout> {
  const info = await jsm.streams.info(QUEUE_STREAM);
  const subjects = info.config.subjects ?? [];
  const domain = (await jsm.getAccountInfo()).domain;
  const scoped = domain ? new QueueLayout(domain) : undefined;
  if (!scoped || !subjects.includes(scoped.queueSubjects)) return new QueueLayout();
  scoped.keepsUnscoped = scoped.legacy !== undefined && subjects.includes(scoped.legacy.queueSubjects);
  return scoped;
}

const NO_METRICS = {
  recipientsBounced: { inc: () => undefined },
  dsnsSent: { inc: () => undefined },
  delayWarningsSent: { inc: () => undefined },
};

export class QueueAdmin {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly options: QueueAdminOptions;
  private readonly log: Logger;
  /** The site's subjects, as its relays use them (layout.ts). */
  private readonly layout: QueueLayout;
  /** The site's shadow copies (issue 16), when it keeps them: a deleted or bounced message's copy is retired. */
  private readonly shadow: ShadowCopies | undefined;
  private tracking: TrackingStore | undefined;

  private constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    layout: QueueLayout,
    shadow: boolean,
    options: QueueAdminOptions,
    log: Logger,
  ) {
    this.nc = nc;
    this.js = js;
    this.jsm = jsm;
    this.layout = layout;
    this.options = options;
    this.log = log;
    // retire() publishes through js alone; the relay's reply inbox has no use here.
    this.shadow = shadow && layout.site !== undefined ? new ShadowCopies(layout, [], () => ({ nc, js, jsm, inbox: undefined as never }), log) : undefined;
  }

  static async connect(options: QueueAdminOptions, log?: Logger): Promise<QueueAdmin> {
    const timeout = options.timeoutMs ?? 10_000;
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: options.servers,
        name: `mxwarden-queue ${options.actor}`,
        timeout,
        maxReconnectAttempts: 2,
        ...(options.user !== undefined ? { user: options.user, pass: options.pass ?? "" } : {}),
        ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
        ...(options.caFile ? { tls: { caFile: options.caFile } } : {}),
      });
    } catch (err) {
      throw new QueueAdminError(`cannot connect to NATS at ${options.servers.join(",")}: ${(err as Error).message}`);
    }
    const js = jetstream(nc, { timeout });
    const jsm = await jetstreamManager(nc, { timeout });
    let layout: QueueLayout;
    let shadow = false;
    try {
      layout = await siteLayout(jsm);
      shadow = await jsm.streams.info(SHADOW_STREAM).then(
        () => true,
        () => false,
      );
    } catch (err) {
      await nc.close();
      throw new QueueAdminError(`no mail queue on this NATS (stream ${QUEUE_STREAM}): ${(err as Error).message}`);
    }
    return new QueueAdmin(nc, js, jsm, layout, shadow, options, log ?? createLogger({ service: "mxwarden-queue" }, "warn", batchedLineWriter(process.stderr)));
  }

  async close(): Promise<void> {
    await this.nc.drain().catch(() => this.nc.close());
  }

  // ---- reading ----

  /** Every queued job that matches, oldest first. */
  private async read(selector: QueueSelector): Promise<StoredJob[]> {
    const now = Date.now();
    const found: StoredJob[] = [];
    if (selector.queueIds) {
      for (const queueId of selector.queueIds) {
        const stored = await this.locate(queueId);
        if (stored && matches(stored, selector, now)) found.push(stored);
      }
      return found;
    }
    for (const layout of this.layout.storedUnder) await this.readUnder(layout.queueFilter(selector.domain?.toLowerCase()), selector, now, found);
    return found.sort((a, b) => a.job.acceptedAt - b.job.acceptedAt || a.job.queueId.localeCompare(b.job.queueId));
  }

  private async readUnder(filter: string, selector: QueueSelector, now: number, found: StoredJob[]): Promise<void> {
    let nextSeq = 1;
    for (;;) {
      // Direct batch gets read jobs without a consumer (a work-queue stream allows no second
      // consumer that would not acknowledge, and acknowledging deletes).
      const batch = await collect(await this.jsm.direct.getBatch(QUEUE_STREAM, { seq: nextSeq, batch: 500, max_bytes: 8 * 1024 * 1024, next_by_subj: filter }));
      if (batch.length === 0) break;
      for (const m of batch) {
        nextSeq = m.seq + 1;
        const stored = toStoredJob(m);
        if (stored && matches(stored, selector, now)) found.push(stored);
      }
    }
  }

  /** Where a queue id's job is now, read from the stream leader; undefined when it is not queued. */
  private async locate(queueId: string): Promise<StoredJob | undefined> {
    if (!isQueueId(queueId)) return undefined;
    // The subject index finds the domain; the leader confirms the record (a direct get may lag).
    for (const layout of this.layout.storedUnder) {
      const hit = await this.jsm.direct.getMessage(QUEUE_STREAM, { seq: 1, next_by_subj: layout.queueIdFilter(queueId) });
      if (!hit) continue;
      const leader = await this.jsm.streams.getMessage(QUEUE_STREAM, { last_by_subj: hit.subject }).catch(() => null);
      return leader ? toStoredJob(leader) : undefined;
    }
    return undefined;
  }

  async list(selector: QueueSelector): Promise<QueuedMessage[]> {
    return (await this.read(selector)).map(toQueuedMessage);
  }

  async show(queueId: string, options: { headers?: boolean } = {}): Promise<ShownMessage | undefined> {
    const stored = await this.locate(queueId);
    if (!stored) return undefined;
    const message = toQueuedMessage(stored);
    const { job } = stored;
    const history: QueueHistoryEvent[] = [
      { at: message.arrivedAt, event: "accepted", detail: `from ${job.sender || "<>"}${job.client ? ` (client ${job.client})` : ""}` },
    ];
    const record = await (await this.trackingStore())?.get(queueId).catch(() => undefined);
    for (const event of record?.history ?? []) history.push(event);
    if (stored.job.attempts > 0) {
      history.push({
        at: new Date().toISOString(),
        event: `${stored.job.attempts} delivery attempt${stored.job.attempts === 1 ? "" : "s"} so far`,
        ...(stored.job.lastError ? { detail: `last error: ${stored.job.lastError}` } : {}),
      });
    }
    if (message.nextAttemptAt) history.push({ at: message.nextAttemptAt, event: "next attempt scheduled" });
    history.sort((a, b) => a.at.localeCompare(b.at));
    const result: ShownMessage = { message, history };
    if (options.headers) {
      const { body } = decodeJobRecord(stored.data);
      const spooled = await new SpoolReader(this.jsm, this.layout).get(queueId, body);
      const head = spooled ? await spooled.head(HEADER_LIMIT) : Buffer.alloc(0);
      const end = head.indexOf("\r\n\r\n");
      result.headers = (stored.job.headers ?? "") + (end === -1 ? head : head.subarray(0, end + 2)).toString("utf8");
    }
    return result;
  }

  /**
   * Message tracking: the site's tracking records (messages that left the queue, or were acted
   * on) and its queued jobs, which carry what the acceptance knew. A message still queued is
   * reported as queued, with what its record adds.
   */
  async find(query: TrackingQuery): Promise<TrackingRecord[]> {
    const since = query.sinceMs === undefined ? undefined : Date.now() - query.sinceMs;
    const wantedId = query.messageId === undefined ? undefined : bareMessageId(query.messageId);
    const wanted = (record: TrackingRecord): boolean =>
      (wantedId === undefined || (record.messageId !== undefined && bareMessageId(record.messageId) === wantedId)) &&
      (query.sender === undefined || addressMatches(query.sender, record.sender)) &&
      (query.recipient === undefined || record.recipients.some((r) => addressMatches(query.recipient as string, r))) &&
      (since === undefined || Date.parse(record.arrivedAt) >= since);
    const byQueueId = new Map<string, TrackingRecord>();
    const tracking = await this.trackingStore();
    if (tracking) {
      for await (const stored of tracking.records()) {
        const { history: _history, ...record } = stored;
        byQueueId.set(record.queueId, record);
      }
    }
    for (const stored of await this.read({})) {
      const queued = this.queuedRecord(stored.job);
      const known = byQueueId.get(queued.queueId);
      byQueueId.set(queued.queueId, known ? { ...queued, ...known, outcome: "queued" } : queued);
    }
    return [...byQueueId.values()].filter(wanted).sort((a, b) => a.arrivedAt.localeCompare(b.arrivedAt) || a.queueId.localeCompare(b.queueId));
  }

  /** What a queued job says for its tracking record. */
  private queuedRecord(job: DeliveryJob): TrackingRecord {
    return {
      queueId: job.queueId,
      ...(job.messageId !== undefined ? { messageId: job.messageId } : {}),
      sender: job.sender,
      recipients: job.recipients,
      domain: job.domain,
      ...(job.client !== undefined ? { client: job.client } : {}),
      ...(this.layout.site !== undefined ? { site: this.layout.site } : {}),
      arrivedAt: new Date(job.acceptedAt).toISOString(),
      outcome: "queued",
      ...(job.lastError !== undefined ? { remoteReply: job.lastError } : {}),
      updatedAt: new Date().toISOString(),
    };
  }

  /** The site's tracking bucket; for an action (`create`) created with the queue's replicas when no relay has written to it yet. */
  private async trackingStore(create = false): Promise<TrackingStore | undefined> {
    if (this.tracking) return this.tracking;
    try {
      this.tracking = await TrackingStore.bind(this.js, this.layout.trackingBucket, ADMIN_TRACKING_RETENTION_MS);
      if (!this.tracking && create) {
        this.tracking = await TrackingStore.open(this.js, this.layout.trackingBucket, {
          replicas: (await this.jsm.streams.info(QUEUE_STREAM)).config.num_replicas,
          retentionMs: ADMIN_TRACKING_RETENTION_MS,
        });
      }
    } catch (err) {
      this.log.warn("message tracking unavailable", { error: err });
      this.tracking = undefined;
    }
    return this.tracking;
  }

  // ---- acting ----

  async act(action: QueueAction, selector: QueueSelector): Promise<QueueActionResult> {
    if (!selector.all && !selector.queueIds?.length && !selector.domain && selector.sender === undefined && selector.recipient === undefined) {
      throw new QueueAdminError(`${action}: name queue ids, --domain, or --all`, true);
    }
    const result: QueueActionResult = { action, matched: 0, done: [], skipped: [] };
    const first = await this.read(selector);
    for (const queueId of selector.queueIds ?? []) {
      if (!first.some((s) => s.job.queueId === queueId)) {
        result.skipped.push({ queueId, reason: "not queued (unknown queue id, or it left the queue: see find)" });
      }
    }
    if (first.length === 0) return result;
    const paused = new Map<string, string | undefined>();
    try {
      let jobs = first;
      // Pause every consumer that could hand these jobs out, then read them again: what was read
      // before the pause may have moved.
      for (let round = 0; round < 3; round++) {
        const needed = [...this.consumersFor(jobs)].filter(([name]) => !paused.has(name));
        if (needed.length === 0) break;
        for (const [name, domain] of needed) {
          await this.pause(name, domain);
          paused.set(name, domain);
        }
        jobs = await this.read(selector);
      }
      result.matched = jobs.length;
      for (let i = 0; i < jobs.length; i += ACTION_BATCH) {
        for (const [name, domain] of paused) await this.pause(name, domain);
        const delivered = await this.deliveredUpTo([...paused.keys()]);
        for (const stored of jobs.slice(i, i + ACTION_BATCH)) {
          const outcome = await this.actOn(action, stored, delivered);
          if (outcome === true) result.done.push(stored.job.queueId);
          else result.skipped.push({ queueId: stored.job.queueId, reason: outcome });
        }
      }
    } finally {
      for (const name of paused.keys())
        await this.jsm.consumers
          .resume(QUEUE_STREAM, name)
          .catch((err: unknown) => this.log.warn("could not resume consumer; it resumes by itself", { consumer: name, error: err }));
    }
    return result;
  }

  /** The consumers that could hand out any of these jobs: mxw-deliver for ready ones, the domain's flush consumer for deferred ones. */
  private consumersFor(jobs: StoredJob[]): Map<string, string | undefined> {
    const names = new Map<string, string | undefined>();
    for (const stored of jobs) {
      if (stored.state === "ready") names.set(DELIVER_CONSUMER, undefined);
      else if (stored.state === "deferred") names.set(flushConsumerName(stored.job.domain), stored.job.domain);
    }
    return names;
  }

  /** Pause a consumer until the deadline; a flush consumer that does not exist yet is created paused, so a relay starting a flush now waits for us. */
  private async pause(name: string, domain: string | undefined): Promise<void> {
    const until = new Date(Date.now() + PAUSE_DEADLINE_MS);
    try {
      await this.jsm.consumers.pause(QUEUE_STREAM, name, until);
    } catch (err) {
      if (domain === undefined || !(err instanceof JetStreamApiError)) throw err;
      // The relays' settings (--ack-wait, the ack-pending cap) as mxw-deliver has them.
      const deliver = await this.jsm.consumers.info(QUEUE_STREAM, DELIVER_CONSUMER);
      const settings = { replicas: 1, ackWaitMs: Math.round((deliver.config.ack_wait ?? 30e9) / 1e6), maxAckPending: deliver.config.max_ack_pending ?? 1000 };
      await ensureFlushConsumer(this.jsm, this.layout, domain, settings, until);
      // Created paused by us; or created by a relay meanwhile, and paused now.
      await this.jsm.consumers.pause(QUEUE_STREAM, name, until);
    }
  }

  /** Per paused consumer, the highest stream sequence it has handed out. */
  private async deliveredUpTo(names: string[]): Promise<Map<string, number>> {
    const delivered = new Map<string, number>();
    for (const name of names) {
      const info: ConsumerInfo | undefined = await this.jsm.consumers.info(QUEUE_STREAM, name).catch(() => undefined);
      delivered.set(name, info?.delivered.stream_seq ?? 0);
    }
    return delivered;
  }

  /** Why the job cannot be touched now, or undefined. */
  private inFlight(stored: StoredJob, delivered: Map<string, number>): string | undefined {
    if (stored.state === "ready" && stored.seq <= (delivered.get(DELIVER_CONSUMER) ?? Number.MAX_SAFE_INTEGER)) {
      return "being delivered by a relay (or waiting for redelivery after a failed attempt); try again later";
    }
    if (stored.state === "deferred" && stored.seq <= (delivered.get(flushConsumerName(stored.job.domain)) ?? 0)) {
      return "being delivered by a flush of the domain's held mail; try again later";
    }
    return undefined;
  }

  /** true when done, else the reason it was skipped. */
  private async actOn(action: QueueAction, initial: StoredJob, delivered: Map<string, number>): Promise<true | string> {
    let stored: StoredJob | undefined = initial;
    for (let attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
      if (!stored) return "no longer queued (delivered or removed meanwhile)";
      const busy = this.inFlight(stored, delivered);
      if (busy) return busy;
      try {
        const outcome = await this.apply(action, stored);
        if (outcome === true) await this.audit(action, stored);
        return outcome;
      } catch (err) {
        // The record changed under us (a schedule fired, a relay moved it): find it again.
        if (!(err instanceof JetStreamApiError)) throw err;
        this.log.debug("job moved while acting; looking again", { queueId: stored.job.queueId, error: err.message });
      }
      stored = await this.locate(initial.job.queueId);
    }
    return "kept moving while we acted on it; try again";
  }

  private async apply(action: QueueAction, stored: StoredJob): Promise<true | string> {
    switch (action) {
      case "retry":
        if (stored.state === "ready") return "already ready; it is delivered as soon as a delivery slot is free";
        await this.moveToReady(stored);
        return true;
      case "release":
        if (stored.state !== "held") return `not held (${stored.state})`;
        await this.moveToReady(stored);
        return true;
      case "hold":
        if (stored.state === "held") return "already held";
        await this.hold(stored);
        return true;
      case "delete":
        await this.remove(stored, "deleted");
        return true;
      case "bounce":
        return this.bounce(stored);
    }
  }

  /** Deferred or held → ready, cancelling its schedule, in one write that only succeeds if the record is still `stored`. */
  private async moveToReady(stored: StoredJob): Promise<void> {
    const { job } = stored;
    await this.js.publish(this.layout.readySubject(job.domain, job.queueId), stored.data, {
      msgID: `${job.queueId}.x${stored.seq}`,
      cancelSchedule: { scheduleSubject: stored.subject },
      expect: { lastSubjectSequence: stored.seq, lastSubjectSequenceSubject: stored.subject },
    });
  }

  /**
   * Ready or deferred → held. The held record carries a schedule for the job's expiry, so held
   * mail whose queue lifetime ends becomes ready then and bounces like any expired mail. From
   * deferred it is one write (the new schedule replaces the old one). From ready it is two: the
   * held copy, guarded by the ready record's sequence, then the ready record's removal; the paused
   * consumer cannot hand the ready copy out in between.
   */
  private async hold(stored: StoredJob): Promise<void> {
    const { job } = stored;
    const h = natsHeaders();
    h.set(PubHeaders.Schedule, `@at ${new Date(Math.max(job.expiresAt, Date.now() + 1000)).toISOString()}`);
    h.set(PubHeaders.ScheduleTarget, this.layout.readySubject(job.domain, job.queueId));
    h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, String(stored.seq));
    h.set(PubHeaders.ExpectedLastSubjectSequenceSubjectHdr, stored.subject);
    h.set(PubHeaders.MsgIdHdr, `${job.queueId}.h${stored.seq}`);
    if (stored.state === "deferred") {
      h.set(PubHeaders.Scheduler, stored.subject);
      h.set(PubHeaders.ScheduleNext, "purge");
    }
    await this.js.publish(this.layout.heldSubject(job.domain, job.queueId), stored.data, { headers: h });
    if (stored.state === "ready") await this.deleteRecord(stored.seq);
  }

  private async deleteRecord(seq: number): Promise<void> {
    try {
      await this.jsm.streams.deleteMessage(QUEUE_STREAM, seq, false);
    } catch (err) {
      if (err instanceof JetStreamApiError) throw err;
      throw new Error(`could not remove record ${seq}: ${(err as Error).message}`);
    }
  }

  /** Remove the job (its exact record), then its spooled body and its shadow copy. */
  private async remove(stored: StoredJob, because: RetiredBecause): Promise<void> {
    const { queueId } = stored.job;
    await this.deleteRecord(stored.seq);
    if (!stored.job.inline) {
      await new SpoolReader(this.jsm, this.layout)
        .purge(queueId)
        .catch((err: unknown) => this.log.warn("body not purged; the spool ages it out", { queueId, error: err }));
    }
    // A peer site that took over this site's mail would otherwise deliver the copy.
    await this.shadow?.retire(queueId, because).catch((err: unknown) => this.log.warn("shadow copy not retired", { queueId, error: err }));
  }

  /** An RFC 3464 DSN to the sender, then the job's removal. */
  private async bounce(stored: StoredJob): Promise<true | string> {
    const { job } = stored;
    if (job.sender === "") return "from the null sender: no bounce can be sent (use delete)";
    const { body: inline } = decodeJobRecord(stored.data);
    const spool = new SpoolReader(this.jsm, this.layout);
    const body = await spool.get(job.queueId, inline);
    const maxPayload = this.nc.info?.max_payload ?? 1024 * 1024;
    const timeout = this.options.timeoutMs ?? 10_000;
    const diagnostic = `returned to the sender by the mail administrator of ${this.hostname()}${job.lastError ? `; last error: ${job.lastError}` : ""}`;
    const sent = await queueBounce(
      {
        queue: { spoolWriter: (ids) => new SpoolWriter(this.js, this.layout, ids, chunkSizeFor(maxPayload), timeout, inlineBodyMaxFor(maxPayload)) },
        jobs: new JobQueue(this.js, this.jsm, this.layout, timeout),
        hostname: this.hostname(),
        metrics: NO_METRICS,
        log: this.log,
      },
      job,
      job.recipients.map((address) => ({ address, status: "5.0.0", diagnostic, remoteMta: job.lastRemoteMta })),
      "rejected",
      body,
    );
    if (!sent) return "the sender's address cannot receive a bounce (use delete)";
    await this.remove(stored, "bounced");
    return true;
  }

  private hostname(): string {
    return this.options.hostname ?? osHostname();
  }

  /** The site's record of the action: an event on the message's tracking record (and its outcome when it left the queue). */
  private async audit(action: QueueAction, stored: StoredJob): Promise<void> {
    const tracking = await this.trackingStore(true);
    if (!tracking) return;
    const { job } = stored;
    const outcome = action === "delete" ? "deleted" : action === "bounce" ? "bounced" : undefined;
    const { outcome: _queued, remoteReply: _lastError, updatedAt: _now, ...envelope } = this.queuedRecord(job);
    await tracking
      .record(
        {
          ...envelope,
          ...(outcome ? { outcome } : {}),
          ...(outcome === "bounced" ? { remoteReply: "returned to the sender by the mail administrator" } : {}),
        },
        { event: action, detail: `by ${this.options.actor} (mxwarden-queue), was ${stored.state}` },
      )
      .catch((err: unknown) => this.log.warn("could not record the action in the message's tracking record", { queueId: job.queueId, error: err }));
  }
}
