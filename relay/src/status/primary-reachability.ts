// What this relay last learned about each domain's primary, for the queue report: a delivery that
// reached a hop or found none (destination-health.ts), and the monitoring-mode probe
// (filter/monitoring-mode.ts). Nothing is probed here; a domain the relay has neither delivered to
// nor probed is not reported, and the operator shows it as Unknown.

import type { DomainPrimaryFigures } from "#api";

/** A reason longer than this is cut: the report is one ConfigMap key per relay, written every few seconds. */
export const MAX_PRIMARY_ERROR_LENGTH = 200;

interface Observation {
  reachable: boolean;
  /** Since when the primary has been in this state (Date.now()). */
  since: number;
  error?: string;
}

export class PrimaryReachability {
  private readonly observations = new Map<string, Observation>();

  /** A hop of the domain's primary answered. */
  reachable(domain: string, now = Date.now()): void {
    const previous = this.observations.get(domain);
    if (previous?.reachable) return;
    this.observations.set(domain, { reachable: true, since: now });
  }

  /** No hop of the domain's primary answered; `error` says what the last attempt met. */
  unreachable(domain: string, error: string, now = Date.now()): void {
    const previous = this.observations.get(domain);
    const since = previous && !previous.reachable ? previous.since : now;
    this.observations.set(domain, { reachable: false, since, error: error.slice(0, MAX_PRIMARY_ERROR_LENGTH) });
  }

  /** The report's fields for the domain; none when this relay knows nothing of its primary. */
  figures(domain: string): DomainPrimaryFigures {
    const seen = this.observations.get(domain);
    if (!seen) return {};
    if (seen.reachable) return { primaryReachable: true };
    return { primaryReachable: false, primaryDownSince: new Date(seen.since).toISOString(), ...(seen.error ? { primaryError: seen.error } : {}) };
  }

  /** Drops what is known of domains no longer served. */
  retain(domains: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    for (const domain of this.observations.keys()) if (!domains.has(domain)) this.observations.delete(domain);
  }
}
