// The relay's one connection to NATS. It keeps retrying until the server is there (the relay must
// run and answer 451 while the queue is unreachable), ensures the streams on every (re)connect,
// and tells the rest of the relay whether the queue can take mail right now.

import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type NatsConnection,
} from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log.ts";
import { JobQueue } from "./job-queue.ts";
import { QueueLayout } from "./layout.ts";
import { ShadowCopies, type ShadowCounters } from "./shadow-copies.ts";
import { ensureQueueLayout, type QueueLayoutOptions } from "./queue-setup.ts";
import { ReplyInbox } from "./reply-inbox.ts";
import { SpoolReader, SpoolWriter, chunkSizeFor, inlineBodyMaxFor } from "./spool.ts";
import { coalesceWrites } from "./write-coalescing.ts";

export interface QueueHandles {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Requests on the per-message path (storing jobs, confirming acks); see reply-inbox.ts. */
  inbox: ReplyInbox;
}

/**
 * How the relay logs in to NATS: files, read again at every (re)connect, so a rotated Secret takes
 * effect without a restart. Their contents are never logged.
 */
export type NatsAuth = { nkeyFile: string } | { credsFile: string } | { user: string; passwordFile: string };

export interface QueueConnectionOptions extends QueueLayoutOptions {
  servers: string[];
  name: string;
  auth?: NatsAuth | undefined;
  /** PEM CA that signed the servers' certificates: the connection then requires TLS. */
  caFile?: string | undefined;
  /** How long a publish waits for its PubAck before the SMTP client gets 451. */
  publishTimeoutMs: number;
  /** This site's name (--site, its JetStream domain): it scopes the queue's subjects (layout.ts). */
  site?: string;
  /** The peer sites (--peer-sites): with a site name, accepted mail is shadow-copied to them. */
  peers?: string[];
}

export class QueueUnavailableError extends Error {
  constructor(message = "queue unavailable") {
    super(message);
    this.name = "QueueUnavailableError";
  }
}

export class QueueConnection {
  private handles: QueueHandles | undefined;
  private connected = false;
  private layoutReady = false;
  private closing = false;
  private readonly readyWaiters: Array<() => void> = [];
  private readonly options: QueueConnectionOptions;
  private readonly log: Logger;
  /** The subjects this relay's queue lives on. */
  readonly layout: QueueLayout;
  /** Copies of this site's mail held by its peers, with sites and peers configured. */
  readonly shadow: ShadowCopies | undefined;
  /** Largest message payload the server accepts, known once connected. */
  maxPayload = 1024 * 1024;
  /**
   * How many times the connection to NATS dropped. A job received before a drop may have lost its
   * progress signals with it, and JetStream may have handed it to another relay meanwhile.
   */
  disconnects = 0;

  constructor(options: QueueConnectionOptions, log: Logger, counters?: ShadowCounters) {
    this.options = options;
    this.layout = new QueueLayout(options.site);
    this.log = log.child({ component: "queue" });
    const peers = options.peers ?? [];
    this.shadow = options.site !== undefined && peers.length > 0 ? new ShadowCopies(this.layout, peers, () => this.get(), log, counters) : undefined;
  }

  /** True when a publish has a chance to succeed: connected and the streams exist. */
  isReady(): boolean {
    return this.connected && this.layoutReady && !this.closing;
  }

  /** The live handles, or QueueUnavailableError. */
  get(): QueueHandles {
    if (!this.handles || !this.isReady()) throw new QueueUnavailableError();
    return this.handles;
  }

  get publishTimeoutMs(): number {
    return this.options.publishTimeoutMs;
  }

  /**
   * The delivery jobs, on the live connection (else QueueUnavailableError). `throughReplyInbox`
   * stores them through the reply inbox: the receiver's per-message path (see reply-inbox.ts).
   */
  jobs(options: { throughReplyInbox?: boolean } = {}): JobQueue {
    const { js, jsm, inbox } = this.get();
    return new JobQueue(js, jsm, this.layout, this.publishTimeoutMs, options.throughReplyInbox ? inbox : undefined);
  }

  /** A writer for one body stored under each of `queueIds`, with chunks and inline limit fitted to this server's max_payload. */
  spoolWriter(queueIds: readonly string[]): SpoolWriter {
    return new SpoolWriter(this.get().js, this.layout, queueIds, chunkSizeFor(this.maxPayload), this.publishTimeoutMs, inlineBodyMaxFor(this.maxPayload));
  }

  spoolReader(): SpoolReader {
    return new SpoolReader(this.get().jsm, this.layout);
  }

  /** The settings the streams and consumers are created with. */
  get settings(): QueueLayoutOptions {
    return this.options;
  }

  /** Resolves once the queue is ready (first connect and layout done). */
  whenReady(): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** Start connecting in the background; never rejects. */
  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    let delay = 250;
    while (!this.closing) {
      try {
        const nc = await connect({
          servers: this.options.servers,
          name: this.options.name,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          timeout: 5000,
          pingInterval: 10_000,
          // An Error with a stack for every request and timer, in case one fails: a large share of the
          // relay's CPU under load in the bench's profile (docs/benchmarks.md). Failures keep their message.
          noAsyncTraces: true,
          ...(this.options.auth ? { authenticator: authenticatorFor(this.options.auth) } : {}),
          ...(this.options.caFile ? { tls: { caFile: this.options.caFile } } : {}),
        });
        if (!coalesceWrites(nc)) this.log.warn("nats-core internals changed: socket writes are not coalesced (see write-coalescing.ts)");
        this.handles = { nc, js: jetstream(nc, { timeout: this.options.publishTimeoutMs }), jsm: await jetstreamManager(nc), inbox: new ReplyInbox(nc) };
        this.maxPayload = nc.info?.max_payload ?? this.maxPayload;
        this.connected = true;
        this.log.info("connected to NATS", { server: nc.getServer(), maxPayload: this.maxPayload });
        void this.watchStatus(nc);
        await this.ensureLayout();
        return;
      } catch (err) {
        this.log.warn("NATS not reachable yet", { error: err, retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private async ensureLayout(): Promise<void> {
    let delay = 250;
    while (!this.closing && this.handles) {
      try {
        await ensureQueueLayout(this.handles.jsm, this.layout, this.options);
        this.layoutReady = true;
        this.log.info("queue layout ready");
        if (this.shadow) void this.ensureShadowStreams(this.handles.jsm);
        for (const resolve of this.readyWaiters.splice(0)) resolve();
        return;
      } catch (err) {
        this.log.warn("could not ensure queue streams", { error: err, retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /** In the background: mail is accepted without them, its copies failing (and counted) until they exist. */
  private async ensureShadowStreams(jsm: JetStreamManager): Promise<void> {
    let delay = 250;
    while (!this.closing && this.shadow) {
      try {
        await this.shadow.ensureStreams(jsm, this.options.replicas);
        return;
      } catch (err) {
        this.log.warn("could not ensure the shadow-copy streams", { error: err, retryInMs: delay });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") {
        this.connected = false;
        this.disconnects++;
        this.log.warn("disconnected from NATS", { server: status.server });
      } else if (status.type === "reconnect") {
        this.connected = true;
        this.log.info("reconnected to NATS", { server: status.server });
        // A restarted server without its store (or a new cluster) needs the streams again.
        this.layoutReady = false;
        void this.ensureLayout();
      }
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    const nc = this.handles?.nc;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
    this.handles?.inbox.close();
  }
}

function authenticatorFor(auth: NatsAuth): Authenticator {
  const read = (file: string): Uint8Array => new TextEncoder().encode(readFileSync(file, "utf8").trim());
  if ("nkeyFile" in auth) return nkeyAuthenticator(() => read(auth.nkeyFile));
  if ("credsFile" in auth) return credsAuthenticator(() => read(auth.credsFile));
  return usernamePasswordAuthenticator(auth.user, () => readFileSync(auth.passwordFile, "utf8").trim());
}
