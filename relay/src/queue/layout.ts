// Names of everything the relay keeps in JetStream. One place, so that docs/architecture.md,
// the operator and the relay agree on subjects, streams and consumers.
//
//   MXW_SPOOL  (limits retention)     mxw.spool.<qid>.m        a body above 128 KiB, or its manifest
//                                     mxw.spool.<qid>.c<n>     body chunks n = 1..N for larger ones
//   MXW_QUEUE  (work-queue retention) mxw.queue.ready.<dom>.<qid>   a delivery job, due now (with
//                                                                   its body when that is small)
//                                     mxw.queue.defer.<dom>.<qid>   the same job held by a message
//                                                                   schedule (@at) until its retry time
//                                     mxw.queue.held.<dom>.<qid>    the same job held by an administrator
//                                                                   (mxwarden-queue hold): no consumer reads
//                                                                   it; its schedule (@at its expiry) makes it
//                                                                   ready when its queue lifetime ends, to bounce
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

/** Where an administrator's hold keeps a job (admin/): no consumer reads it. */
export function heldSubject(domain: string, queueId: string): string {
  return `mxw.queue.held.${domainToken(domain)}.${queueId}`;
}

/** The queue's jobs, optionally of one domain (token) only: ready, deferred and held. */
export function queueFilterForDomainToken(token: string | undefined): string {
  return token === undefined ? QUEUE_SUBJECTS : `mxw.queue.*.${token}.*`;
}

/** Wherever a queue id's job is (ready, deferred or held, any domain): for finding it by id. */
export function queueFilterForQueueId(queueId: string): string {
  return `mxw.queue.*.*.${queueId}`;
}

/** The state token of a queue subject (mxw.queue.<state>.<domain token>.<qid>): ready, defer or held. */
export function stateOfQueueSubject(subject: string): string | undefined {
  return subject.split(".")[2];
}

/** Message tracking (admin/, mxwarden-queue find): one record per queue id, kept for --tracking-retention. */
export const TRACKING_BUCKET = "mxw-tracking";

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
