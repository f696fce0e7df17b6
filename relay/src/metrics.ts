// The relay's one metrics registry. Names follow Prometheus conventions (base units, _total for
// counters). Labels are bounded sets (reasons, results, states): no per-address labels, and a
// domain label only on the opt-in mxwarden_domain_* gauges, capped by --domain-metrics, so
// cardinality does not grow with the number of domains.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { JobKind } from "./queue/index.ts";

export type RejectReason =
  | "relay_denied"
  | "routing_denied"
  | "bad_address"
  | "unknown_user"
  | "size"
  | "loop"
  | "bare_newline"
  | "queue_unavailable"
  | "shutting_down"
  | "filter_reject"
  | "filter_tempfail"
  | "filter_error"
  | "too_many_connections";
/** Failures that are ours, not the sender's: what the acceptance SLO counts against the service. */
export type TransactionFailure = "queue_unavailable" | "internal_error" | "filter_unavailable" | "filter_error";
export type DeliveryResult = "delivered" | "deferred" | "bounced" | "connection_failed" | "skipped_dead_host" | "held" | "taken_over_by_peer" | "lease_lost";

export class RelayMetrics {
  readonly registry = new Registry();
  readonly sessions = new Counter({ name: "mxwarden_smtp_sessions_total", help: "SMTP sessions opened", registers: [this.registry] });
  readonly activeSessions = new Gauge({ name: "mxwarden_smtp_sessions_active", help: "SMTP sessions open now", registers: [this.registry] });
  readonly messagesAccepted = new Counter({
    name: "mxwarden_messages_accepted_total",
    help: "Messages answered 250 after they were durably queued (one per domain copy)",
    registers: [this.registry],
  });
  readonly bytesAccepted = new Counter({ name: "mxwarden_accepted_bytes_total", help: "Octets of accepted messages", registers: [this.registry] });
  readonly messagesRejected = new Counter({
    name: "mxwarden_messages_rejected_total",
    help: "Transactions refused at DATA or MAIL, by reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  // The acceptance SLO's ratio: failed / total. A transaction counts once, when a recipient of a
  // configured domain was taken or when it failed on our side first.
  readonly transactions = new Counter({
    name: "mxwarden_smtp_transactions_total",
    help: "Mail transactions with a recipient of a configured domain, or that failed on the relay's side before one",
    registers: [this.registry],
  });
  readonly transactionsFailed = new Counter({
    name: "mxwarden_smtp_transactions_failed_total",
    help: "Transactions answered 4xx because of the relay itself, by cause",
    labelNames: ["cause"] as const,
    registers: [this.registry],
  });
  readonly recipientsRejected = new Counter({
    name: "mxwarden_recipients_rejected_total",
    help: "RCPT TO commands refused, by reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly acceptLatency = new Histogram({
    name: "mxwarden_accept_duration_seconds",
    help: "From the end of DATA to the 250 reply (spool and job durably stored)",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly queueMessages = new Gauge({
    name: "mxwarden_queue_messages",
    help: "Queued delivery jobs by state (ready or deferred)",
    labelNames: ["state"] as const,
    registers: [this.registry],
  });
  readonly queueOldestAge = new Gauge({
    name: "mxwarden_queue_oldest_message_age_seconds",
    help: "Age of the oldest message still queued (ready or held for a retry)",
    registers: [this.registry],
  });
  // Opt-in (--domain-metrics N): at most N series each, the domains with the oldest mail first.
  readonly domainQueueMessages = new Gauge({
    name: "mxwarden_domain_queue_messages",
    help: "Queued delivery jobs of one domain (site-wide; only with --domain-metrics)",
    labelNames: ["domain"] as const,
    registers: [this.registry],
  });
  readonly domainQueueOldestAge = new Gauge({
    name: "mxwarden_domain_queue_oldest_message_age_seconds",
    help: "Age of the oldest queued job of one domain (only with --domain-metrics)",
    labelNames: ["domain"] as const,
    registers: [this.registry],
  });
  readonly domainMetricsOmitted = new Gauge({
    name: "mxwarden_domain_metrics_omitted",
    help: "Configured domains left out of the mxwarden_domain_* gauges by the --domain-metrics cap",
    registers: [this.registry],
  });
  readonly queueUp = new Gauge({ name: "mxwarden_queue_up", help: "1 when the JetStream queue accepts writes", registers: [this.registry] });
  readonly dependencyUp = new Gauge({
    name: "mxwarden_dependency_up",
    help: "1 when the engine answered its last probe, by dependency (nats, clamd, rspamd)",
    labelNames: ["dependency"] as const,
    registers: [this.registry],
  });
  readonly dependencyCheckDuration = new Histogram({
    name: "mxwarden_dependency_check_duration_seconds",
    help: "Time a dependency took to answer its probe (or to fail it), by dependency",
    labelNames: ["dependency"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly deliveryAttempts = new Counter({
    name: "mxwarden_delivery_attempts_total",
    help: "Delivery attempts by result",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly shadowCopies = new Counter({
    name: "mxwarden_shadow_copies_total",
    help: "Accepted messages copied for the peer sites (docs/architecture.md, Two sites), by result (stored, failed)",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly peerLastContact = new Gauge({
    name: "mxwarden_peer_last_contact_seconds",
    help: "Seconds since this site last heard from a peer site's shadow copies (sourcing over the leafnode)",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly peerShadowLag = new Gauge({
    name: "mxwarden_peer_shadow_lag_messages",
    help: "Records of a peer site's shadow copies not yet held here: the recovery point in messages",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly takeoverMessages = new Counter({
    name: "mxwarden_takeover_messages_total",
    help: "A peer site's messages this site took over and queued for delivery",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly recipientsDelivered = new Counter({
    name: "mxwarden_recipients_delivered_total",
    help: "Recipients the next hop accepted",
    registers: [this.registry],
  });
  readonly recipientsBounced = new Counter({
    name: "mxwarden_recipients_bounced_total",
    help: "Recipients given up on, by reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  // With messages_accepted_total and dsns_queued_total, the no-mail-lost identity:
  // accepted + DSNs queued = jobs completed + jobs still queued.
  readonly jobsCompleted = new Counter({
    name: "mxwarden_queue_jobs_completed_total",
    help: "Delivery jobs finished with nothing left to do (every recipient delivered or bounced), by kind (relay, dsn)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly dsnsSent = new Counter({ name: "mxwarden_dsns_queued_total", help: "Delivery status notifications queued to senders", registers: [this.registry] });
  // Also counted in dsns_queued_total: each is a DSN job like a bounce.
  readonly delayWarningsSent = new Counter({
    name: "mxwarden_delay_warnings_queued_total",
    help: "Delayed DSNs (spec.queue.delayWarning) queued to senders, at most one per message",
    registers: [this.registry],
  });
  readonly bytesDelivered = new Counter({ name: "mxwarden_delivered_bytes_total", help: "Octets of delivered messages", registers: [this.registry] });
  readonly deliveryLatency = new Histogram({
    name: "mxwarden_delivery_latency_seconds",
    help: "From acceptance to delivery at the next hop",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 432000],
    registers: [this.registry],
  });
  readonly deadDestinations = new Gauge({
    name: "mxwarden_destinations_unreachable",
    help: "Domains whose next hops are marked unreachable by this relay",
    registers: [this.registry],
  });
  readonly tlsHandshakes = new Counter({
    name: "mxwarden_tls_handshakes_total",
    help: "STARTTLS handshakes by result (success, failure)",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: "mxwarden_tls_certificate_expiry_timestamp_seconds",
    help: "Not-after time of the STARTTLS certificate (Unix seconds); 0 without --tls-cert",
    registers: [this.registry],
  });
  readonly configGeneration = new Gauge({
    name: "mxwarden_config_generation",
    help: "Reloads of the RelayDomain configuration that changed it",
    registers: [this.registry],
  });
  readonly configDomains = new Gauge({ name: "mxwarden_config_domains", help: "Domains configured", registers: [this.registry] });
  readonly configErrors = new Gauge({ name: "mxwarden_config_errors", help: "Invalid RelayDomain documents in the last load", registers: [this.registry] });
  readonly filterVerdicts = new Counter({
    name: "mxwarden_filter_verdicts_total",
    help: "Verdicts of the message filters, by filter and verdict (continue, tempfail, reject; allow from the access filter)",
    labelNames: ["filter", "verdict"] as const,
    registers: [this.registry],
  });
  readonly filterDuration = new Histogram({
    name: "mxwarden_filter_duration_seconds",
    help: "Time a filter took to judge a message",
    labelNames: ["filter"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly bareNewlines = new Counter({ name: "mxwarden_bare_newlines_total", help: "Messages that contained bare CR or LF", registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "mxwarden_" });
    for (const state of ["ready", "deferred"]) this.queueMessages.set({ state }, 0);
    // Zeros from the start: a ratio or identity over a counter that has no series yet is empty, not 0.
    for (const cause of ["queue_unavailable", "internal_error", "filter_unavailable", "filter_error"] satisfies TransactionFailure[])
      this.transactionsFailed.inc({ cause }, 0);
    for (const result of ["success", "failure"]) this.tlsHandshakes.inc({ result }, 0);
    for (const kind of ["relay", "dsn"] satisfies JobKind[]) this.jobsCompleted.inc({ kind }, 0);
  }
}
