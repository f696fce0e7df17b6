// Queue ids: unique, safe as a NATS subject token and in a Received header, and sortable by
// acceptance time (the first 9 characters are the millisecond clock in base 36).
import { randomFillSync } from "node:crypto";

// Random bytes drawn 4 KiB at a time: one call into the CSPRNG per 512 ids instead of one per id
// (randomBytes(8) per id showed in the relay's CPU profile under load; docs/benchmarks.md, round 4).
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function randomHex8(): string {
  if (poolOffset + 8 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const hex = pool.toString("hex", poolOffset, poolOffset + 8);
  poolOffset += 8;
  return hex;
}

export function newQueueId(now = Date.now()): string {
  const clock = now.toString(36).padStart(9, "0");
  return `${clock}${randomHex8()}`.toUpperCase();
}

const queueIdPattern = /^[0-9A-Z]{25}$/;

export function isQueueId(value: string): boolean {
  return queueIdPattern.test(value);
}

/** The acceptance time (epoch ms) a queue id starts with, or NaN for anything else. */
export function queueIdTime(queueId: string): number {
  return isQueueId(queueId) ? parseInt(queueId.slice(0, 9), 36) : Number.NaN;
}

/** The queue id at the end of a queue subject (mxw.queue.<state>.<domain>.<qid>). */
export function queueIdOfSubject(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}
