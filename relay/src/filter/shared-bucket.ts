// A NATS KV bucket that every relay shares (filter state such as greylisting triplets or callout
// answers). It is created on first use and opened again after a failure, so a queue that comes
// back also brings the filter state back.
//
// With sites (--site/--peer-sites), the state is shared between sites too, without a replication
// loop: each site writes only to its own origin bucket "<name>-<site>", and reads from a view
// bucket "<name>" that sources its own origin and every peer's origin through the peers'
// JetStream domains (leafnode connections). Origins never source anything, so nothing cycles; a
// peer that is cut off simply stops contributing until it returns.

import { Kvm, type KV, type KvEntry, type KvOptions } from "@nats-io/kv";
import type { QueueConnection } from "../queue/index.ts";

export interface SiteTopology {
  /** This site's JetStream domain. */
  self: string;
  /** The other sites' JetStream domains. */
  peers: string[];
}

interface Buckets {
  /** Where this relay writes. */
  write: KV;
  /** Where this relay reads (the same bucket without sites). */
  read: KV;
}

export class SharedBucket {
  private opening: Promise<Buckets> | undefined;
  private readonly queue: QueueConnection;
  private readonly name: string;
  private readonly replicas: number;
  private readonly maxAgeMs: number;
  private readonly sites: SiteTopology | undefined;

  constructor(queue: QueueConnection, name: string, replicas: number, maxAgeMs: number, sites?: SiteTopology) {
    this.queue = queue;
    this.name = name;
    this.replicas = replicas;
    this.maxAgeMs = maxAgeMs;
    this.sites = sites;
    // Open (and create) the buckets as soon as the queue is up, not at the first message: a site's
    // view then starts sourcing its peers' state before this relay has to judge anything by it.
    void queue
      .whenReady()
      .then(() => this.open())
      .catch(() => undefined);
  }

  /** The current entry of `key` (from any site), or null. */
  async get(key: string): Promise<KvEntry | null> {
    return await (await this.open()).read.get(key);
  }

  /** Store `value` unless this site already holds `key`; entries carry their own TTL (e.g. "90s"). */
  async create(key: string, value: string, ttl: string): Promise<void> {
    await (await this.open()).write.create(key, value, ttl);
  }

  /** Remove every value of `key` this site wrote (the removal reaches the other sites' views too). */
  async purge(key: string): Promise<void> {
    await (await this.open()).write.purge(key);
  }

  /** Forget the handles after an error: the next call opens the buckets afresh. */
  reset(): void {
    this.opening = undefined;
  }

  private open(): Promise<Buckets> {
    this.opening ??= this.openBuckets().catch((err: unknown) => {
      this.opening = undefined;
      throw err;
    });
    return this.opening;
  }

  private async openBuckets(): Promise<Buckets> {
    const { js } = this.queue.get();
    const kvm = new Kvm(js);
    // markerTTL enables per-entry TTLs (and leaves a marker when one expires).
    const options: Partial<KvOptions> = { history: 1, replicas: this.replicas, ttl: this.maxAgeMs, markerTTL: 60_000 };
    if (!this.sites) {
      const bucket = await kvm.create(this.name, options);
      return { write: bucket, read: bucket };
    }
    const origin = (site: string): string => `${this.name}-${site}`;
    const write = await kvm.create(origin(this.sites.self), options);
    const read = await kvm.create(this.name, {
      ...options,
      sources: [
        { name: origin(this.sites.self) },
        ...this.sites.peers.map((peer) => ({
          name: `KV_${origin(peer)}`,
          external: { api: `$JS.${peer}.API`, deliver: "" },
          // The client library maps local sources onto the view's subjects itself, not external ones.
          subject_transforms: [{ src: `$KV.${origin(peer)}.>`, dest: `$KV.${this.name}.>` }],
        })),
      ],
    });
    return { write, read };
  }
}
