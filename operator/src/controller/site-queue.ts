// What the queue-request controller needs of one site's queue: the queue-admin library's
// QueueAdmin ("#relay", relay/src/admin), connected to the site's NATS at the address the operator
// reaches it by (spec.nats.operatorUrl, else spec.nats.url). Tests of the controller's decisions
// pass an in-memory SiteQueue instead.

import type { RelaySite } from "#api";
import {
  QueueAdmin,
  type Logger,
  type QueueAction,
  type QueueActionResult,
  type QueuedMessage,
  type QueueSelector,
  type TrackingQuery,
  type TrackingRecord,
} from "#relay";

export type { QueueAction, QueueActionResult, QueuedMessage, QueueSelector, TrackingQuery, TrackingRecord } from "#relay";

export interface SiteQueue {
  list(selector: QueueSelector): Promise<QueuedMessage[]>;
  act(action: QueueAction, selector: QueueSelector): Promise<QueueActionResult>;
  find(query: TrackingQuery): Promise<TrackingRecord[]>;
  close(): Promise<void>;
}

/** Connects to a site's queue; `actor` is who acts, for the queue library's own audit log. */
export type SiteQueueConnector = (site: RelaySite, actor: string) => Promise<SiteQueue>;

/** The NATS servers the operator dials for a site; throws when the RelaySite names none. */
export function natsServersFor(site: RelaySite): string[] {
  const servers = (site.spec.nats.operatorUrl ?? site.spec.nats.url ?? "")
    .split(",")
    .map((url) => url.trim())
    .filter((url) => url !== "");
  if (servers.length === 0) throw new Error(`RelaySite ${site.metadata.name} names no NATS URL the operator can dial: set spec.nats.operatorUrl`);
  return servers;
}

/** How long the operator waits for a site's NATS, per call: an unreachable site fails the request's site, not the controller. */
export const SITE_QUEUE_TIMEOUT_MS = 10_000;

/**
 * The real connector: QueueAdmin at the site's NATS. Bounce DSNs name the site's SMTP host name as
 * their Reporting-MTA, as the relays' own DSNs do; the library's audit lines go to `log`.
 */
export function siteQueueConnector(log: Logger): SiteQueueConnector {
  return async (site, actor) =>
    await QueueAdmin.connect({ servers: natsServersFor(site), actor, hostname: site.spec.hostname, timeoutMs: SITE_QUEUE_TIMEOUT_MS }, log);
}
