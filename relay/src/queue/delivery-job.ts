// A delivery job: the mutable half of a queued message. Jobs are re-published on every retry, so
// they carry the whole retry state.
//
// Where the body lives: a small message travels inside its job record (`inline`), so accepting it
// is one durable write and finishing it one acknowledgement; a large one lives in the spool
// (spool.ts). A record is the job's JSON, then, for an inline job, a line feed and the body.
// JSON.stringify never writes a raw line feed, so the first one ends the job.

export type JobKind = "relay" | "dsn";

export interface DeliveryJob {
  v: 1;
  queueId: string;
  kind: JobKind;
  /** Recipient domain in ASCII form; all recipients of one job share it. */
  domain: string;
  /** Envelope sender; "" is the null sender of a bounce. */
  sender: string;
  /** Recipients still to be delivered. */
  recipients: string[];
  /** Message size in octets, as stored (in the spool or inline). */
  size: number;
  /** The body needs 8BITMIME / SMTPUTF8 on the next hop. */
  eightBit: boolean;
  smtpUtf8: boolean;
  acceptedAt: number;
  /** After this time (epoch ms) the remaining recipients are bounced. */
  expiresAt: number;
  /** Delivery attempts made so far. */
  attempts: number;
  /**
   * Header lines the filters added (spam score, authentication results), CRLF-terminated. They
   * are sent in front of the stored message, which is never rewritten.
   */
  headers?: string;
  /** The body follows the job in the same record instead of living in the spool. */
  inline?: true;
  /** The last temporary failure, for logs and the final bounce. */
  lastError?: string;
  lastRemoteMta?: string;
  /**
   * When the delay warning (spec.queue.delayWarning) was queued for this message, epoch ms. Kept
   * with every deferral, so no retry, restart or other relay sends a second one.
   */
  delayWarnedAt?: number;
  /** The message's Message-ID, without angle brackets, and the SMTP client's address: for message tracking (tracking.ts). */
  messageId?: string;
  client?: string;
}

export class InvalidJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidJobError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const LINE_FEED = 0x0a;

/** A job record; `body` is required for an inline job and refused for any other. */
export function encodeJob(job: DeliveryJob, body?: Uint8Array): Uint8Array {
  const json = encoder.encode(JSON.stringify(job));
  if (job.inline !== true) {
    if (body !== undefined) throw new InvalidJobError("a body travels only with an inline job");
    return json;
  }
  if (body === undefined) throw new InvalidJobError("an inline job needs its body");
  const record = new Uint8Array(json.length + 1 + body.length);
  record.set(json, 0);
  record[json.length] = LINE_FEED;
  record.set(body, json.length + 1);
  return record;
}

export interface JobRecord {
  job: DeliveryJob;
  /** The body of an inline job (a view into the record, not a copy). */
  body?: Buffer;
}

export function decodeJobRecord(data: Uint8Array): JobRecord {
  const end = data.indexOf(LINE_FEED);
  const job = decodeJob(end === -1 ? data : data.subarray(0, end));
  if (job.inline !== true) {
    if (end !== -1) throw new InvalidJobError("job record has trailing data");
    return { job };
  }
  if (end === -1) throw new InvalidJobError("inline job without its body");
  const body = Buffer.from(data.buffer, data.byteOffset + end + 1, data.length - end - 1);
  if (body.length !== job.size) throw new InvalidJobError(`inline body is ${body.length} octets, the job says ${job.size}`);
  return { job, body };
}

/** The job alone, from its JSON (use decodeJobRecord for a stored record). */
export function decodeJob(data: Uint8Array): DeliveryJob {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch {
    throw new InvalidJobError("job is not JSON");
  }
  const job = parsed as Partial<DeliveryJob>;
  if (
    typeof job !== "object" ||
    job === null ||
    job.v !== 1 ||
    typeof job.queueId !== "string" ||
    typeof job.domain !== "string" ||
    typeof job.sender !== "string" ||
    !Array.isArray(job.recipients) ||
    typeof job.acceptedAt !== "number" ||
    typeof job.expiresAt !== "number" ||
    typeof job.attempts !== "number"
  ) {
    throw new InvalidJobError("job lacks required fields");
  }
  if (job.inline !== undefined && job.inline !== true) throw new InvalidJobError("job inline flag is not true");
  if (job.delayWarnedAt !== undefined && typeof job.delayWarnedAt !== "number") throw new InvalidJobError("job delayWarnedAt is not a time");
  if ((job.messageId !== undefined && typeof job.messageId !== "string") || (job.client !== undefined && typeof job.client !== "string")) {
    throw new InvalidJobError("job messageId or client is not a string");
  }
  if (job.headers !== undefined && (typeof job.headers !== "string" || !/^(?:[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*$/.test(job.headers))) {
    throw new InvalidJobError("job headers are not header lines");
  }
  return job as DeliveryJob;
}
