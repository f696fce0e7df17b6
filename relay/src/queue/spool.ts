// The spool keeps the bodies of large messages in JetStream (small ones travel inside their
// delivery job: see delivery-job.ts). A body that fits one NATS message is one record; a larger
// one is split into chunks (JetStream stores at most 32 MiB per record, and more than a
// few MB per message is discouraged), followed by a manifest that names the chunk count. The
// manifest is written last, so a body without one was never completely stored.

import { Readable } from "node:stream";
import { headers } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { SPOOL_STREAM, type QueueLayout } from "./layout.ts";

const CHUNKS_HEADER = "Mxw-Chunks";
const SIZE_HEADER = "Mxw-Size";
/** Room left in each NATS message for headers and protocol overhead. */
const PAYLOAD_HEADROOM = 16 * 1024;
const MAX_CHUNK_BYTES = 1024 * 1024;
/**
 * Bodies up to this size travel inside their delivery job. Large enough for most mail (and the
 * benchmark's 100 KB messages); small enough that a retry, which re-publishes the job, and a batch
 * of released jobs stay cheap, and that the job's envelope (up to 1,000 recipients) still fits.
 */
const INLINE_BODY_MAX_BYTES = 128 * 1024;
/** Room a job needs beside an inline body: 1,000 recipients of up to 256 octets, JSON-escaped. */
const JOB_ENVELOPE_RESERVE = 400 * 1024;

/** The largest body that travels inline on a NATS server with this max_payload (0: none). */
export function inlineBodyMaxFor(maxPayload: number): number {
  return Math.max(0, Math.min(INLINE_BODY_MAX_BYTES, maxPayload - JOB_ENVELOPE_RESERVE));
}

export function chunkSizeFor(maxPayload: number): number {
  return Math.max(16 * 1024, Math.min(MAX_CHUNK_BYTES, maxPayload - PAYLOAD_HEADROOM));
}

/**
 * Streams one body into the spool under one or more queue ids (a transaction whose recipients span
 * several domains gets one independent copy per domain, so each copy is purged by its own job).
 * A body that ends within `inlineMaxBytes` before the first chunk was due is never written: the
 * caller puts it inside the delivery job instead.
 */
export class SpoolWriter {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private chunksWritten = 0;
  private totalBytes = 0;
  private wrote = false;
  private readonly js: JetStreamClient;
  private readonly layout: QueueLayout;
  private readonly queueIds: readonly string[];
  private readonly chunkBytes: number;
  private readonly timeoutMs: number;
  private readonly inlineMaxBytes: number;

  constructor(js: JetStreamClient, layout: QueueLayout, queueIds: readonly string[], chunkBytes: number, timeoutMs: number, inlineMaxBytes = 0) {
    this.js = js;
    this.layout = layout;
    this.queueIds = queueIds;
    this.chunkBytes = chunkBytes;
    this.timeoutMs = timeoutMs;
    this.inlineMaxBytes = Math.min(inlineMaxBytes, chunkBytes);
  }

  get size(): number {
    return this.totalBytes;
  }

  /** Something of this body reached the spool (and must be purged if the message is refused). */
  get spooled(): boolean {
    return this.wrote;
  }

  /** Add body bytes; resolves when they are buffered or stored (backpressure for the receiver). */
  async write(data: Buffer): Promise<void> {
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.totalBytes += data.length;
    while (this.pendingBytes >= this.chunkBytes) {
      const all = Buffer.concat(this.pending);
      const chunk = all.subarray(0, this.chunkBytes);
      const rest = all.subarray(this.chunkBytes);
      this.pending.length = 0;
      this.pendingBytes = rest.length;
      if (rest.length > 0) this.pending.push(Buffer.from(rest));
      await this.storeChunk(chunk);
    }
  }

  private async storeChunk(chunk: Buffer): Promise<void> {
    const index = ++this.chunksWritten;
    this.wrote = true;
    await Promise.all(
      this.queueIds.map((queueId) =>
        this.js.publish(this.layout.spoolChunkSubject(queueId, index), chunk, { msgID: `${queueId}.c${index}`, timeout: this.timeoutMs }),
      ),
    );
  }

  /**
   * Store what is left and the manifest; after this resolves the body is durable. Returns the
   * whole body instead, unstored, when it is small enough to travel inline: it is durable only
   * once its job is.
   */
  async finish(): Promise<Buffer | undefined> {
    const rest = Buffer.concat(this.pending);
    this.pending.length = 0;
    this.pendingBytes = 0;
    if (this.inlineMaxBytes > 0 && this.chunksWritten === 0 && rest.length <= this.inlineMaxBytes) return rest;
    this.wrote = true;
    let unchunked: Buffer = rest;
    if (this.chunksWritten > 0 && rest.length > 0) {
      await this.storeChunk(rest);
      unchunked = Buffer.alloc(0);
    }
    const chunks = this.chunksWritten;
    await Promise.all(
      this.queueIds.map((queueId) => {
        const h = headers();
        h.set(CHUNKS_HEADER, String(chunks));
        h.set(SIZE_HEADER, String(this.totalBytes));
        return this.js.publish(this.layout.spoolMessageSubject(queueId), unchunked, { msgID: `${queueId}.m`, headers: h, timeout: this.timeoutMs });
      }),
    );
    return undefined;
  }
}

export class SpoolCorruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpoolCorruptError";
  }
}

export interface StoredBody {
  size: number;
  /** A fresh stream of the body; chunks are fetched one at a time, so memory stays bounded. */
  open(): Readable;
  /** The first bytes of the body (for the header section of a bounce). */
  head(maxBytes: number): Promise<Buffer>;
}

/** A body held in memory: one that travels inside its job. */
function inlineBody(data: Buffer): StoredBody {
  return {
    size: data.length,
    open: () => Readable.from([data], { objectMode: false }),
    head: (maxBytes: number) => Promise.resolve(data.subarray(0, maxBytes)),
  };
}

export class SpoolReader {
  private readonly jsm: JetStreamManager;
  private readonly layout: QueueLayout;
  private readonly stream: string;

  /** `stream` is where the bodies are: this site's spool, or a peer's copy of its spool (MXW_PEER_<peer>). */
  constructor(jsm: JetStreamManager, layout: QueueLayout, stream = SPOOL_STREAM) {
    this.jsm = jsm;
    this.layout = layout;
    this.stream = stream;
  }

  /**
   * The body of a queued message: `inline`, when it travels inside its job, without reading the
   * spool; else the spool's copy, or null when the spool no longer holds it.
   */
  async get(queueId: string, inline?: Buffer): Promise<StoredBody | null> {
    if (inline) return inlineBody(inline);
    let layout = this.layout;
    let manifest = await this.jsm.streams.getMessage(this.stream, { last_by_subj: layout.spoolMessageSubject(queueId) });
    // A body spooled before the site had a name (--site) lives under the unscoped subjects.
    if (!manifest && layout.keepsUnscoped && layout.legacy) {
      layout = layout.legacy;
      manifest = await this.jsm.streams.getMessage(this.stream, { last_by_subj: layout.spoolMessageSubject(queueId) });
    }
    if (!manifest) return null;
    const chunks = Number(manifest.header.get(CHUNKS_HEADER) || "0");
    const size = Number(manifest.header.get(SIZE_HEADER) || String(manifest.data.length));
    const unchunked = Buffer.from(manifest.data);
    const { jsm, stream } = this;
    const fetchChunk = async (index: number): Promise<Buffer> => {
      const stored = await jsm.streams.getMessage(stream, { last_by_subj: layout.spoolChunkSubject(queueId, index) });
      if (!stored) throw new SpoolCorruptError(`chunk ${index} of ${queueId} is missing`);
      return Buffer.from(stored.data);
    };
    return {
      size,
      open(): Readable {
        if (chunks === 0) return Readable.from([unchunked], { objectMode: false });
        return Readable.from(
          (async function* () {
            for (let index = 1; index <= chunks; index++) yield await fetchChunk(index);
          })(),
          { objectMode: false },
        );
      },
      async head(maxBytes: number): Promise<Buffer> {
        const first = chunks === 0 ? unchunked : await fetchChunk(1);
        return first.subarray(0, maxBytes);
      },
    };
  }

  /** Remove a body (and its chunks) once its job is finished. */
  async purge(queueId: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: this.layout.spoolAllSubjects(queueId) });
    if (this.layout.keepsUnscoped && this.layout.legacy) await this.jsm.streams.purge(this.stream, { filter: this.layout.legacy.spoolAllSubjects(queueId) });
  }
}
