// A delivery job: the small, mutable half of a queued message (the body lives in the spool).
// Jobs are re-published on every retry, so they carry the whole retry state.

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
  /** Message size in octets, as stored in the spool. */
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
  /** The last temporary failure, for logs and the final bounce. */
  lastError?: string;
  lastRemoteMta?: string;
}

export class InvalidJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidJobError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJob(job: DeliveryJob): Uint8Array {
  return encoder.encode(JSON.stringify(job));
}

export function decodeJob(data: Uint8Array): DeliveryJob {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch {
    throw new InvalidJobError("job is not JSON");
  }
  const job = parsed as Partial<DeliveryJob>;
  if (
    typeof job !== "object" || job === null || job.v !== 1 || typeof job.queueId !== "string" ||
    typeof job.domain !== "string" || typeof job.sender !== "string" || !Array.isArray(job.recipients) ||
    typeof job.acceptedAt !== "number" || typeof job.expiresAt !== "number" || typeof job.attempts !== "number"
  ) {
    throw new InvalidJobError("job lacks required fields");
  }
  if (job.headers !== undefined && (typeof job.headers !== "string" || !/^(?:[!-9;-~]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*$/.test(job.headers))) {
    throw new InvalidJobError("job headers are not header lines");
  }
  return job as DeliveryJob;
}
