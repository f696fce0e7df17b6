// Carries out RelayQueueRequests: a team's queue operation on the mail of one RelayDomain in its
// own namespace, at every site serving that domain, through each site's NATS (QueueAdmin).
//
// - The domain is resolved in the request's namespace only, and must be the RelayDomain that
//   really serves its mail domain (valid, not outclaimed by an older one elsewhere): a team never
//   reaches another team's mail, whatever it names.
// - Every question to a site carries the domain, and every answer is filtered by it again.
// - retry, hold, release, delete and bounce happen at most once per request: the operator first
//   claims the request (phase Running, written with the resourceVersion it read, so a stale cache
//   or a second replica gets a conflict instead of acting twice), and a request found Running
//   after a restart is failed as Interrupted rather than repeated. list and find only read, so an
//   interrupted one is simply asked again.
// - A finished request is deleted spec.ttlSecondsAfterFinished after completedAt.

import type { Logger } from "#relay";
import {
  API_VERSION,
  ConfigError,
  domainKey,
  relayQueueRequestSpecSchema,
  validate,
  type RelayDomain,
  type RelayQueueRequest,
  type RelayQueueRequestSpec,
  type RelayQueueRequestStatus,
  type RelaySite,
} from "#api";
import type { Unstructured } from "../kube/api-client.ts";
import { isNotFound } from "../kube/api-client.ts";
import type { KubeClient, ObjectCache } from "../kube/kube-client.ts";
import { Resources } from "../kube/resources.ts";
import { servesSite, validateForRelay } from "../render/domain-config.ts";
import type { ReconcileOutcome } from "./controller-runner.ts";
import { olderClaim } from "./domain-reconciler.ts";
import { failedStatus, finishedStatus, isMutating, ofDomain, siteSelector, trackingQuery, ttlRemainingMs, type SiteOutcome } from "./queue-request-status.ts";
import type { SiteQueue, SiteQueueConnector } from "./site-queue.ts";

type RequestObject = RelayQueueRequest & Unstructured;

/** How long a new request waits for its RelayDomain to appear in the cache before it fails as not found. */
const DOMAIN_CACHE_GRACE_MS = 3000;

export interface QueueRequestReconcilerDeps {
  client: KubeClient;
  requests: ObjectCache<RequestObject>;
  domains: ObjectCache<RelayDomain & Unstructured>;
  sites: ObjectCache<RelaySite & Unstructured>;
  connect: SiteQueueConnector;
  log: Logger;
  now?: () => Date;
}

/** Who acts, as the queue library's audit log records it. */
export function queueActor(namespace: string, requestedBy: string): string {
  return `k8s:${namespace}/${requestedBy}`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class QueueRequestReconciler {
  private readonly deps: QueueRequestReconcilerDeps;
  /**
   * Requests this process carried out, by key, until the cache shows them finished: the cache may
   * still show the Running claim (or nothing yet) when the key comes back, which must be neither
   * mistaken for an interruption nor carried out again. A status whose write failed is written on
   * the next try, never recomputed.
   */
  private readonly carriedOut = new Map<string, { uid: string; status: RelayQueueRequestStatus; written: boolean }>();

  constructor(deps: QueueRequestReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileOutcome> {
    const request = this.deps.requests.get(key);
    if (!request) {
      this.carriedOut.delete(key);
      return {};
    }
    const now = this.deps.now?.() ?? new Date();
    const namespace = request.metadata.namespace as string;
    const uid = request.metadata.uid ?? key;
    const generation = request.metadata.generation ?? 1;
    const remaining = ttlRemainingMs(request.spec, request.status, now.getTime());
    if (remaining !== undefined) {
      this.carriedOut.delete(key);
      if (remaining > 0) return { requeueAfterMs: remaining };
      await this.deps.client.delete(Resources.RelayQueueRequest, namespace, request.metadata.name);
      this.deps.log.info("queue request deleted after its TTL", { namespace, name: request.metadata.name, uid });
      return {};
    }
    const mine = this.carriedOut.get(key);
    if (mine?.uid === uid) return mine.written ? {} : await this.finish(request, mine.status);

    let spec: RelayQueueRequestSpec;
    try {
      spec = validate(relayQueueRequestSpecSchema, request.spec, "spec") as RelayQueueRequestSpec;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return await this.finish(request, failedStatus("InvalidSpec", err.message, request.status, generation, now));
    }
    if (request.status?.phase === "Running" && isMutating(spec.action)) {
      return await this.finish(
        request,
        failedStatus(
          "Interrupted",
          `the operator stopped while carrying out ${spec.action}; it is not repeated: list the queue to see what changed, and create a new request if needed`,
          request.status,
          generation,
          now,
          request.status.domain,
        ),
      );
    }

    const domain = this.deps.domains.get(`${namespace}/${spec.domainRef}`);
    if (!domain) {
      // A RelayDomain applied together with the request may reach the cache a moment later.
      const age = now.getTime() - Date.parse(request.metadata.creationTimestamp ?? "");
      if (age < DOMAIN_CACHE_GRACE_MS) return { requeueAfterMs: DOMAIN_CACHE_GRACE_MS - Math.max(0, age) };
      return await this.finish(
        request,
        failedStatus("DomainNotFound", `no RelayDomain ${JSON.stringify(spec.domainRef)} in namespace ${namespace}`, request.status, generation, now),
      );
    }
    const mailDomain = domainKey(domain.spec.domain);
    const invalid = validateForRelay(domain);
    const claim = invalid ? undefined : olderClaim(domain, mailDomain, this.deps.domains.list());
    if (invalid || claim) {
      const why = invalid
        ? `RelayDomain ${spec.domainRef} is invalid: ${invalid}`
        : `${claim} serves ${mailDomain}, not RelayDomain ${namespace}/${spec.domainRef}`;
      return await this.finish(request, failedStatus("DomainNotServed", why, request.status, generation, now));
    }

    const startedAt = now.toISOString();
    // The claim: written with the resourceVersion read, so acting twice takes a conflict first.
    await this.deps.client.apply(
      Resources.RelayQueueRequest,
      {
        apiVersion: API_VERSION,
        kind: "RelayQueueRequest",
        metadata: { name: request.metadata.name, namespace, resourceVersion: request.metadata.resourceVersion as string },
        status: { phase: "Running", domain: mailDomain, startedAt },
      },
      { subresource: "status" },
    );
    const sites = this.deps.sites.list().filter((site) => !site.metadata.deletionTimestamp && servesSite(domain, site));
    const actor = queueActor(namespace, spec.requestedBy);
    const audit = { namespace, name: request.metadata.name, uid, requestedBy: spec.requestedBy, actor, action: spec.action, domain: mailDomain };
    this.deps.log.info("queue request started", { ...audit, sites: sites.map((s) => s.metadata.name) });
    const outcomes = await Promise.all(sites.map((site) => this.atSite(site, spec, mailDomain, actor)));
    for (const outcome of outcomes) {
      const fields = {
        ...audit,
        site: outcome.site,
        matched: outcome.matched,
        ...(outcome.done ? { queueIds: outcome.done } : {}),
        ...(outcome.skipped ? { skipped: outcome.skipped.map((s) => s.queueId) } : {}),
      };
      if (outcome.error) this.deps.log.warn("queue request failed at site", { ...fields, error: outcome.error });
      else this.deps.log.info("queue request carried out at site", fields);
    }
    const finished = finishedStatus(spec, mailDomain, outcomes, { ...request.status, startedAt }, generation, this.deps.now?.() ?? new Date());
    return await this.finish(request, finished);
  }

  /** Writes a finished status; keeps it for the next try when the write fails. */
  private async finish(request: RequestObject, status: RelayQueueRequestStatus): Promise<ReconcileOutcome> {
    const key = `${request.metadata.namespace}/${request.metadata.name}`;
    const uid = request.metadata.uid ?? key;
    this.carriedOut.set(key, { uid, status, written: false });
    try {
      await this.deps.client.apply(
        Resources.RelayQueueRequest,
        {
          apiVersion: API_VERSION,
          kind: "RelayQueueRequest",
          metadata: { name: request.metadata.name, namespace: request.metadata.namespace as string },
          status,
        },
        { subresource: "status" },
      );
    } catch (err) {
      if (isNotFound(err)) {
        this.carriedOut.delete(key);
        return {};
      }
      throw err;
    }
    this.carriedOut.set(key, { uid, status, written: true });
    this.deps.log.info("queue request finished", {
      namespace: request.metadata.namespace,
      name: request.metadata.name,
      uid,
      requestedBy: request.spec.requestedBy,
      phase: status.phase,
    });
    const remaining = ttlRemainingMs(request.spec, status, (this.deps.now?.() ?? new Date()).getTime());
    return remaining === undefined ? {} : { requeueAfterMs: Math.max(0, remaining) };
  }

  private async atSite(site: RelaySite, spec: RelayQueueRequestSpec, mailDomain: string, actor: string): Promise<SiteOutcome> {
    const name = site.metadata.name;
    let queue: SiteQueue | undefined;
    try {
      queue = await this.deps.connect(site, actor);
      const action = spec.action;
      if (action === "find") {
        const records = ofDomain(await queue.find(trackingQuery(spec)), mailDomain);
        return { site: name, matched: records.length, records };
      }
      const selector = siteSelector(spec, mailDomain);
      const named = selector.queueIds ? new Set(selector.queueIds) : undefined;
      const messages = ofDomain(await queue.list(selector), mailDomain).filter((m) => !named || named.has(m.queueId));
      if (action === "list") return { site: name, matched: messages.length, messages };
      // The action names exactly the messages just listed for the domain, never a bare filter.
      const ids = messages.map((m) => m.queueId);
      if (ids.length === 0) return { site: name, matched: 0, done: [], skipped: [] };
      const result = await queue.act(action, { domain: mailDomain, queueIds: ids });
      const listed = new Set(ids);
      return {
        site: name,
        matched: ids.length,
        done: result.done.filter((id) => listed.has(id)),
        skipped: result.skipped.filter((s) => listed.has(s.queueId)),
      };
    } catch (err) {
      return { site: name, matched: 0, error: errorText(err) };
    } finally {
      await queue?.close().catch(() => undefined);
    }
  }
}
