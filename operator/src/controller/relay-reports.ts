// The queue reports of one site's relays, one per relay (api/queue-report.ts), read
// together: a site runs a domain's generation only when every live relay has loaded it, and a
// deleted domain is drained only when every live relay has loaded the deletion. A relay that
// stopped writing (its pod is gone) no longer counts once its report is several report intervals
// old, and its key is removed from the ConfigMap.

import { parseQueueReport, type DomainQueueFigures, type QueueReport } from "#api";

/** Report interval assumed for relays that do not say theirs (written before per-relay reports). */
const DEFAULT_REPORT_INTERVAL_MS = 10_000;
/** Reports a live relay may miss in a row (API server slow, a write skipped) before it counts as gone. */
const MISSED_REPORTS = 3;
/** Allowance for the clocks of the site's nodes and the operator's, which both stamp times here. */
const CLOCK_SKEW_MS = 30_000;

export interface KeyedReport {
  /** The relay's key in the status ConfigMap. */
  key: string;
  report: QueueReport;
}

export interface SiteReports {
  /** Reports of relays that are alive, newest first. */
  live: KeyedReport[];
  /** Keys whose relays are gone (stale reports) or unreadable: to be removed. */
  gone: string[];
}

/** Sorts the keys of the relays' status ConfigMap into live reports and keys to remove. */
export function readSiteReports(data: Record<string, string> | undefined, now: Date): SiteReports {
  const live: KeyedReport[] = [];
  const gone: string[] = [];
  for (const [key, text] of Object.entries(data ?? {})) {
    const report = parseQueueReport(text);
    const age = report ? now.getTime() - Date.parse(report.updatedAt) : Number.NaN;
    const limit = MISSED_REPORTS * (report?.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS) + CLOCK_SKEW_MS;
    if (report && age <= limit) live.push({ key, report });
    else gone.push(key);
  }
  live.sort((a, b) => Date.parse(b.report.updatedAt) - Date.parse(a.report.updatedAt));
  return { live, gone };
}

/** One domain as the live relays of a site report it. */
export interface DomainAtSite {
  /** Live relays. */
  relays: number;
  /** Live relays that have loaded the domain. */
  loaded: number;
  /** The lowest generation the live relays run; absent until every one of them has loaded the domain. */
  appliedGeneration?: number;
  /** Queue figures of the newest report (they come from the site's shared queue). */
  queue?: Pick<DomainQueueFigures, "queued" | "oldestQueuedSeconds">;
}

export function domainAtSite(reports: SiteReports, mailDomain: string): DomainAtSite {
  const figures = reports.live.map((r) => r.report.domains[mailDomain]).filter((f): f is DomainQueueFigures => f !== undefined);
  const newest = figures[0];
  return {
    relays: reports.live.length,
    loaded: figures.length,
    ...(figures.length > 0 && figures.length === reports.live.length ? { appliedGeneration: Math.min(...figures.map((f) => f.generation)) } : {}),
    ...(newest ? { queue: { queued: newest.queued, oldestQueuedSeconds: newest.oldestQueuedSeconds } } : {}),
  };
}

/**
 * What a domain's reconcile reads from one site's reports, as a string to compare: the site poll
 * reconciles only the domains whose view changed, not all of them (10,000 every poll kept the
 * operator's queue full and a changed domain waiting behind the rest). `atSite` is domainAtSite's
 * answer, when the caller has it already.
 */
export function domainView(reports: SiteReports, mailDomain: string, atSite = domainAtSite(reports, mailDomain)): string {
  return JSON.stringify([atSite, primaryAtSite(reports, mailDomain)]);
}

/** The mail domains whose view differs between two readings, or that only one of them has. */
export function changedViews(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): Set<string> {
  const changed = new Set<string>();
  for (const [domain, view] of after) if (before.get(domain) !== view) changed.add(domain);
  for (const domain of before.keys()) if (!after.has(domain)) changed.add(domain);
  return changed;
}

export interface DrainPending {
  reason: string;
  queued: number;
  /** Waiting for the relays to load the deletion and report, which they do at once: worth looking again soon. */
  awaitingRelays: boolean;
}

/**
 * What a deleted domain still waits for at one site, or undefined when the site is drained: every
 * live relay (at least as many as are ready) reported after the deletion with the domain retired
 * or gone, and the newest report holds no mail for it.
 */
export function drainPending(reports: SiteReports, mailDomain: string, deletedAt: number, readyRelays: number): DrainPending | undefined {
  const relays = reports.live.length;
  if (relays === 0) return { reason: "no relay has reported", queued: 0, awaitingRelays: true };
  const retired = reports.live.filter(({ report }) => Date.parse(report.updatedAt) >= deletedAt && report.domains[mailDomain]?.retiring !== false).length;
  const needed = Math.max(relays, readyRelays);
  if (retired < needed) return { reason: `${retired} of ${needed} relays have loaded the deletion`, queued: 0, awaitingRelays: true };
  const queued = reports.live[0]?.report.domains[mailDomain]?.queued ?? 0;
  return queued > 0 ? { reason: `${queued} queued`, queued, awaitingRelays: false } : undefined;
}

/** The domain's primary as the live relays of one site last saw it. */
export interface PrimaryAtSite {
  reachable: boolean;
  /** When unreachable: the last error of the relay whose outage began first. */
  error?: string;
  /** When unreachable: when that outage began (RFC 3339). */
  since?: string;
}

/**
 * Unreachable when any live relay of the site says so (a relay in an outage probes every few
 * seconds, so its verdict is current), reachable when some say reachable and none unreachable,
 * undefined when no relay has delivered to or probed the primary.
 */
export function primaryAtSite(reports: SiteReports, mailDomain: string): PrimaryAtSite | undefined {
  const seen = reports.live.map((r) => r.report.domains[mailDomain]).filter((f) => typeof f?.primaryReachable === "boolean");
  if (seen.length === 0) return undefined;
  const down = seen
    .filter((f) => f?.primaryReachable === false)
    .sort((a, b) => (Date.parse(a?.primaryDownSince ?? "") || Number.POSITIVE_INFINITY) - (Date.parse(b?.primaryDownSince ?? "") || Number.POSITIVE_INFINITY));
  const first = down[0];
  if (!first) return { reachable: true };
  return {
    reachable: false,
    ...(first.primaryError ? { error: first.primaryError } : {}),
    ...(first.primaryDownSince ? { since: first.primaryDownSince } : {}),
  };
}
