// What each relay of a site tells the operator: per domain, the RelayDomain generation it has
// loaded and how much mail waits for it. Each relay writes its own key of a ConfigMap of its
// namespace (the only object relays may write), so that every relay's generation counts and not
// only the last writer's; the operator reads them through the site's API server, so it needs no
// network path to NATS or to the pods.

/**
 * What one relay last learned of the domain's primary, by delivering to it or by the
 * monitoring-mode probe. All absent when the relay has done neither (or predates these fields).
 */
export interface DomainPrimaryFigures {
  /** A hop of the primary answered the last delivery or probe. */
  primaryReachable?: boolean;
  /** When unreachable: what the last attempt met, short. */
  primaryError?: string;
  /** When unreachable: since when (RFC 3339). */
  primaryDownSince?: string;
}

export interface DomainQueueFigures extends DomainPrimaryFigures {
  /** metadata.generation of the RelayDomain document the relay has loaded. */
  generation: number;
  /** The document carries a deletionTimestamp: no new mail, queue draining. */
  retiring: boolean;
  /** From the site's shared queue: the same for every relay of the site, up to sampling time. */
  queued: number;
  oldestQueuedSeconds: number;
}

export interface QueueReport {
  /** When the figures were read (RFC 3339). */
  updatedAt: string;
  /** Pod that wrote the report. */
  reporter: string;
  /** How often this relay writes its report: the operator takes a much older report for a relay that is gone. Absent from relays before per-relay reports. */
  intervalMs?: number;
  /** By mail domain (lower-case ASCII). */
  domains: Record<string, DomainQueueFigures>;
}

/** The relay's own key in the status ConfigMap (keys allow only [-._a-zA-Z0-9]). */
export function queueReportKey(reporter: string): string {
  return `report.${reporter.replace(/[^-._a-zA-Z0-9]/g, "_")}.json`;
}

/**
 * A report as a relay writes it: a domain with nothing to say but its generation (nothing queued,
 * not retiring, no primary figures: nearly every domain, nearly always) is that bare number. All
 * relays of a site share one ConfigMap of at most 1 MiB; in full a domain took about 100 bytes per
 * relay, so 10,000 domains on two relays (2 MB) made every report write fail and no RelayDomain
 * could turn Ready (measured with bench/cluster-scale.ts). Bare, a domain of 28 characters takes
 * 33 bytes: about 30,000 domain-relays fit, 10,000 domains on three relays.
 */
export function encodeQueueReport(report: QueueReport): string {
  const domains: Record<string, DomainQueueFigures | number> = {};
  for (const [domain, figures] of Object.entries(report.domains)) domains[domain] = isIdle(figures) ? figures.generation : figures;
  return JSON.stringify({ ...report, domains });
}

function isIdle(figures: DomainQueueFigures): boolean {
  const { generation: _generation, retiring, queued, oldestQueuedSeconds, ...primary } = figures;
  return !retiring && queued === 0 && oldestQueuedSeconds === 0 && Object.keys(primary).length === 0;
}

/** Parses a report (either form of each domain); undefined when absent or malformed (a relay from another version, say). */
export function parseQueueReport(text: string | undefined): QueueReport | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Omit<QueueReport, "domains"> & { domains: Record<string, DomainQueueFigures | number> | null };
    if (typeof value.updatedAt !== "string" || typeof value.domains !== "object" || value.domains === null) return undefined;
    const domains: Record<string, DomainQueueFigures> = {};
    for (const [domain, figures] of Object.entries(value.domains))
      domains[domain] = typeof figures === "number" ? { generation: figures, retiring: false, queued: 0, oldestQueuedSeconds: 0 } : figures;
    return { ...value, domains };
  } catch {
    return undefined;
  }
}
