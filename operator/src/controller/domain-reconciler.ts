// Reconciles one RelayDomain's status and lifecycle. The relays' configuration itself is written
// by the site controller; this controller validates the spec (with the relay's own parser), finds
// conflicts, collects per-site figures, checks DNS, and runs the finalizer: a deleted domain is
// refused new mail at once (relays see its deletionTimestamp) and the finalizer goes only when
// every site serving it reports its queue for the domain empty (delivered, or bounced after
// spec.queue.deletionGracePeriod). Mail is never dropped silently.

import { isDeepStrictEqual } from "node:util";
import type { Logger } from "#relay";
import {
  API_VERSION,
  domainKey,
  findCondition,
  setCondition,
  type Condition,
  type ConditionInput,
  type DomainSiteStatus,
  type RelayDomain,
  type RelayDomainStatus,
  type RelaySite,
} from "#api";
import { isNotFound, type Unstructured } from "../kube/api-client.ts";
import type { KubeClient, ObjectCache } from "../kube/kube-client.ts";
import { Resources } from "../kube/resources.ts";
import type { OperatorMetrics } from "../metrics.ts";
import { configKey, servesSite, validateForRelay } from "../render/domain-config.ts";
import { siteNamespace, STATUS_CONFIGMAP } from "../render/site-objects.ts";
import type { ReconcileOutcome } from "./controller-runner.ts";
import type { DnsChecker } from "./dns-check.ts";
import type { EventRecorder } from "./events.ts";
import { setFinalizer } from "./finalizers.ts";
import { HELD, holdView } from "./hold-status.ts";
import { PRIMARY_REACHABLE, primaryEvent, primaryReachableCondition, type SitePrimary } from "./primary-condition.ts";
import { domainAtSite, drainPending, primaryAtSite, readSiteReports, type DomainAtSite, type SiteReports } from "./relay-reports.ts";
import type { SiteClients } from "./site-connections.ts";
import type { SiteState, SiteStates } from "./site-state.ts";

export const DOMAIN_FINALIZER = "mxwarden.io/drain-queue";
/**
 * How soon a drain that waits only for the relays looks again. Relays report at once when they
 * load the deletion; waiting for the next site poll (--poll-interval) added up to 15 s to every
 * deletion, an empty queue's too.
 */
const DRAIN_RECHECK_MS = 2000;
/** Relay reports read this recently serve every draining domain of a site: one read a second per site, however many domains drain. */
const REPORTS_REUSE_MS = 1000;

export interface DomainReconcilerDeps {
  client: KubeClient;
  sites: ObjectCache<RelaySite & Unstructured>;
  domains: ObjectCache<RelayDomain & Unstructured>;
  states: SiteStates;
  connections: SiteClients;
  events: EventRecorder;
  metrics: OperatorMetrics;
  dns: DnsChecker | undefined;
  /** The RelayDomains that claim a mail domain (domain-claims.ts): the only ones that can conflict with each other. */
  claimants: (mailDomain: string) => RelayDomain[];
  pollIntervalMs: number;
  log: Logger;
}

/** The metric labels of the RelayDomain with work queue key "namespace/name". */
function domainLabels(key: string): { namespace: string; name: string } {
  const slash = key.indexOf("/");
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** Condition type of one site's readiness for a domain, e.g. "site-a.sites.mxwarden.io/Ready". */
export function siteConditionType(site: string): string {
  return `${site}.sites.mxwarden.io/Ready`;
}

export class DomainReconciler {
  private readonly deps: DomainReconcilerDeps;

  constructor(deps: DomainReconcilerDeps) {
    this.deps = deps;
  }

  async reconcile(key: string): Promise<ReconcileOutcome> {
    const domain = this.deps.domains.get(key);
    if (!domain) {
      this.deps.metrics.removeDomain(domainLabels(key));
      return {};
    }
    const mailDomain = domainKey(domain.spec.domain);
    const sites = this.deps.sites.list().filter((site) => !site.metadata.deletionTimestamp && servesSite(domain, site));
    const invalid = validateForRelay(domain);
    const conflict = invalid ? undefined : olderClaim(domain, mailDomain, this.deps.claimants(mailDomain));

    if (domain.metadata.deletionTimestamp) return await this.drain(key, domain, mailDomain, sites, invalid !== undefined || conflict !== undefined);
    await setFinalizer(this.deps.client, Resources.RelayDomain, domain.metadata, DOMAIN_FINALIZER, true);

    const generation = domain.metadata.generation ?? 0;
    const now = new Date();
    const siteFigures: DomainSiteStatus[] = [];
    let conditions: Condition[] = (domain.status?.conditions ?? []).filter(
      (c) => !c.type.endsWith(".sites.mxwarden.io/Ready") || sites.some((s) => c.type === siteConditionType(s.metadata.name)),
    );
    const set = (input: ConditionInput): void => {
      conditions = setCondition(conditions, { ...input, observedGeneration: generation }, now);
    };
    let readySites = 0;
    const primaries: SitePrimary[] = [];
    for (const site of sites) {
      const state = this.deps.states.get(site.metadata.name);
      const atSite = state ? domainAtSite(state.reports, mailDomain) : undefined;
      if (state?.reachable) primaries.push({ site: site.metadata.name, primary: primaryAtSite(state.reports, mailDomain) });
      siteFigures.push({
        name: site.metadata.name,
        readyRelays: state?.readyRelays ?? 0,
        ...(atSite?.appliedGeneration !== undefined ? { appliedGeneration: atSite.appliedGeneration } : {}),
        ...(atSite?.queue ? { queuedMessages: atSite.queue.queued, oldestQueuedSeconds: atSite.queue.oldestQueuedSeconds } : {}),
      });
      // A site this operator has not read yet (it just started: a rollout, a failover) keeps the
      // verdict the previous leader wrote for this generation, instead of flipping every domain to
      // not Ready until the first site poll.
      const previous = state ? undefined : conditions.find((c) => c.type === siteConditionType(site.metadata.name));
      if (previous && previous.observedGeneration === generation && !(invalid ?? conflict)) {
        if (previous.status === "True") readySites++;
        continue;
      }
      const verdict = siteVerdict(state, atSite, generation, invalid ?? conflict);
      if (verdict.status === "True") readySites++;
      set({ type: siteConditionType(site.metadata.name), ...verdict });
    }

    if (invalid) set({ type: "Ready", status: "False", reason: "InvalidSpec", message: invalid, observedGeneration: generation });
    else if (conflict)
      set({ type: "Ready", status: "False", reason: "DomainConflict", message: `${conflict} already serves ${mailDomain}`, observedGeneration: generation });
    else if (sites.length === 0)
      set({ type: "Ready", status: "False", reason: "NoSites", message: "no RelaySite serves this domain", observedGeneration: generation });
    else if (readySites < sites.length)
      set({ type: "Ready", status: "False", reason: "SitesNotReady", message: `${readySites} of ${sites.length} sites ready`, observedGeneration: generation });
    else set({ type: "Ready", status: "True", reason: "AllSitesReady", message: `${readySites} sites serve ${mailDomain}`, observedGeneration: generation });

    const hold = invalid ? undefined : holdView(domain.spec, now.getTime());
    if (hold) set(hold.condition);
    else conditions = conditions.filter((c) => c.type !== HELD);

    const primary = primaryReachableCondition(primaries);
    const event = primaryEvent(findCondition(domain.status?.conditions, PRIMARY_REACHABLE)?.status, primary, mailDomain);
    set(primary);
    const queuedMessages = siteFigures.reduce((sum, s) => sum + (s.queuedMessages ?? 0), 0);
    this.deps.metrics.setDomain(domainLabels(key), {
      primaryReachable: primary.status === "Unknown" ? undefined : primary.status === "True",
      queued: queuedMessages,
      oldestQueuedSeconds: Math.max(0, ...siteFigures.map((s) => s.oldestQueuedSeconds ?? 0)),
    });

    if (this.deps.dns) {
      const ourHosts = sites.flatMap((s) => [s.spec.hostname]);
      const verdict =
        ourHosts.length > 0
          ? await this.deps.dns.check(mailDomain, ourHosts)
          : { status: "Unknown" as const, reason: "NoSites", message: "no site serves this domain" };
      set({ type: "DNSConfigured", ...verdict, observedGeneration: generation });
    }

    const status: RelayDomainStatus = {
      observedGeneration: generation,
      conditions,
      sites: siteFigures,
      sitesReady: `${readySites}/${sites.length}`,
      ...(hold ? { hold: hold.status } : {}),
      queuedMessages,
    };
    // Every site poll reconciles the domains whose figures changed there; most of the time nothing
    // did, and a status write each (10,000 of them) kept the API server and the queue busy.
    if (!isDeepStrictEqual(status, domain.status)) await this.writeStatus(domain, status);
    // After the status write: an Event for a change the status does not show yet would be recorded again.
    if (event) await this.deps.events.record(domain, event.type, event.reason, "CheckPrimary", event.note);
    // A hold's status changes with time alone: look again when it does (site polls come sooner).
    return hold ? { requeueAfterMs: Math.max(0, Math.min(hold.changesAtMs - now.getTime() + 1, this.deps.pollIntervalMs)) } : {};
  }

  private async drain(
    key: string,
    domain: RelayDomain & Unstructured,
    mailDomain: string,
    sites: RelaySite[],
    neverServed: boolean,
  ): Promise<ReconcileOutcome> {
    if (!(domain.metadata.finalizers ?? []).includes(DOMAIN_FINALIZER)) return {};
    const deletedAt = Date.parse(domain.metadata.deletionTimestamp ?? "");
    const waiting: string[] = [];
    let queued = 0;
    let awaitingRelays = false;
    let oldestQueuedSeconds = 0;
    if (!neverServed) {
      for (const site of sites) {
        const state = this.deps.states.get(site.metadata.name);
        const reports = state?.reachable ? await this.currentReports(site, state) : undefined;
        oldestQueuedSeconds = Math.max(oldestQueuedSeconds, (reports && domainAtSite(reports, mailDomain).queue?.oldestQueuedSeconds) || 0);
        const pending =
          state && reports ? drainPending(reports, mailDomain, deletedAt, state.readyRelays) : { reason: "unreachable", queued: 0, awaitingRelays: false };
        if (pending) {
          waiting.push(`${site.metadata.name} (${pending.reason})`);
          queued += pending.queued;
          awaitingRelays ||= pending.awaitingRelays;
        }
      }
    }
    if (waiting.length === 0) {
      await this.deps.events.record(domain, "Normal", "Drained", "Finalize", `no mail for ${mailDomain} is queued at any site; deletion completes`);
      await setFinalizer(this.deps.client, Resources.RelayDomain, domain.metadata, DOMAIN_FINALIZER, false);
      this.deps.metrics.removeDomain(domainLabels(key));
      return {};
    }
    // The primary's series stays as last known: a draining domain's relays still deliver to it.
    this.deps.metrics.domainQueuedMessages.set(domainLabels(key), queued);
    this.deps.metrics.domainOldestQueuedSeconds.set(domainLabels(key), queued > 0 ? oldestQueuedSeconds : 0);
    const generation = domain.metadata.generation ?? 0;
    // A deleted domain's hold has ended: the relays deliver its mail within the grace period.
    const { hold: _ended, ...kept } = domain.status ?? {};
    const conditions = setCondition(
      domain.status?.conditions?.filter((c) => c.type !== HELD),
      {
        type: "Ready",
        status: "False",
        reason: "Draining",
        message: `new mail refused; waiting for ${waiting.join(", ")}; queued mail is delivered or bounced after the deletion grace period`,
        observedGeneration: generation,
      },
      new Date(),
    );
    if (domain.status?.conditions?.find((c) => c.type === "Ready")?.reason !== "Draining") {
      await this.deps.events.record(domain, "Normal", "Draining", "Delete", `new mail for ${mailDomain} refused; draining the queue`);
    }
    const status = { ...kept, observedGeneration: generation, conditions, queuedMessages: queued };
    // Rechecked every few seconds: write only what changed.
    if (JSON.stringify(status) !== JSON.stringify(domain.status)) await this.writeStatus(domain, status);
    return { requeueAfterMs: awaitingRelays ? Math.min(DRAIN_RECHECK_MS, this.deps.pollIntervalMs) : this.deps.pollIntervalMs };
  }

  /** The site's relay reports, re-read unless the last read is a moment old: a drain must not wait for the next site poll. */
  private async currentReports(site: RelaySite, state: SiteState): Promise<SiteReports> {
    if (Date.now() - state.reportsReadAt < REPORTS_REUSE_MS) return state.reports;
    const connection = this.deps.connections.get(site.metadata.name);
    if (!connection?.reachable) return state.reports;
    try {
      const map = await connection.client.get<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, siteNamespace(site), STATUS_CONFIGMAP);
      const reports = readSiteReports(map.data, new Date());
      this.deps.states.set(site.metadata.name, { ...state, reports, reportsReadAt: Date.now() });
      return reports;
    } catch (err) {
      // The site's health loop reports reachability; until the next read, what is known stands.
      this.deps.log.debug("could not re-read the relays' reports", { site: site.metadata.name, error: err });
      return state.reports;
    }
  }

  private async writeStatus(domain: RelayDomain, status: RelayDomainStatus): Promise<void> {
    try {
      await this.deps.client.apply(
        Resources.RelayDomain,
        {
          apiVersion: API_VERSION,
          kind: "RelayDomain",
          metadata: { name: domain.metadata.name, namespace: domain.metadata.namespace as string },
          status,
        },
        { subresource: "status" },
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/**
 * The oldest other valid RelayDomain claiming the same mail domain, as namespace/name: it serves
 * the domain, and this one does not (nor may its owners reach that mail with queue requests).
 */
export function olderClaim(domain: RelayDomain, mailDomain: string, domains: RelayDomain[]): string | undefined {
  const mine = configKey(domain);
  for (const other of domains) {
    // The cheap test first: validation runs the relay's parser.
    if (domainKey(other.spec.domain) !== mailDomain) continue;
    if (configKey(other) === mine || validateForRelay(other) !== undefined) continue;
    const ours = domain.metadata.creationTimestamp ?? "";
    const theirs = other.metadata.creationTimestamp ?? "";
    if (theirs < ours || (theirs === ours && configKey(other) < mine)) return `${other.metadata.namespace}/${other.metadata.name}`;
  }
  return undefined;
}

function siteVerdict(
  state: SiteState | undefined,
  atSite: DomainAtSite | undefined,
  wanted: number,
  blocked: string | undefined,
): Omit<ConditionInput, "type"> {
  if (blocked) return { status: "False", reason: "NotServed", message: blocked };
  if (!state || !atSite) return { status: "Unknown", reason: "NotReconciled", message: "the site has not been reconciled yet" };
  if (!state.reachable)
    return { status: "False", reason: state.problem?.reason ?? "ClusterUnreachable", message: state.problem?.message ?? "the site's cluster does not answer" };
  if (state.readyRelays === 0) return { status: "False", reason: "NoReadyRelays", message: "no relay pod is ready" };
  // A ready relay that has not reported yet may run anything: it must count before the site does.
  if (atSite.relays < state.readyRelays)
    return { status: "False", reason: "NotReported", message: `${atSite.relays} of ${state.readyRelays} ready relays have reported` };
  if (atSite.loaded === 0) return { status: "False", reason: "NotReported", message: "the relays have not reported this domain yet" };
  if (atSite.appliedGeneration === undefined)
    return { status: "False", reason: "ConfigPending", message: `${atSite.loaded} of ${atSite.relays} relays have loaded this domain` };
  if (atSite.appliedGeneration !== wanted)
    return { status: "False", reason: "ConfigPending", message: `a relay runs generation ${atSite.appliedGeneration}, want ${wanted}` };
  return { status: "True", reason: "Serving", message: `${atSite.relays} relay(s) serve generation ${wanted}` };
}
