// A NATS KV bucket in the site's JetStream that every relay shares (filter state such as greylisting
// triplets or callout answers). It is created on first use and opened again after a failure, so a
// queue that comes back also brings the filter state back.

import { Kvm, type KV } from "@nats-io/kv";
import type { QueueConnection } from "../queue/queue-connection.ts";

export class SharedBucket {
  private opening: Promise<KV> | undefined;
  private readonly queue: QueueConnection;
  private readonly name: string;
  private readonly replicas: number;
  private readonly maxAgeMs: number;

  constructor(queue: QueueConnection, name: string, replicas: number, maxAgeMs: number) {
    this.queue = queue;
    this.name = name;
    this.replicas = replicas;
    this.maxAgeMs = maxAgeMs;
  }

  /** The bucket; entries may carry their own TTL (markerTTL enables per-message TTLs). */
  open(): Promise<KV> {
    this.opening ??= (async () => {
      const { js } = this.queue.get();
      return new Kvm(js).create(this.name, { history: 1, replicas: this.replicas, ttl: this.maxAgeMs, markerTTL: 60_000 });
    })().catch((err: unknown) => {
      this.opening = undefined;
      throw err;
    });
    return this.opening;
  }

  /** Forget the handle after an error: the next open() starts afresh. */
  reset(): void {
    this.opening = undefined;
  }
}
