// Takeover: when a peer site has been out of contact for --takeover-after, this site delivers the
// peer's mail from the shadow copies it holds (queue/shadow-copies.ts). The copies that are still
// live, i.e. not retired by the peer as of the last record that arrived, are queued here like
// mail this site accepted, and a took marker per message tells the peer, when it comes back, to
// leave them alone.
//
// From one site, a cut link and a lost peer look the same: no records arrive. A takeover on a cut
// link delivers what the peer also delivers (every copy still live here), so --takeover-after is
// meant to be longer than the partitions a deployment rides out, and the manual trigger
// (`mxwarden-queue takeover --peer`) is for an operator who knows the peer is gone. docs/architecture.md
// ("Two sites") has the whole story.

import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import {
  RETIRED_HEADER,
  QueueLayout,
  SpoolReader,
  decodeJobRecord,
  peerStreamName,
  queueIdOfSubject,
  type JobQueue,
  type QueueConnection,
  type ShadowCopies,
  type SpoolWriter,
} from "../queue/index.ts";

export interface TakeoverResult {
  /** Copies queued here for delivery. */
  taken: number;
  /** Live copies already taken over before (by this relay or another of the site). */
  already: number;
  /** Copies that could not be taken (body not copied yet, unreadable record); logged one by one. */
  failed: number;
}

/** What a takeover writes through: a relay's QueueConnection, or the admin tool's connection. */
export interface TakeoverQueue {
  readonly shadow: ShadowCopies | undefined;
  get(): { jsm: JetStreamManager };
  jobs(): JobQueue;
  spoolWriter(queueIds: readonly string[]): SpoolWriter;
}

/** Queue here every live copy of `peer`'s mail. Safe to run again and from several relays at once. */
export async function takeOver(queue: TakeoverQueue, peer: string, log: Logger, metrics?: RelayMetrics): Promise<TakeoverResult> {
  const shadow = queue.shadow;
  if (!shadow || !shadow.peers.includes(peer)) throw new Error(`"${peer}" is not a peer site of this relay (--peer-sites)`);
  const { jsm } = queue.get();
  const stream = peerStreamName(peer);
  const peerLayout = new QueueLayout(peer);
  const peerSpool = new SpoolReader(jsm, peerLayout, stream);
  const result: TakeoverResult = { taken: 0, already: 0, failed: 0 };
  for (const subject of await copySubjects(jsm, stream, peerLayout)) {
    const queueId = queueIdOfSubject(subject);
    const stored = await jsm.direct.getMessage(stream, { last_by_subj: subject });
    if (!stored || stored.header?.get(RETIRED_HEADER)) continue;
    try {
      if (await shadow.tookOver(peer, queueId)) {
        result.already++;
        continue;
      }
      if (await takeOne(queue, shadow, peer, Buffer.from(stored.data), peerSpool)) {
        result.taken++;
        metrics?.takeoverMessages.inc({ peer });
      } else {
        result.already++;
      }
    } catch (err) {
      result.failed++;
      log.error("could not take over a peer's message", { peer, queueId, error: err });
    }
  }
  log.warn("took over the peer site's mail", { peer, ...result });
  return result;
}

/** The subjects of the peer's copies held here, retired ones included (they are skipped one by one). */
async function copySubjects(jsm: JetStreamManager, stream: string, peerLayout: QueueLayout): Promise<string[]> {
  const info = await jsm.streams.info(stream, { subjects_filter: peerLayout.shadowCopyFilter });
  return Object.keys(info.state.subjects ?? {});
}

/** Queue one copy here; false when another relay of the site took it at the same time. */
async function takeOne(queue: TakeoverQueue, shadow: ShadowCopies, peer: string, record: Buffer, peerSpool: SpoolReader): Promise<boolean> {
  const { job, body: inline } = decodeJobRecord(record);
  let body = inline;
  if (!job.inline) {
    const spooled = await peerSpool.get(job.queueId);
    if (!spooled) throw new Error("the body has not reached this site (the copy lagged behind)");
    const writer = queue.spoolWriter([job.queueId]);
    for await (const chunk of spooled.open()) await writer.write(chunk as Buffer);
    body = await writer.finish();
  }
  await queue.jobs().enqueue(body ? { ...job, inline: true } : job, body);
  return await shadow.markTakenOver(peer, job.queueId);
}

/** A source that has not heard from its peer for this long (heartbeats come about every second) is stale. */
const STALE_SOURCE_MS = 5000;
const PEER_PROBE_TIMEOUT_MS = 2000;
/** How long a starting relay waits for a peer site to answer at all. */
const PEER_ANSWER_WAIT_MS = 5000;

export interface PeerWatchOptions {
  /** Take over a peer's mail after this long without contact; 0 never does. */
  takeoverAfterMs: number;
  checkIntervalMs: number;
}

/**
 * Watches each peer's shadow copies: exports how long since the peer was last heard from and how
 * far its copies lag, and takes over once the silence reaches --takeover-after. One takeover per
 * outage; contact again re-arms it.
 */
export class PeerWatch {
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private readonly started = Date.now();
  private readonly takenOver = new Set<string>();
  /** When each peer was last heard from (epoch ms): its records arriving, or its JetStream answering. */
  private readonly lastHeard = new Map<string, number>();
  private readonly lastRestart = new Map<string, number>();
  private readonly queue: QueueConnection;
  private readonly metrics: RelayMetrics;
  private readonly options: PeerWatchOptions;
  private readonly log: Logger;

  constructor(queue: QueueConnection, metrics: RelayMetrics, options: PeerWatchOptions, log: Logger) {
    this.queue = queue;
    this.metrics = metrics;
    this.options = options;
    this.log = log.child({ component: "peer-watch" });
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.options.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Resolves once every peer's records are current here (in contact, nothing lagging), or when
   * waiting is pointless. A site coming back after its peer took over must read the peer's took
   * markers before it delivers its old queue. A peer that does not answer within
   * PEER_ANSWER_WAIT_MS (the leafnode needs a moment after a restart) cannot send any: the relay
   * delivers then; one that answers is waited for, up to `timeoutMs` in all.
   */
  async caughtUp(timeoutMs: number): Promise<boolean> {
    const shadow = this.queue.shadow;
    if (!shadow) return true;
    const started = Date.now();
    const deadline = started + timeoutMs;
    await Promise.race([this.queue.whenReady(), new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
    let answered = false;
    while (Date.now() < deadline) {
      try {
        let current = true;
        for (const peer of shadow.peers) {
          const sources = (await this.queue.get().jsm.streams.info(peerStreamName(peer))).sources ?? [];
          if (sources.length === 0 || sources.some((source) => source.active < 0 || source.active / 1e6 > STALE_SOURCE_MS || source.lag > 0)) current = false;
        }
        if (current) return true;
        answered ||= (await Promise.all(shadow.peers.map((peer) => shadow.peerAnswers(peer, PEER_PROBE_TIMEOUT_MS)))).some(Boolean);
      } catch {
        // Not there yet (streams being created, queue reconnecting): ask again.
      }
      if (!answered && Date.now() - started >= PEER_ANSWER_WAIT_MS) {
        this.log.warn("peer sites do not answer; delivering without their latest took markers");
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    this.log.warn("peer sites not current; delivering without their latest took markers", { waitedMs: timeoutMs });
    return false;
  }

  private async check(): Promise<void> {
    const shadow = this.queue.shadow;
    if (this.checking || !shadow || !this.queue.isReady()) return;
    this.checking = true;
    try {
      for (const peer of shadow.peers) await this.checkPeer(peer);
    } catch (err) {
      this.log.debug("peer check failed", { error: err });
    } finally {
      this.checking = false;
    }
  }

  private async checkPeer(peer: string): Promise<void> {
    const shadow = this.queue.shadow as ShadowCopies;
    const info = await this.queue.get().jsm.streams.info(peerStreamName(peer));
    const sources = info.sources ?? [];
    this.metrics.peerShadowLag.set(
      { peer },
      sources.reduce((sum, source) => sum + source.lag, 0),
    );
    // `active` is how long ago a source last heard from the peer (ns; heartbeats count), -1 never.
    const now = Date.now();
    const stale = sources.length === 0 || sources.some((source) => source.active < 0 || source.active / 1e6 > STALE_SOURCE_MS);
    if (!stale) {
      this.lastHeard.set(peer, now - Math.max(...sources.map((source) => source.active / 1e6)));
    } else if (await shadow.peerAnswers(peer, PEER_PROBE_TIMEOUT_MS)) {
      // The peer is there but its records do not flow: a source stuck after a restart (see
      // restartPeerSources). The peer is alive, so this is no reason to take over.
      this.lastHeard.set(peer, now);
      if (now - (this.lastRestart.get(peer) ?? 0) >= 2 * STALE_SOURCE_MS) {
        this.lastRestart.set(peer, now);
        this.log.info("peer site answers but its records do not arrive; restarting the sourcing", { peer });
        await shadow.restartPeerSources(peer);
      }
    }
    const silentMs = now - (this.lastHeard.get(peer) ?? this.started);
    this.metrics.peerLastContact.set({ peer }, silentMs / 1000);
    if (silentMs < STALE_SOURCE_MS) {
      if (this.takenOver.delete(peer)) this.log.info("peer site heard from again", { peer });
      return;
    }
    if (this.options.takeoverAfterMs <= 0 || silentMs < this.options.takeoverAfterMs || this.takenOver.has(peer)) return;
    this.takenOver.add(peer);
    this.log.warn("peer site silent for longer than --takeover-after; taking over its mail", { peer, silentSeconds: Math.round(silentMs / 1000) });
    try {
      await takeOver(this.queue, peer, this.log, this.metrics);
    } catch (err) {
      // The next check tries again.
      this.takenOver.delete(peer);
      throw err;
    }
  }
}
