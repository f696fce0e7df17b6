// Reads the DATA stream of one transaction into the spool without holding the whole message in
// memory: line endings are checked on the way, the header section is scanned for mail loops, and
// the size is enforced as bytes arrive. Whatever the verdict, the stream is read to its end so
// the SMTP session stays in sync.

import { isAscii } from "node:buffer";
import type { Readable } from "node:stream";
import type { SpoolWriter } from "../queue/index.ts";
import { HeaderScanner } from "./header-scanner.ts";
import { removeForgedAuthResults } from "./forged-auth-results.ts";
import { LineEndingNormaliser, type BareNewlinePolicy, type SmtpReply } from "../smtp/index.ts";
import { replies } from "./smtp-reply.ts";

export interface IntakeLimits {
  /** This relay's authserv-id: incoming Authentication-Results claiming it are removed. */
  authservId: string;
  maxBytes: number;
  maxReceivedHeaders: number;
  bareNewline: BareNewlinePolicy;
}

export type IntakeOutcome =
  | {
      stored: true;
      size: number;
      header: Buffer;
      bareNewlines: number;
      eightBit: boolean;
      forgedAuthResults: number;
      /** The whole body when it was kept for its job instead of the spool (SpoolWriter.finish). */
      inlineBody: Buffer | undefined;
    }
  | { stored: false; reply: SmtpReply; size: number; reason: "size" | "loop" | "bare-newline" };

/** A byte above 0x7F anywhere in the chunk. Native (SIMD) scan: a JavaScript loop over every byte showed in the relay's CPU profile with large messages (docs/benchmarks.md, round 4). */
function hasEightBit(chunk: Buffer): boolean {
  return !isAscii(chunk);
}

export async function receiveMessage(data: Readable, prefix: Buffer, writer: SpoolWriter, limits: IntakeLimits): Promise<IntakeOutcome> {
  const lines = new LineEndingNormaliser();
  const headers = new HeaderScanner();
  let size = 0;
  let refused: { reply: SmtpReply; reason: "size" | "loop" | "bare-newline" } | undefined;
  let eightBit = false;
  let storeError: unknown;
  const store = async (chunk: Buffer): Promise<void> => {
    if (storeError !== undefined) return;
    try {
      await writer.write(chunk);
    } catch (err) {
      // Keep reading so the client gets a reply at the end of DATA instead of a stalled session.
      storeError = err;
    }
  };
  await store(prefix);

  // The header section is held back until it is complete (at most 256 KiB), so that forged
  // Authentication-Results can be taken out before anything reaches the spool.
  let held: Buffer[] = [];
  let forgedAuthResults = 0;
  /** Store what was held; at the end of data, a message without a body is all header section. */
  const release = async (atEnd: boolean): Promise<void> => {
    const joined = Buffer.concat(held);
    held = [];
    const end = headers.complete ? headers.header.length : atEnd ? joined.length : 0;
    const cleaned = removeForgedAuthResults(joined.subarray(0, end), limits.authservId);
    forgedAuthResults = cleaned.removed;
    await store(cleaned.removed > 0 ? Buffer.concat([cleaned.header, joined.subarray(end)]) : joined);
  };

  const accept = async (chunk: Buffer): Promise<void> => {
    if (chunk.length === 0) return;
    size += chunk.length;
    if (refused) return;
    if (size > limits.maxBytes) {
      refused = { reply: replies.tooBig, reason: "size" };
      return;
    }
    if (limits.bareNewline === "reject" && lines.bareCount > 0) {
      refused = { reply: replies.bareNewline, reason: "bare-newline" };
      return;
    }
    if (!eightBit) eightBit = hasEightBit(chunk);
    if (!headers.done) {
      headers.push(chunk);
      held.push(chunk);
      if (headers.receivedCount() > limits.maxReceivedHeaders) {
        refused = { reply: replies.loop, reason: "loop" };
        return;
      }
      if (headers.done && !headers.complete) {
        // No end of the header section within 256 KiB: too large to check, so refused.
        refused = { reply: replies.headerTooBig, reason: "size" };
        return;
      }
      if (headers.done) await release(false);
      return;
    }
    await store(chunk);
  };

  for await (const raw of data) await accept(lines.push(raw as Buffer));
  await accept(lines.end());
  headers.finish();
  if (held.length > 0 && !refused) await release(true);
  if (!refused && headers.receivedCount() > limits.maxReceivedHeaders) refused = { reply: replies.loop, reason: "loop" };
  if (!refused && limits.bareNewline === "reject" && lines.bareCount > 0) refused = { reply: replies.bareNewline, reason: "bare-newline" };
  if (refused) return { stored: false, size, ...refused };
  if (storeError !== undefined) throw storeError;
  const inlineBody = await writer.finish();
  return { stored: true, size, header: headers.header, bareNewlines: lines.bareCount, eightBit, forgedAuthResults, inlineBody };
}
