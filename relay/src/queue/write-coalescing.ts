// nats-core 3.4 writes its outbound buffer to the socket at the microtask checkpoint after anything
// was queued: under load, one write system call per publish, acknowledgement and pull request, since
// each comes from its own I/O callback. Deferring that flush to setImmediate sends everything queued
// within one event-loop turn in a single write, a millisecond later at most. Flushing held mail gains most
// from it; the bench's A/B figures are in docs/benchmarks.md, round 5.
//
// This reaches into the connection's protocol handler, which the package does not export; the
// version is pinned, and test/integration/write-coalescing.test.ts fails if the internals change.

import type { NatsConnection } from "@nats-io/transport-node";

interface ProtocolInternals {
  outbound: { size(): number };
  pendingLimit: number;
  flushPending(): void;
  close(err?: Error): Promise<void>;
}

function isProtocol(value: unknown): value is ProtocolInternals {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Partial<Record<keyof ProtocolInternals, unknown>>;
  const outbound = candidate.outbound as { size?: unknown } | undefined;
  return (
    typeof candidate.flushPending === "function" &&
    typeof candidate.close === "function" &&
    typeof candidate.pendingLimit === "number" &&
    typeof outbound?.size === "function"
  );
}

/** Coalesce the connection's socket writes per event-loop turn; false when the internals are not there. */
export function coalesceWrites(nc: NatsConnection): boolean {
  const protocol: unknown = (nc as NatsConnection & { protocol?: unknown }).protocol;
  if (!isProtocol(protocol)) return false;
  const flushNow = protocol.flushPending.bind(protocol);
  const close = protocol.close.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
    // A full buffer goes out at once, as before.
    if (protocol.outbound.size() >= protocol.pendingLimit) {
      flushNow();
      return;
    }
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  // Closing does not wait for a flush of its own: what is queued goes out first.
  protocol.close = (err?: Error) => {
    flushNow();
    return close(err);
  };
  return true;
}
