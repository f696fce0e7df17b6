// Turns permanently failed recipients into a bounce (an RFC 3464 DSN) queued like any other mail,
// addressed to the envelope sender; and, the same way, recipients still being retried into the one
// delay warning (spec.queue.delayWarning, Action: delayed). Never to the null sender: no bounces
// about bounces.

import { normaliseDomain } from "#api";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { newQueueId, type DeliveryJob, type JobQueue, type QueueConnection, type StoredBody } from "../queue/index.ts";
import { buildDsn, type DsnReason, type FailedRecipient } from "./dsn.ts";
import { BOUNCE_LIFETIME_MS } from "./delivery-timing.ts";

const HEADER_SECTION_LIMIT = 64 * 1024;

export interface BounceContext {
  /** Where the DSN's body is written (inside its job when it is small enough). */
  queue: Pick<QueueConnection, "spoolWriter">;
  jobs: Pick<JobQueue, "enqueue">;
  hostname: string;
  /** The relay's counters; the admin tool (admin/) has none of its own and passes no-ops. */
  metrics: { [K in "recipientsBounced" | "dsnsSent" | "delayWarningsSent"]: Pick<RelayMetrics[K], "inc"> };
  log: Logger;
}

function headerSection(head: Buffer): Buffer {
  const end = head.indexOf("\r\n\r\n");
  return end === -1 ? head : head.subarray(0, end + 2);
}

/** Queue a DSN for `failed` (or, for "delayed", the recipients still retried); returns false when none may be sent (null sender, bad address). */
export async function queueBounce(
  context: BounceContext,
  job: DeliveryJob,
  failed: FailedRecipient[],
  reason: DsnReason,
  body: StoredBody | null,
): Promise<boolean> {
  // A delayed recipient is not given up on: it is not a bounce.
  if (reason !== "delayed") context.metrics.recipientsBounced.inc({ reason }, failed.length);
  const log = context.log.child({ queueId: job.queueId });
  if (job.sender === "") {
    log.warn("recipients failed for a message from the null sender; no bounce is sent", { recipients: failed.map((f) => f.address), reason });
    return false;
  }
  const at = job.sender.lastIndexOf("@");
  const senderDomain = at > 0 ? normaliseDomain(job.sender.slice(at + 1)) : undefined;
  if (!senderDomain) {
    log.warn("sender address cannot receive a bounce; dropped", { sender: job.sender, reason });
    return false;
  }
  const now = new Date();
  const dsn = buildDsn({
    reportingMta: context.hostname,
    originalSender: job.sender,
    queueId: job.queueId,
    arrivalDate: new Date(job.acceptedAt),
    failed,
    reason,
    willRetryUntil: reason === "delayed" ? new Date(job.expiresAt) : undefined,
    originalHeaders: body ? headerSection(await body.head(HEADER_SECTION_LIMIT)) : Buffer.alloc(0),
    now,
  });
  const queueId = newQueueId();
  const writer = context.queue.spoolWriter([queueId]);
  await writer.write(dsn.message);
  const inline = await writer.finish();
  await context.jobs.enqueue(
    {
      v: 1,
      queueId,
      kind: "dsn",
      domain: senderDomain,
      sender: "",
      recipients: [dsn.recipient],
      size: dsn.message.length,
      // Part 3 carries the original header section as it came, which may hold 8-bit text.
      eightBit: dsn.message.some((byte) => byte > 0x7f),
      smtpUtf8: /[^\x00-\x7f]/.test(job.sender),
      acceptedAt: now.getTime(),
      expiresAt: now.getTime() + BOUNCE_LIFETIME_MS,
      attempts: 0,
      ...(inline ? { inline: true as const } : {}),
    },
    inline,
  );
  context.metrics.dsnsSent.inc();
  if (reason === "delayed") context.metrics.delayWarningsSent.inc();
  log.info(reason === "delayed" ? "delay warning queued" : "bounce queued", { dsnQueueId: queueId, to: job.sender, recipients: failed.length, reason });
  return true;
}
