// The queue-admin library behind mxwarden-queue and the operator's RelayQueueRequest: it reads a
// site's queue stream directly (one job per queued message, on mxw.<site>.queue.<state>.<dom>.<qid>) and
// acts on single messages while the site's relays keep delivering.
//
// Race safety. A relay delivering a job holds it unacknowledged on the site's delivery consumer
// (ready jobs) or on the domain's flush consumer (deferred jobs delivered in place). An action must
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
import { connect, credsAuthenticator, nkeyAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { JetStreamApiError, jetstream, jetstreamManager, type ConsumerInfo, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { batchedLineWriter, createLogger, type Logger } from "../log.ts";
import {
  JobQueue,
  QUEUE_STREAM,
  SpoolReader,
  SpoolWriter,
  TrackingLog,
  chunkSizeFor,
  inlineBodyMaxFor,
  peerStreamName,
  decodeJobRecord,
  ensureFlushConsumer,
  type QueueLayout,
  SHADOW_STREAM,
  ShadowCopies,
  type DeliveryJob,
  type TrackingOutcome,
  type TrackingRecord,
} from "../queue/index.ts";
import { takeOver, type TakeoverResult } from "../deliver/takeover.ts";
import { JobMoves } from "./job-moves.ts";
import { QueuedJobs, addressMatches, siteLayout, toQueuedMessage, type StoredJob } from "./queued-jobs.ts";
import type {
  QueueAction,
  QueueActionResult,
  QueueAdminOptions,
  QueuedMessage,
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
/** The most of the header section `show --headers` prints. */
const HEADER_LIMIT = 64 * 1024;
/** How long the admin's own tracking entries (its actions) are kept: the relays' default retention. */
const ADMIN_TRACKING_RETENTION_MS = 7 * 86_400_000;

/** A thrown error with the exit code the CLI should use: 2 for what the user got wrong. */
export class QueueAdminError extends Error {
  readonly usage: boolean;
  constructor(message: string, usage = false) {
    super(message);
    this.name = "QueueAdminError";
    this.usage = usage;
  }
}

/** A server URL as it may be printed: a user and password written into it are left out. */
export function withoutUserInfo(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1");
}

/** A Message-ID as compared: without angle brackets, case-insensitive. */
function bareMessageId(id: string): string {
  return id.trim().replace(/^<|>$/g, "").toLowerCase();
}

export class QueueAdmin {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly options: QueueAdminOptions;
  private readonly log: Logger;
  /** The site's subjects, as its relays use them (layout.ts). */
  private readonly layout: QueueLayout;
  private readonly jobs: QueuedJobs;
  private readonly moves: JobMoves;
  private readonly tracking: TrackingLog;

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
    this.tracking = new TrackingLog(js, jsm, layout);
    this.jobs = new QueuedJobs(jsm, layout);
    this.moves = new JobMoves({
      js,
      jsm,
      layout,
      // The site's shadow copies (issue 16), when it keeps them: a deleted or bounced message's copy
      // is retired. retire() publishes through js alone; the relay's reply inbox has no use here.
      shadow: shadow && layout.site !== undefined ? new ShadowCopies(layout, [], () => ({ nc, js, jsm, inbox: undefined as never }), log) : undefined,
      maxPayload: nc.info?.max_payload ?? 1024 * 1024,
      timeoutMs: options.timeoutMs ?? 10_000,
      hostname: options.hostname ?? osHostname(),
      log,
    });
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
        ...(options.nkeySeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed)) } : {}),
        ...(options.caFile ? { tls: { caFile: options.caFile } } : {}),
      });
    } catch (err) {
      throw new QueueAdminError(`cannot connect to NATS at ${options.servers.map(withoutUserInfo).join(",")}: ${(err as Error).message}`);
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

  /**
   * Deliver a lost peer site's mail from here: queue every live shadow copy this site holds of
   * `peer`'s messages, as a relay's --takeover-after does (deliver/takeover.ts). For an operator who
   * knows the peer is gone; on a cut link both sites would deliver the peer's queue.
   */
  async takeOver(peer: string): Promise<TakeoverResult> {
    const { nc, js, jsm, layout } = this;
    if (layout.site === undefined) throw new QueueAdminError("this site has no name (its relays run without --site): it holds no peer's copies", true);
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    const shadow = new ShadowCopies(layout, [peer], () => ({ nc, js, jsm, inbox: undefined as never }), this.log);
    try {
      await jsm.streams.info(peerStreamName(peer));
    } catch {
      throw new QueueAdminError(`this site holds no copies of a site named "${peer}" (no stream ${peerStreamName(peer)})`, true);
    }
    return await takeOver(
      {
        shadow,
        get: () => ({ jsm }),
        jobs: () => new JobQueue(js, jsm, layout, timeoutMs),
        spoolWriter: (queueIds) => new SpoolWriter(js, layout, queueIds, chunkSizeFor(maxPayload), timeoutMs, inlineBodyMaxFor(maxPayload)),
      },
      peer,
      this.log,
    );
  }

  // ---- reading ----

  async list(selector: QueueSelector): Promise<QueuedMessage[]> {
    return (await this.jobs.read(selector)).map(toQueuedMessage);
  }

  async show(queueId: string, options: { headers?: boolean } = {}): Promise<ShownMessage | undefined> {
    const stored = await this.jobs.locate(queueId);
    if (!stored) return undefined;
    const message = toQueuedMessage(stored);
    const { job } = stored;
    const history: QueueHistoryEvent[] = [
      { at: message.arrivedAt, event: "accepted", detail: `from ${job.sender || "<>"}${job.client ? ` (client ${job.client})` : ""}` },
    ];
    const records = (await this.tracking.exists())
      ? await this.tracking
          .records(new Date(job.acceptedAt - 60_000), (id) => id === queueId)
          .catch((err: unknown) => {
            this.log.warn("message tracking unreadable", { error: err });
            return undefined;
          })
      : undefined;
    for (const event of records?.get(queueId)?.history ?? []) history.push(event);
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
    if (await this.tracking.exists()) {
      // Entries are written after their message arrived: the log before `since` cannot match.
      for (const stored of (await this.tracking.records(since === undefined ? undefined : new Date(since))).values()) {
        const { history: _history, ...record } = stored;
        byQueueId.set(record.queueId, record);
      }
    }
    for (const stored of await this.jobs.read({})) {
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

  // ---- acting ----

  async act(action: QueueAction, selector: QueueSelector): Promise<QueueActionResult> {
    if (!selector.all && !selector.queueIds?.length && !selector.domain && selector.sender === undefined && selector.recipient === undefined) {
      throw new QueueAdminError(`${action}: name queue ids, --domain, or --all`, true);
    }
    const result: QueueActionResult = { action, matched: 0, done: [], skipped: [] };
    const first = await this.jobs.read(selector);
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
        jobs = await this.jobs.read(selector);
      }
      result.matched = jobs.length;
      for (let i = 0; i < jobs.length; i += ACTION_BATCH) {
        for (const [name, domain] of paused) await this.pause(name, domain);
        const delivered = await this.deliveredUpTo([...paused.keys()]);
        const touched: StoredJob[] = [];
        for (const stored of jobs.slice(i, i + ACTION_BATCH)) {
          const outcome = await this.actOn(action, stored, delivered);
          if (typeof outcome === "string") {
            result.skipped.push({ queueId: stored.job.queueId, reason: outcome });
          } else {
            result.done.push(stored.job.queueId);
            touched.push(outcome);
          }
        }
        await this.audit(action, touched);
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
      if (stored.state === "ready") names.set(this.layout.deliverConsumer, undefined);
      else if (stored.state === "deferred") names.set(this.layout.flushConsumerName(stored.job.domain), stored.job.domain);
    }
    return names;
  }

  /** Pause a consumer until the deadline; a flush consumer that does not exist yet is created paused, so a relay starting a flush now waits for us. */
  private async pause(name: string, domain: string | undefined): Promise<void> {
    const until = new Date(Date.now() + PAUSE_DEADLINE_MS);
    let paused: boolean;
    try {
      paused = (await this.jsm.consumers.pause(QUEUE_STREAM, name, until)).paused;
    } catch (err) {
      if (domain === undefined || !(err instanceof JetStreamApiError)) throw err;
      // The relays' settings (--ack-wait, the ack-pending cap) as the delivery consumer has them.
      const deliver = await this.jsm.consumers.info(QUEUE_STREAM, this.layout.deliverConsumer);
      const settings = { replicas: 1, ackWaitMs: Math.round((deliver.config.ack_wait ?? 30e9) / 1e6), maxAckPending: deliver.config.max_ack_pending ?? 1000 };
      await ensureFlushConsumer(this.jsm, this.layout, domain, settings, until);
      // Created paused by us; or created by a relay meanwhile, and paused now.
      paused = (await this.jsm.consumers.pause(QUEUE_STREAM, name, until)).paused;
    }
    // The deadline is this host's clock; the server ignores one already past by its own.
    if (!paused) throw new QueueAdminError(`could not pause ${name} (is this host's clock behind the NATS servers' by ${PAUSE_DEADLINE_MS / 1000}s or more?)`);
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
    if (stored.state === "ready" && stored.seq <= (delivered.get(this.layout.deliverConsumer) ?? Number.MAX_SAFE_INTEGER)) {
      return "being delivered by a relay (or waiting for redelivery after a failed attempt); try again later";
    }
    if (stored.state === "deferred" && stored.seq <= (delivered.get(this.layout.flushConsumerName(stored.job.domain)) ?? 0)) {
      return "being delivered by a flush of the domain's held mail; try again later";
    }
    return undefined;
  }

  /** true when done, else the reason it was skipped. */
  private async actOn(action: QueueAction, initial: StoredJob, delivered: Map<string, number>): Promise<StoredJob | string> {
    let stored: StoredJob | undefined = initial;
    for (let attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
      if (!stored) return "no longer queued (delivered or removed meanwhile)";
      const busy = this.inFlight(stored, delivered);
      if (busy) return busy;
      try {
        const outcome = await this.apply(action, stored);
        return outcome === true ? stored : outcome;
      } catch (err) {
        // The record changed under us (a schedule fired, a relay moved it): find it again.
        if (!(err instanceof JetStreamApiError)) throw err;
        this.log.debug("job moved while acting; looking again", { queueId: stored.job.queueId, error: err.message });
      }
      stored = await this.jobs.locate(initial.job.queueId);
    }
    return "kept moving while we acted on it; try again";
  }

  private async apply(action: QueueAction, stored: StoredJob): Promise<true | string> {
    switch (action) {
      case "retry":
        if (stored.state === "ready") return "already ready; it is delivered as soon as a delivery slot is free";
        await this.moves.moveToReady(stored);
        return true;
      case "release":
        if (stored.state !== "held") return `not held (${stored.state})`;
        await this.moves.moveToReady(stored);
        return true;
      case "hold":
        if (stored.state === "held") return "already held";
        await this.moves.hold(stored);
        return true;
      case "delete":
        await this.moves.remove(stored, "deleted");
        return true;
      case "bounce":
        return this.moves.bounce(stored);
    }
  }

  /** The site's record of an action: one entry per message touched, appended to the tracking log in one write. */
  private async audit(action: QueueAction, touched: StoredJob[]): Promise<void> {
    if (touched.length === 0) return;
    const at = new Date().toISOString();
    const outcome: TrackingOutcome | undefined = action === "delete" ? "deleted" : action === "bounce" ? "bounced" : undefined;
    const entries = touched.map((stored) => {
      const { outcome: _queued, remoteReply: _lastError, updatedAt: _now, ...envelope } = this.queuedRecord(stored.job);
      return {
        update: {
          ...envelope,
          ...(outcome ? { outcome } : {}),
          ...(outcome === "bounced" ? { remoteReply: "returned to the sender by the mail administrator" } : {}),
        },
        event: { at, event: action, detail: `by ${this.options.actor} (mxwarden-queue), was ${stored.state}` },
      };
    });
    try {
      await this.tracking.ensure((await this.jsm.streams.info(QUEUE_STREAM)).config.num_replicas);
      await this.tracking.append(entries, "admin", ADMIN_TRACKING_RETENTION_MS);
    } catch (err) {
      this.log.warn("could not record the action in the site's tracking log", { queueIds: touched.map((t) => t.job.queueId), error: err });
    }
  }
}
