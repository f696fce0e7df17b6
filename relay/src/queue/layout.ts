// Names of everything the relay keeps in JetStream. One place, so that docs/architecture.md,
// the operator and the relay agree on subjects, streams and consumers.
//
// Subjects carry the site (--site, the site's JetStream domain) when there is one: P below is
// "mxw.<site>." with a site and "mxw." without. Each site is its own JetStream domain, and sites
// are joined by leafnodes, across which subject interest travels: with one subject space for
// both, each site's streams captured the other site's publishes, and both sites delivered the
// same mail (issue 16). With site-scoped subjects a site's publishes match only its own streams.
//
//   MXW_SPOOL  (limits retention)     P spool.<qid>.m        a body above 128 KiB, or its manifest
//                                     P spool.<qid>.c<n>     body chunks n = 1..N for larger ones
//   MXW_QUEUE  (work-queue retention) P queue.ready.<dom>.<qid>   a delivery job, due now (with
//                                                                 its body when that is small)
//                                     P queue.defer.<dom>.<qid>   the same job held by a message
//                                                                 schedule (@at) until its retry time
//                                     P queue.held.<dom>.<qid>    the same job held by an administrator
//                                                                 (mxwarden-queue hold, admin/): no consumer
//                                                                 reads it; its schedule (@at its expiry)
//                                                                 makes it ready when its lifetime ends, to bounce
//   MXW_RATE   (limits retention)     P rate.<kind>.<hash>.<window>  rate-limit counters
//   MXW_SHADOW (limits retention)     P shadow.copy.<qid>, P shadow.took.<peer>.<qid>: copies of the
//                                     site's mail for its peers, and what it took over from them
//   MXW_PEER_<peer>                   a peer's shadow copies and spool, sourced (shadow-copies.ts)
//   MXW_TRACKING (limits, TTLs)       P track.relay, P track.admin: batches of message tracking
//                                     entries (queue/tracking.ts), each kept for its writer's retention
//   KV buckets of one site's own state get the site in their name (siteBucket()); buckets shared
//   between sites are described in filter/shared-bucket.ts
//   consumer   mxw-deliver[-<site>]   durable pull consumer on P queue.ready.>, shared by all relays
//   consumer   mxw-drain-[<site>-]<dom>  durable pull consumer on P queue.defer.<dom>.>, created when
//                                     the domain's primary comes back: its held jobs are delivered
//                                     where they are (see deliver/held-mail-flush.ts; the name predates "flush")
//
// A site that ran without --site before keeps the unscoped subjects in its streams and consumer
// filters (legacy below), so mail queued before the upgrade is still delivered.

export const SPOOL_STREAM = "MXW_SPOOL";
export const QUEUE_STREAM = "MXW_QUEUE";
export const RATE_LIMIT_STREAM = "MXW_RATE";
export const TRACKING_STREAM = "MXW_TRACKING";
/** The shared delivery consumer's name without a site (layout.deliverConsumer has the site's). */
const UNSCOPED_DELIVER_CONSUMER = "mxw-deliver";

/** Site names that would make a scoped subject space overlap the unscoped one (mxw.queue.queue.> ⊂ mxw.queue.>). */
export const RESERVED_SITE_NAMES: readonly string[] = ["queue", "spool", "rate", "track"];

/**
 * Subject token for a mail domain. Domains are validated LDH names, so they never contain "_",
 * and replacing dots keeps one domain in exactly one token.
 */
export function domainToken(domain: string): string {
  return domain.replace(/\./g, "_");
}

export class QueueLayout {
  /** This site's name (its JetStream domain), or undefined for a relay without --site. */
  readonly site: string | undefined;
  private readonly prefix: string;

  constructor(site?: string) {
    if (site !== undefined && (!/^[A-Za-z0-9_-]+$/.test(site) || RESERVED_SITE_NAMES.includes(site))) {
      throw new Error(`not a usable site name: "${site}"`);
    }
    this.site = site;
    this.prefix = site === undefined ? "mxw." : `mxw.${site}.`;
  }

  /**
   * Set by ensureQueueLayout when the site's streams still hold the unscoped subjects from before
   * the site had a name: then readers look there too.
   */
  keepsUnscoped = false;

  /** The unscoped layout a site used before it had a name; undefined when this one is unscoped. */
  get legacy(): QueueLayout | undefined {
    return this.site === undefined ? undefined : UNSCOPED;
  }

  /** The layouts mail may be stored under at this site: this one, and the unscoped one while kept. */
  get storedUnder(): QueueLayout[] {
    return this.keepsUnscoped && this.legacy ? [this, this.legacy] : [this];
  }

  get spoolSubjects(): string {
    return `${this.prefix}spool.>`;
  }

  get queueSubjects(): string {
    return `${this.prefix}queue.>`;
  }

  get readyFilter(): string {
    return `${this.prefix}queue.ready.>`;
  }

  get rateSubjects(): string {
    return `${this.prefix}rate.>`;
  }

  spoolMessageSubject(queueId: string): string {
    return `${this.prefix}spool.${queueId}.m`;
  }

  spoolChunkSubject(queueId: string, index: number): string {
    return `${this.prefix}spool.${queueId}.c${index}`;
  }

  spoolAllSubjects(queueId: string): string {
    return `${this.prefix}spool.${queueId}.>`;
  }

  readySubject(domain: string, queueId: string): string {
    return `${this.prefix}queue.ready.${domainToken(domain)}.${queueId}`;
  }

  deferSubject(domain: string, queueId: string): string {
    return `${this.prefix}queue.defer.${domainToken(domain)}.${queueId}`;
  }

  deferFilterForDomain(domain: string): string {
    return `${this.prefix}queue.defer.${domainToken(domain)}.>`;
  }

  /** Where an administrator's hold keeps a job (admin/): no consumer reads it. */
  heldSubject(domain: string, queueId: string): string {
    return `${this.prefix}queue.held.${domainToken(domain)}.${queueId}`;
  }

  /** Every job, ready, deferred or held, of one domain or of all. */
  queueFilter(domain?: string): string {
    return domain === undefined ? this.queueSubjects : `${this.prefix}queue.*.${domainToken(domain)}.*`;
  }

  /** Wherever a queue id's job is (any state, any domain): for finding it by id. */
  queueIdFilter(queueId: string): string {
    return `${this.prefix}queue.*.*.${queueId}`;
  }

  /** This site's message tracking log (queue/tracking.ts). */
  get trackingSubjects(): string {
    return `${this.prefix}track.>`;
  }

  /** Where relays (outcomes) and the admin tool (actions) append their tracking entries. */
  trackingSubject(origin: "relay" | "admin"): string {
    return `${this.prefix}track.${origin}`;
  }

  /**
   * The name of a KV bucket that holds this site's own state (not shared with other sites): a
   * bucket's subjects ($KV.<name>.>) would otherwise be captured by the same-named bucket of a
   * peer site across the leafnode, as the queue's were.
   */
  siteBucket(name: string): string {
    return this.site === undefined ? name : `${name}-${this.site}`;
  }

  /**
   * The consumer all relays of the site deliver through. Its name carries the site: a consumer's
   * acknowledgements travel on $JS.ACK.<stream>.<consumer>.…<stream sequence>…, which names no
   * JetStream domain, and crosses the leafnode like any subject. With one name at both sites, an
   * ack at one site deleted the job with the same sequence number at the other (found by the fault
   * suite: held mail that vanished without a delivery).
   */
  get deliverConsumer(): string {
    return this.site === undefined ? UNSCOPED_DELIVER_CONSUMER : `${UNSCOPED_DELIVER_CONSUMER}-${this.site}`;
  }

  /** The consumer that flushes a domain's held jobs (a domain token is a valid consumer name); site-named as deliverConsumer is. */
  flushConsumerName(domain: string): string {
    return this.site === undefined ? `mxw-drain-${domainToken(domain)}` : `mxw-drain-${this.site}-${domainToken(domain)}`;
  }

  /** This site's shadow copies of its queued mail, for its peers to source (shadow-copies.ts). */
  get shadowSubjects(): string {
    return `${this.prefix}shadow.>`;
  }

  shadowCopySubject(queueId: string): string {
    return `${this.prefix}shadow.copy.${queueId}`;
  }

  /** Copies of this site's messages (a filter on the copy subjects). */
  get shadowCopyFilter(): string {
    return `${this.prefix}shadow.copy.>`;
  }

  /** The marker this site writes when it took over a peer's message. */
  takenOverSubject(peer: string, queueId: string): string {
    return `${this.prefix}shadow.took.${peer}.${queueId}`;
  }

  rateCounterSubject(kind: string, key: string, window: number): string {
    return `${this.prefix}rate.${kind}.${key}.${window}`;
  }
}

const UNSCOPED = new QueueLayout();

/**
 * The domain token of a queue subject, scoped (mxw.<site>.queue.<state>.<dom>.<qid>) or not
 * (mxw.queue.<state>.<dom>.<qid>); undefined for a subject with too few tokens.
 */
export function domainTokenOfQueueSubject(subject: string): string | undefined {
  const tokens = subject.split(".");
  return tokens[1] === "queue" ? tokens[3] : tokens[4];
}

/** The state token of a queue subject, scoped or not: ready, defer or held. */
export function stateOfQueueSubject(subject: string): string | undefined {
  const tokens = subject.split(".");
  return tokens[1] === "queue" ? tokens[2] : tokens[3];
}
