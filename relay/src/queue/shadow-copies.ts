// Shadow copies: every message a site accepts is also held by its peer site, so that the loss of a
// whole site (disk, cluster, region) loses no mail. The model is Exchange's shadow redundancy; the
// transport is JetStream sourcing over the leafnode that already joins the sites.
//
//   origin site A   MXW_SHADOW        mxw.A.shadow.copy.<qid>         the job record as queued
//                   (limits, R=site)                                   (with its body when inline)
//                                     mxw.A.shadow.took.<peer>.<qid>  A took over peer's <qid>
//   peer site B     MXW_PEER_A        sources A's MXW_SHADOW and A's spool subjects (mxw.A.spool.>)
//                                     through A's JetStream domain ($JS.A.API)
//
// A copy is written after the 250, off the SMTP client's path: the reply never waits for the other
// site (the lag is the recovery point, exported as a metric). When A finishes the message
// (delivered, bounced, expired), it writes a retirement record on the same subject; one message
// per subject means the retirement replaces the copy, at A and, once sourced, at B. The copies
// left at B are the mail A still holds, as of the lag: those are what B delivers when it takes
// over (deliver/takeover.ts), and B writes a took marker for each, which A reads when it comes
// back, so it does not deliver them again.

import { DiscardPolicy, RetentionPolicy, StorageType, jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { headers, nanos } from "@nats-io/transport-node";
import { MAX_QUEUE_LIFETIME_MS } from "#api";
import type { Logger } from "../log.ts";
import { encodeJob, type DeliveryJob } from "./delivery-job.ts";
import { QueueLayout, SPOOL_STREAM } from "./layout.ts";
import { ensureStream } from "./queue-setup.ts";
import type { QueueHandles } from "./queue-connection.ts";

export const SHADOW_STREAM = "MXW_SHADOW";
/** Header of a retirement record: why the origin site no longer holds the message. */
export const RETIRED_HEADER = "Mxw-Retired";

export type RetiredBecause = "delivered" | "bounced" | "expired" | "taken-over" | "deleted";

/** The stream at this site that holds a peer's copies. */
export function peerStreamName(peer: string): string {
  return `MXW_PEER_${peer}`;
}

const DAY_MS = 86_400_000;

export interface ShadowCounters {
  copied(): void;
  failed(): void;
}

export class ShadowCopies {
  readonly layout: QueueLayout;
  readonly peers: readonly string[];
  private readonly handles: () => QueueHandles;
  private readonly log: Logger;
  private readonly counters: ShadowCounters | undefined;

  constructor(layout: QueueLayout, peers: readonly string[], handles: () => QueueHandles, log: Logger, counters?: ShadowCounters) {
    if (layout.site === undefined) throw new Error("shadow copies need a site name");
    this.layout = layout;
    this.peers = peers;
    this.handles = handles;
    this.log = log.child({ component: "shadow" });
    this.counters = counters;
  }

  /** This site's shadow stream, and one stream per peer sourcing that peer's copies and spool. */
  async ensureStreams(jsm: JetStreamManager, replicas: number): Promise<void> {
    const common = {
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
      // A copy lives as long as its message may: the longest queue lifetime plus a day for the bounce.
      max_age: nanos(MAX_QUEUE_LIFETIME_MS + DAY_MS),
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
      allow_direct: true,
    } satisfies Partial<StreamConfig>;
    await ensureStream(jsm, { name: SHADOW_STREAM, subjects: [this.layout.shadowSubjects], duplicate_window: nanos(120_000), ...common });
    for (const peer of this.peers) {
      // Sourcing from a stream that does not exist yet fails, and nats-server retries such a
      // source only after a long backoff: create this site's copy of a peer's stream only once the
      // peer's own shadow stream answers (until then, the caller keeps trying).
      const peerJsm = await jetstreamManager(this.handles().nc, { domain: peer });
      await peerJsm.streams.info(SHADOW_STREAM);
      const api = `$JS.${peer}.API`;
      const peerLayout = new QueueLayout(peer);
      await ensureStream(jsm, {
        name: peerStreamName(peer),
        ...common,
        sources: [
          { name: SHADOW_STREAM, external: { api, deliver: "" } },
          { name: SPOOL_STREAM, filter_subject: peerLayout.spoolSubjects, external: { api, deliver: "" } },
        ],
      });
    }
  }

  /** Whether the peer's JetStream answers through the leafnode right now (its shadow stream exists). */
  async peerAnswers(peer: string, timeoutMs: number): Promise<boolean> {
    try {
      const peerJsm = await jetstreamManager(this.handles().nc, { domain: peer, timeout: timeoutMs });
      await peerJsm.streams.info(SHADOW_STREAM);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Set up the sourcing of a peer's records again. Seen with nats-server 2.14.9: after this site's
   * server restarts, its sources from a peer reached over a leafnode stay idle for good (active -1)
   * although the peer answers; removing the sources and adding them back resumes them where they
   * stopped (two-sites.test.ts, "a site that comes back").
   */
  async restartPeerSources(peer: string): Promise<void> {
    const { jsm } = this.handles();
    const name = peerStreamName(peer);
    const config = (await jsm.streams.info(name)).config;
    await jsm.streams.update(name, { ...config, sources: [] });
    await jsm.streams.update(name, config);
  }

  /**
   * Copy freshly queued jobs to the shadow stream, without waiting: the caller has answered, or
   * is answering, 250 on the strength of the site's own queue. A failed copy is logged and counted.
   */
  copy(jobs: readonly DeliveryJob[], inlineBody: Uint8Array | undefined): void {
    for (const job of jobs) {
      void this.publish(this.layout.shadowCopySubject(job.queueId), encodeJob(job, job.inline ? inlineBody : undefined), `${job.queueId}.shadow`)
        .then(() => this.counters?.copied())
        .catch((err: unknown) => {
          this.counters?.failed();
          this.log.warn("shadow copy not stored; the message is held by this site only", { queueId: job.queueId, error: err });
        });
    }
  }

  /** The message left this site's queue: its copies, here and at the peers, are no longer needed. */
  async retire(queueId: string, because: RetiredBecause): Promise<void> {
    const h = headers();
    h.set(RETIRED_HEADER, because);
    await this.publish(this.layout.shadowCopySubject(queueId), new Uint8Array(), `${queueId}.retired`, h);
  }

  /**
   * Record that this site took over a peer's message (read by the peer when it comes back). False
   * when another relay of the site recorded it first (JetStream's duplicate window on the id): two
   * relays taking over at once queue the message once and count it once.
   */
  async markTakenOver(peer: string, queueId: string): Promise<boolean> {
    return !(await this.publish(this.layout.takenOverSubject(peer, queueId), new Uint8Array(), `${peer}.${queueId}.took`)).duplicate;
  }

  /** Whether this site already took over the peer's message. */
  async tookOver(peer: string, queueId: string): Promise<boolean> {
    const { jsm } = this.handles();
    return (await jsm.direct.getMessage(SHADOW_STREAM, { last_by_subj: this.layout.takenOverSubject(peer, queueId) })) !== null;
  }

  /**
   * The peer that took over this site's message while this site was cut off or down, if any (as
   * far as that peer's markers have reached this site).
   */
  async takenOverBy(queueId: string): Promise<string | undefined> {
    const { jsm } = this.handles();
    const self = this.layout.site as string;
    for (const peer of this.peers) {
      const marker = await jsm.direct
        .getMessage(peerStreamName(peer), { last_by_subj: new QueueLayout(peer).takenOverSubject(self, queueId) })
        .catch(() => null);
      if (marker) return peer;
    }
    return undefined;
  }

  private async publish(subject: string, data: Uint8Array, msgID: string, h = headers()): Promise<{ duplicate: boolean }> {
    const { js } = this.handles();
    return await js.publish(subject, data, { msgID, headers: h });
  }
}
