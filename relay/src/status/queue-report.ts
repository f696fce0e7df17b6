// What the relays of one site tell the operator: per domain, the RelayDomain generation they have
// loaded and how much mail waits for it. Relays write it into a ConfigMap of their namespace (the
// only object they may write); the operator reads it through the site's API server, so it needs no
// network path to NATS or to the pods.

export const QUEUE_REPORT_KEY = "report.json";

export interface DomainQueueFigures {
  /** metadata.generation of the RelayDomain document the relays have loaded. */
  generation: number;
  /** The document carries a deletionTimestamp: no new mail, queue draining. */
  retiring: boolean;
  queued: number;
  oldestQueuedSeconds: number;
}

export interface QueueReport {
  /** When the figures were read (RFC 3339). */
  updatedAt: string;
  /** Pod that wrote the report. */
  reporter: string;
  /** By mail domain (lower-case ASCII). */
  domains: Record<string, DomainQueueFigures>;
}

/** Parses a report; undefined when absent or malformed (a relay from another version, say). */
export function parseQueueReport(text: string | undefined): QueueReport | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as QueueReport;
    if (typeof value.updatedAt !== "string" || typeof value.domains !== "object" || value.domains === null) return undefined;
    return value;
  } catch {
    return undefined;
  }
}
