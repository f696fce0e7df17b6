// Names of everything the relay keeps in JetStream. One place, so that docs/architecture.md,
// the operator and the relay agree on subjects, streams and consumers.
//
//   MXW_SPOOL  (limits retention)     mxw.spool.<qid>.m        a body above 128 KiB, or its manifest
//                                     mxw.spool.<qid>.c<n>     body chunks n = 1..N for larger ones
//   MXW_QUEUE  (work-queue retention) mxw.queue.ready.<dom>.<qid>   a delivery job, due now (with
//                                                                   its body when that is small)
//                                     mxw.queue.defer.<dom>.<qid>   the same job held by a message
//                                                                   schedule (@at) until its retry time
//   consumer   mxw-deliver            durable pull consumer on mxw.queue.ready.>, shared by all relays
//   consumer   mxw-drain-<dom>        durable pull consumer on mxw.queue.defer.<dom>.>, created when
//                                     the domain's primary comes back: its held jobs are delivered
//                                     where they are (see deliver/held-mail-flush.ts; the name predates "flush")

export const SPOOL_STREAM = "MXW_SPOOL";
export const QUEUE_STREAM = "MXW_QUEUE";
export const DELIVER_CONSUMER = "mxw-deliver";

export const SPOOL_SUBJECTS = "mxw.spool.>";
export const QUEUE_SUBJECTS = "mxw.queue.>";
export const READY_FILTER = "mxw.queue.ready.>";

/**
 * Subject token for a mail domain. Domains are validated LDH names, so they never contain "_",
 * and replacing dots keeps one domain in exactly one token.
 */
export function domainToken(domain: string): string {
  return domain.replace(/\./g, "_");
}

export function spoolMessageSubject(queueId: string): string {
  return `mxw.spool.${queueId}.m`;
}

export function spoolChunkSubject(queueId: string, index: number): string {
  return `mxw.spool.${queueId}.c${index}`;
}

export function spoolAllSubjects(queueId: string): string {
  return `mxw.spool.${queueId}.>`;
}

export function readySubject(domain: string, queueId: string): string {
  return `mxw.queue.ready.${domainToken(domain)}.${queueId}`;
}

export function deferSubject(domain: string, queueId: string): string {
  return `mxw.queue.defer.${domainToken(domain)}.${queueId}`;
}

export function deferFilterForDomain(domain: string): string {
  return `mxw.queue.defer.${domainToken(domain)}.>`;
}

/** The consumer that flushes a domain's held jobs; a domain token is a valid consumer name. */
export function flushConsumerName(domain: string): string {
  return `mxw-drain-${domainToken(domain)}`;
}

/** The domain token of a queue subject (mxw.queue.<state>.<domain token>.<qid>); undefined for a subject with fewer tokens. */
export function domainTokenOfQueueSubject(subject: string): string | undefined {
  return subject.split(".")[3];
}
