// Entry point of relay/bin/mxwarden-relay: wires configuration, queue, receiving and delivering
// together and owns the process lifecycle (SIGTERM shuts down gracefully, SIGHUP reloads the domains).

import { Resolver } from "node:dns/promises";
import { hostname as osHostname } from "node:os";
import type { Server } from "node:http";
import { parseRelayArgs, USAGE, UsageError, type RelayConfig } from "./cli.ts";
import { DomainStore } from "./config/domain-store.ts";
import { DEFAULTS } from "./config/relay-domain.ts";
import {
  DNS_TIMEOUT_MS,
  DNS_TRIES,
  OUTBOUND_CONNECT_TIMEOUT_MS,
  OUTBOUND_IDLE_TIMEOUT_MS,
  OUTBOUND_SOCKET_TIMEOUT_MS,
  progressIntervalFor,
} from "./deliver/delivery-timing.ts";
import { ConfigMapDomainSource } from "./config/domain-sources.ts";
import { DeliveryWorker } from "./deliver/delivery-worker.ts";
import { PeerWatch } from "./deliver/takeover.ts";
import { DestinationHealth } from "./deliver/destination-health.ts";
import { MaintenanceHolds } from "./deliver/maintenance-hold.ts";
import { NextHopResolver } from "./deliver/next-hop.ts";
import { OutboundSmtp } from "./deliver/outbound-smtp.ts";
import { startHealthServer } from "./health-server.ts";
import { createLogger, type Logger } from "./log.ts";
import { RelayMetrics } from "./metrics.ts";
import { EmbeddedNats, MessageTracking, QueueConnection, QueueIndex } from "./queue/index.ts";
import { startQueueMonitor } from "./status/queue-monitor.ts";
import { PrimaryReachability } from "./status/primary-reachability.ts";
import { startQueueReporter } from "./status/queue-reporter.ts";
import { startDomainQueueMetrics } from "./status/domain-queue-metrics.ts";
import { startDependencyProbe } from "./status/dependency-probe.ts";
import { SmtpReceiver } from "./receive/smtp-receiver.ts";
import { createFilters } from "./filter/filters.ts";
import { FilterPipeline } from "./filter/pipeline.ts";

/** Jobs held unacknowledged by all relays of a site together. */
const MAX_ACK_PENDING = 10_000;
/** How often a relay checks on its peer sites' shadow copies (metrics, takeover). */
const PEER_CHECK_INTERVAL_MS = 2000;
/** How long a relay with peer sites waits, before it delivers, for their records to be current. */
const PEER_CATCH_UP_MS = 15_000;

async function startRelay(config: RelayConfig, log: Logger): Promise<void> {
  const metrics = new RelayMetrics();
  const store = new DomainStore("path" in config.domains ? config.domains.path : new ConfigMapDomainSource(config.domains.configMaps, log), log);
  store.onChange((table, problems) => {
    metrics.configGeneration.set(table.generation);
    metrics.configDomains.set(table.byDomain.size);
    metrics.configErrors.set(problems.length);
  });
  await store.start();

  let embedded: EmbeddedNats | undefined;
  let servers = config.natsServers;
  if (servers.length === 0) {
    embedded = new EmbeddedNats(config.dataDir, log);
    servers = [await embedded.start()];
  }
  const queue = new QueueConnection(
    {
      servers,
      name: `mxwarden-relay ${config.hostname} ${process.pid}`,
      auth: config.natsAuth,
      caFile: config.natsCaFile,
      publishTimeoutMs: config.publishTimeoutMs,
      replicas: config.replicas,
      maxAckPending: MAX_ACK_PENDING,
      ackWaitMs: config.ackWaitMs,
      site: config.sites?.self,
      peers: config.sites?.peers,
    },
    log,
    {
      copied: () => metrics.shadowCopies.inc({ result: "stored" }),
      failed: () => metrics.shadowCopies.inc({ result: "failed" }),
    },
  );
  queue.start();
  const tracking = new MessageTracking(queue, { replicas: config.replicas, retentionMs: config.trackingRetentionMs, site: config.sites?.self }, log);

  const resolver = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES });
  if (config.resolvers.length > 0) resolver.setServers(config.resolvers);
  const nextHops = new NextHopResolver(resolver, {
    ourNames: [config.hostname, ...config.mxNames],
    mxPort: config.mxPort,
    bounceRelay: config.bounceRelay,
  });
  const outbound = new OutboundSmtp(
    {
      hostname: config.hostname,
      connectTimeoutMs: OUTBOUND_CONNECT_TIMEOUT_MS,
      socketTimeoutMs: OUTBOUND_SOCKET_TIMEOUT_MS,
      maxConnectionsPerHop: config.maxConnectionsPerHop,
      idleTimeoutMs: OUTBOUND_IDLE_TIMEOUT_MS,
    },
    log,
  );
  const primaries = new PrimaryReachability();
  // The worker is created below; a destination can only recover once it runs.
  const destinations = new DestinationHealth(
    config.probeIntervalMs,
    (domain) => {
      worker.flushHeldMail(domain);
      return Promise.resolve();
    },
    metrics,
    primaries,
    log,
  );
  const worker = new DeliveryWorker(
    {
      hostname: config.hostname,
      concurrency: config.deliveryConcurrency,
      progressIntervalMs: progressIntervalFor(config.ackWaitMs),
      fallbackRetry: { initialBackoffMs: DEFAULTS.initialBackoffMs, maxBackoffMs: DEFAULTS.maxBackoffMs },
    },
    { queue, store, resolver: nextHops, outbound, health: destinations, metrics, log, tracking },
  );

  const holds = new MaintenanceHolds((domain) => worker.flushHeldMail(domain), log);
  holds.update(store.current());
  store.onChange((table) => holds.update(table));

  const filters = new FilterPipeline(
    await createFilters({
      config,
      resolver,
      queue,
      nextHops,
      policyFor: (domain) => store.lookup(domain),
      policies: () => store.current().byDomain.values(),
      primaries,
      log,
    }),
    metrics,
    log,
  );
  let shuttingDown = false;
  const receiver = new SmtpReceiver(
    {
      hostname: config.hostname,
      tls: config.tls,
      maxClients: config.maxClients,
      maxConnectionsPerClient: config.maxConnectionsPerClient,
      greetPauseMs: config.greetPauseMs,
      tarpitAfter: config.tarpitAfter,
      tarpitDelayMs: config.tarpitDelayMs,
      maxRecipients: 1000,
      maxReceivedHeaders: config.maxReceivedHeaders,
      bareNewline: config.bareNewline,
      socketTimeoutMs: 300_000,
      shutdownGraceMs: config.shutdownGraceMs,
      proxyProtocol: config.proxyProtocol,
      postmasterDomain: config.postmasterDomain,
    },
    store,
    queue,
    filters,
    metrics,
    log,
  );
  await receiver.listen(config.listen.host, config.listen.port, config.reusePort);
  const healthServer: Server = await startHealthServer(config.metrics.host, config.metrics.port, metrics, {
    ready: () => {
      if (shuttingDown) return { ok: false, reason: "shutting down" };
      if (!queue.isReady()) return { ok: false, reason: "queue unreachable" };
      if (store.current().generation === 0) return { ok: false, reason: "no configuration loaded" };
      return { ok: true };
    },
  });
  // One read of the queue's subject index serves the site gauges, the per-domain gauges and the
  // queue report sampled within the same second.
  const queueIndex = QueueIndex.of(queue, 1000);
  const stopMonitor = startQueueMonitor(queue, queueIndex, metrics, log, 5000);
  const stopProbe = startDependencyProbe({ queue, clamd: config.clamd, rspamd: config.rspamd }, metrics, log, 5000);
  const stopReporter = config.statusReport
    ? await startQueueReporter(
        queue,
        queueIndex,
        store,
        config.statusReport,
        process.env.POD_NAME ?? config.hostname,
        config.statusReport.intervalMs,
        primaries,
        log,
      )
    : () => Promise.resolve();
  const stopDomainMetrics = config.domainMetrics > 0 ? startDomainQueueMetrics(queue, queueIndex, store, metrics, config.domainMetrics, 5000, log) : () => {};
  const peerWatch = queue.shadow
    ? new PeerWatch(queue, metrics, { takeoverAfterMs: config.takeoverAfterMs, checkIntervalMs: PEER_CHECK_INTERVAL_MS }, log)
    : undefined;
  peerWatch?.start();
  // With peer sites, delivery starts once their took markers are here (takeover.ts), or after a wait.
  if (peerWatch) void peerWatch.caughtUp(PEER_CATCH_UP_MS).then(() => worker.start());
  else worker.start();
  void queue
    .whenReady()
    .then(async () => {
      if ((await queue.jobs().depth()).deferred === 0) return;
      await destinations.recheck(
        [...store.current().byDomain.values()].map((policy) => ({
          domain: policy.domain,
          route: () => nextHops.forDomain(policy),
        })),
      );
    })
    .catch((err: unknown) => log.warn("start-up check of deferred mail failed; it waits for its retry times", { error: err }));

  const smtp = receiver.address();
  const http = healthServer.address();
  log.info("relay started", {
    smtp: `${smtp.host}:${smtp.port}`,
    metrics: typeof http === "object" && http ? `${http.address}:${http.port}` : String(http),
    nats: embedded ? `embedded ${servers[0] ?? ""}` : servers.join(","),
    hostname: config.hostname,
    domains: store.current().byDomain.size,
  });

  process.on("SIGHUP", () => {
    log.info("SIGHUP: reloading domains");
    void store.reload();
  });
  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info("shutting down: no new connections, sessions in flight may finish (a new transaction gets 421)", { signal, graceMs: config.shutdownGraceMs });
    await Promise.all([receiver.close(), worker.stop(config.shutdownGraceMs)]);
    stopMonitor();
    stopProbe();
    const reportRemoved = stopReporter();
    stopDomainMetrics();
    destinations.stop();
    holds.stop();
    peerWatch?.stop();
    store.stop();
    await outbound.close();
    await tracking.flush();
    await queue.close();
    await reportRemoved;
    await embedded?.stop();
    await new Promise((resolve) => healthServer.close(resolve));
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", (signal) => void shutdown(signal));
  process.on("SIGINT", (signal) => void shutdown(signal));
}

async function main(): Promise<void> {
  const log = createLogger({ service: "mxwarden-relay" });
  let config: RelayConfig | "help";
  try {
    config = parseRelayArgs(process.argv.slice(2), osHostname());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`mxwarden-relay: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (config === "help") {
    process.stdout.write(USAGE);
    return;
  }
  try {
    await startRelay(config, log);
  } catch (err) {
    log.error("relay failed to start", { error: err });
    process.exit(1);
  }
}

await main();
