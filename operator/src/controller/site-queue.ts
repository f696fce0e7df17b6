// What the queue-request controller needs of one site's queue: the queue-admin library's
// QueueAdmin ("#relay", relay/src/admin), connected to the site's NATS at the address the operator
// reaches it by (spec.nats.operatorUrl, else spec.nats.url). Tests of the controller's decisions
// pass an in-memory SiteQueue instead.

import type { RelaySite } from "#api";
import type { KubeClient } from "../kube/kube-client.ts";
import { managedNatsUrl } from "../render/nats-objects.ts";
import { siteNamespace } from "../render/site-objects.ts";
import { ensureNatsCredentials } from "./nats-credentials.ts";
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

/**
 * The NATS servers the operator dials for a site: operatorUrl, else the relays' own address (url,
 * or the managed NATS's Service, which resolves when the site is the operator's own cluster);
 * throws when there is none.
 */
export function natsServersFor(site: RelaySite): string[] {
  const relaysUrl = site.spec.nats.url ?? (site.spec.nats.managed ? managedNatsUrl(site, siteNamespace(site)) : undefined);
  const servers = (site.spec.nats.operatorUrl ?? relaysUrl ?? "")
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
export function siteQueueConnector(log: Logger, client: KubeClient, operatorNamespace: string): SiteQueueConnector {
  return async (site, actor) => {
    // A managed NATS admits only its nkey users: the operator logs in as the site's relays do,
    // with the seed it generated and keeps in its own namespace.
    const nkeySeed = site.spec.nats.managed ? (await ensureNatsCredentials(client, operatorNamespace, site.metadata.name)).relaySeed : undefined;
    return await QueueAdmin.connect(
      { servers: natsServersFor(site), actor, hostname: site.spec.hostname, timeoutMs: SITE_QUEUE_TIMEOUT_MS, ...(nkeySeed ? { nkeySeed } : {}) },
      log,
    );
  };
}
