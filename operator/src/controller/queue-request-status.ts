// The pure half of carrying out a RelayQueueRequest: what each site is asked (always narrowed to
// the referenced RelayDomain's mail domain), and how the sites' answers become the request's
// status (counts per site, one capped list, conditions). No I/O here; queue-requests.ts does that.

import {
  DEFAULT_QUEUE_REQUEST_TTL_SECONDS,
  MAX_LISTED_IN_STATUS,
  MAX_RECIPIENTS_IN_STATUS,
  MUTATING_QUEUE_ACTIONS,
  parseDuration,
  setCondition,
  type Condition,
  type ListedMessage,
  type ListedRecord,
  type MutatingQueueAction,
  type QueueRequestAction,
  type RelayQueueRequestSpec,
  type RelayQueueRequestStatus,
  type SiteQueueResult,
} from "#api";
import type { QueuedMessage, QueueSelector, TrackingQuery, TrackingRecord } from "./site-queue.ts";

export const COMPLETE = "Complete";
export const FAILED = "Failed";

export function isMutating(action: QueueRequestAction): action is MutatingQueueAction {
  return (MUTATING_QUEUE_ACTIONS as readonly string[]).includes(action);
}

/** The selector a site's list is asked with: the request's filters, and always the domain. */
export function siteSelector(spec: RelayQueueRequestSpec, mailDomain: string): QueueSelector {
  const selector = spec.selector ?? {};
  const olderThanMs = selector.olderThan === undefined ? undefined : parseDuration(selector.olderThan);
  return {
    domain: mailDomain,
    ...(selector.queueIds && selector.queueIds.length > 0 ? { queueIds: [...selector.queueIds] } : {}),
    ...(selector.sender !== undefined ? { sender: selector.sender } : {}),
    ...(selector.recipient !== undefined ? { recipient: selector.recipient } : {}),
    ...(olderThanMs !== undefined ? { olderThanMs } : {}),
    ...(selector.state !== undefined ? { state: selector.state } : {}),
  };
}

/** The tracking query of a find. The tracking bucket knows every domain: the answer is filtered by domain after. */
export function trackingQuery(spec: RelayQueueRequestSpec): TrackingQuery {
  const selector = spec.selector ?? {};
  const sinceMs = selector.since === undefined ? undefined : parseDuration(selector.since);
  return {
    ...(selector.messageId !== undefined ? { messageId: selector.messageId } : {}),
    ...(selector.sender !== undefined ? { sender: selector.sender } : {}),
    ...(selector.recipient !== undefined ? { recipient: selector.recipient } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
  };
}

/**
 * Only what belongs to the domain, whatever a site answered: the request can name nothing else,
 * and this check does not rely on the queue library honouring the selector's domain.
 */
export function ofDomain<T extends { domain: string }>(items: T[], mailDomain: string): T[] {
  return items.filter((item) => item.domain === mailDomain);
}

/** What one site answered, or why it could not. */
export interface SiteOutcome {
  site: string;
  matched: number;
  messages?: QueuedMessage[];
  records?: TrackingRecord[];
  done?: string[];
  skipped?: Array<{ queueId: string; reason: string }>;
  error?: string;
}

function capRecipients(recipients: string[]): string[] {
  return recipients.slice(0, MAX_RECIPIENTS_IN_STATUS);
}

function listedMessage(site: string, m: QueuedMessage): ListedMessage {
  return {
    site,
    queueId: m.queueId,
    domain: m.domain,
    sender: m.sender,
    recipients: capRecipients(m.recipients),
    state: m.state,
    arrivedAt: m.arrivedAt,
    size: m.size,
    attempts: m.attempts,
    ...(m.nextAttemptAt !== undefined ? { nextAttemptAt: m.nextAttemptAt } : {}),
    ...(m.lastError !== undefined ? { lastError: m.lastError.slice(0, 4096) } : {}),
  };
}

function listedRecord(site: string, r: TrackingRecord): ListedRecord {
  return {
    site,
    queueId: r.queueId,
    ...(r.messageId !== undefined ? { messageId: r.messageId.slice(0, 998) } : {}),
    sender: r.sender,
    recipients: capRecipients(r.recipients),
    domain: r.domain,
    ...(r.client !== undefined ? { client: r.client } : {}),
    arrivedAt: r.arrivedAt,
    outcome: r.outcome,
    ...(r.remoteReply !== undefined ? { remoteReply: r.remoteReply.slice(0, 4096) } : {}),
    updatedAt: r.updatedAt,
  };
}

/**
 * Bytes of JSON one list of a status may hold. 200 messages of 100 long recipients each would be
 * megabytes, past what etcd stores in one object (1.5 MiB by default): the list stops earlier.
 */
export const MAX_LIST_BYTES_IN_STATUS = 512 * 1024;

/** The first entries, at most `MAX_LISTED_IN_STATUS` and `MAX_LIST_BYTES_IN_STATUS`, and how many were left out. */
function capped<T>(items: T[]): { kept: T[]; left: number } {
  const kept: T[] = [];
  let bytes = 0;
  for (const item of items) {
    bytes += Buffer.byteLength(JSON.stringify(item)) + 1;
    if (kept.length === MAX_LISTED_IN_STATUS || bytes > MAX_LIST_BYTES_IN_STATUS) break;
    kept.push(item);
  }
  return { kept, left: items.length - kept.length };
}

/**
 * The finished status: per-site counts, the capped list the action produces, the phase, and a
 * Complete or Failed condition (as a Job has them, so `kubectl wait --for=condition=Complete`
 * works). Named queue ids that no site holds for the domain are reported as skipped.
 */
export function finishedStatus(
  spec: RelayQueueRequestSpec,
  mailDomain: string,
  outcomes: SiteOutcome[],
  previous: RelayQueueRequestStatus | undefined,
  generation: number,
  now: Date,
): RelayQueueRequestStatus {
  const results: SiteQueueResult[] = outcomes.map((o) => ({
    site: o.site,
    matched: o.matched,
    done: o.done?.length ?? o.messages?.length ?? o.records?.length ?? 0,
    skipped: o.skipped?.length ?? 0,
    ...(o.error !== undefined ? { error: o.error.slice(0, 4096) } : {}),
  }));
  let truncated = 0;
  const lists: Partial<RelayQueueRequestStatus> = {};
  if (spec.action === "list") {
    const all = outcomes
      .flatMap((o) => (o.messages ?? []).map((m) => listedMessage(o.site, m)))
      .sort((a, b) => a.arrivedAt.localeCompare(b.arrivedAt) || a.queueId.localeCompare(b.queueId));
    const { kept, left } = capped(all);
    lists.messages = kept;
    truncated += left;
  } else if (spec.action === "find") {
    const all = outcomes
      .flatMap((o) => (o.records ?? []).map((r) => listedRecord(o.site, r)))
      .sort((a, b) => a.arrivedAt.localeCompare(b.arrivedAt) || a.queueId.localeCompare(b.queueId));
    const { kept, left } = capped(all);
    lists.records = kept;
    truncated += left;
  } else {
    const done = capped(outcomes.flatMap((o) => (o.done ?? []).map((queueId) => ({ site: o.site, queueId }))));
    lists.queueIds = done.kept;
    truncated += done.left;
    const seen = new Set(outcomes.flatMap((o) => [...(o.done ?? []), ...(o.skipped ?? []).map((s) => s.queueId)]));
    const failedSites = outcomes.some((o) => o.error !== undefined);
    // A site that failed may hold the id: "not queued" would then be a guess.
    const unknown = failedSites ? [] : (spec.selector?.queueIds ?? []).filter((id) => !seen.has(id));
    const skipped = capped([
      ...outcomes.flatMap((o) => (o.skipped ?? []).map((s) => ({ site: o.site, queueId: s.queueId, reason: s.reason.slice(0, 1024) }))),
      ...unknown.map((queueId) => ({ queueId, reason: `not queued for ${mailDomain} at any site` })),
    ]);
    lists.skippedMessages = skipped.kept;
    truncated += skipped.left;
  }
  const errors = outcomes.filter((o) => o.error !== undefined);
  let conditions: Condition[] = (previous?.conditions ?? []).filter((c) => c.type !== COMPLETE && c.type !== FAILED);
  const failed = errors.length > 0 || outcomes.length === 0;
  if (failed) {
    const message =
      outcomes.length === 0
        ? `no RelaySite serves ${mailDomain}`
        : errors
            .map((o) => `${o.site}: ${o.error}`)
            .join("; ")
            .slice(0, 32_768);
    conditions = setCondition(
      conditions,
      { type: FAILED, status: "True", reason: outcomes.length === 0 ? "NoSites" : "SiteErrors", message, observedGeneration: generation },
      now,
    );
  } else {
    const total = results.reduce((sum, r) => sum + r.done, 0);
    conditions = setCondition(
      conditions,
      { type: COMPLETE, status: "True", reason: "Done", message: `${spec.action}: ${total} at ${outcomes.length} site(s)`, observedGeneration: generation },
      now,
    );
  }
  return {
    ...(previous?.startedAt ? { startedAt: previous.startedAt } : { startedAt: now.toISOString() }),
    phase: failed ? "Failed" : "Succeeded",
    domain: mailDomain,
    completedAt: now.toISOString(),
    conditions,
    results,
    ...lists,
    ...(truncated > 0 ? { truncated } : {}),
  };
}

/** A request that failed before any site was asked (no such RelayDomain, invalid, interrupted). */
export function failedStatus(
  reason: string,
  message: string,
  previous: RelayQueueRequestStatus | undefined,
  generation: number,
  now: Date,
  mailDomain?: string,
): RelayQueueRequestStatus {
  const conditions = setCondition(
    (previous?.conditions ?? []).filter((c) => c.type !== COMPLETE),
    { type: FAILED, status: "True", reason, message, observedGeneration: generation },
    now,
  );
  return {
    ...(previous?.startedAt ? { startedAt: previous.startedAt } : {}),
    phase: "Failed",
    ...(mailDomain !== undefined ? { domain: mailDomain } : {}),
    completedAt: now.toISOString(),
    conditions,
    ...(previous?.results ? { results: previous.results } : {}),
  };
}

/** Milliseconds until a finished request is due for deletion (≤ 0: now), or undefined while it runs. */
export function ttlRemainingMs(spec: RelayQueueRequestSpec, status: RelayQueueRequestStatus | undefined, now: number): number | undefined {
  if (status?.phase !== "Succeeded" && status?.phase !== "Failed") return undefined;
  const completed = Date.parse(status.completedAt ?? "");
  if (Number.isNaN(completed)) return 0;
  return completed + (spec.ttlSecondsAfterFinished ?? DEFAULT_QUEUE_REQUEST_TTL_SECONDS) * 1000 - now;
}
