// Requests on the relay's per-message path (storing a job, confirming an acknowledgement) through
// one reply subscription of its own. nats-core's request() settles every request that succeeded
// by also rejecting its promise with a new RequestError("cancelled"): an Error with a captured
// stack per request, a visible share of the relay's CPU at full load (docs/benchmarks.md, round 4). Here a
// reply costs a map lookup. Everything else keeps using the library's requests.

import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

export class RequestTimeoutError extends Error {
  constructor(subject: string, timeoutMs: number) {
    super(`no reply to a request on ${subject} within ${timeoutMs} ms`);
    this.name = "RequestTimeoutError";
  }
}

/** The server answered for nobody: no stream (or JetStream) listens on the subject right now. */
export class NoRespondersError extends Error {
  constructor(subject: string) {
    super(`no responders for ${subject}`);
    this.name = "NoRespondersError";
  }
}

/** A JetStream API error in a publish acknowledgement, e.g. a failed `Nats-Expected-*` check. */
export class PublishRejectedError extends Error {
  readonly code: number;
  readonly errCode: number;
  constructor(code: number, errCode: number, description: string) {
    super(`publish refused: ${description} (${code}/${errCode})`);
    this.name = "PublishRejectedError";
    this.code = code;
    this.errCode = errCode;
  }
}

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  subject: string;
}

export class ReplyInbox {
  private readonly nc: NatsConnection;
  private readonly prefix: string;
  private readonly subscription: Subscription;
  private readonly pending = new Map<string, Pending>();
  private next = 0;

  constructor(nc: NatsConnection) {
    this.nc = nc;
    this.prefix = `${createInbox()}.`;
    // nats.js subscribes again by itself after a reconnect.
    this.subscription = nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (!err) this.onReply(msg);
      },
    });
  }

  /** Requests waiting for their reply. */
  get waiting(): number {
    return this.pending.size;
  }

  request(subject: string, payload: Uint8Array | string, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    const token = (this.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new RequestTimeoutError(subject, timeoutMs));
      }, timeoutMs);
      this.pending.set(token, { resolve, reject, timer, subject });
      try {
        this.nc.publish(subject, payload, headers ? { reply: this.prefix + token, headers } : { reply: this.prefix + token });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(token);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /**
   * Store a message in JetStream and wait for its acknowledgement. `msgId` makes a repeated
   * publish within the stream's duplicate window a no-op.
   */
  async publish(subject: string, data: Uint8Array, msgId: string, timeoutMs: number): Promise<PubAck> {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", msgId);
    const reply = await this.request(subject, data, timeoutMs, h);
    return parsePubAck(reply.data);
  }

  /** Stop listening; requests still waiting fail now instead of at their timeout. */
  close(): void {
    this.subscription.unsubscribe();
    for (const [token, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(token);
      pending.reject(new Error(`connection closed before a reply on ${pending.subject}`));
    }
  }

  private onReply(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length);
    const pending = this.pending.get(token);
    if (!pending) return;
    this.pending.delete(token);
    clearTimeout(pending.timer);
    // A status message (no payload, a code in the header line) instead of an answer.
    if (msg.headers?.code === 503) pending.reject(new NoRespondersError(pending.subject));
    else pending.resolve(msg);
  }
}

interface PubAckReply {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { code?: number; err_code?: number; description?: string };
}

export function parsePubAck(data: Uint8Array): PubAck {
  let reply: PubAckReply;
  try {
    reply = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8")) as PubAckReply;
  } catch {
    throw new Error("publish acknowledgement is not JSON");
  }
  if (reply.error) throw new PublishRejectedError(reply.error.code ?? 0, reply.error.err_code ?? 0, reply.error.description ?? "unknown error");
  if (typeof reply.stream !== "string" || reply.stream === "" || typeof reply.seq !== "number") throw new Error("invalid publish acknowledgement");
  return { stream: reply.stream, seq: reply.seq, duplicate: reply.duplicate === true };
}
