// mxwarden-operator: reconciles RelaySites and RelayDomains from the management cluster into relay
// deployments in the sites' clusters. See docs/operator.md.

import { readFileSync, existsSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";
import { parse } from "yaml";
import { createLogger, startHealthServer } from "#relay";
import { parseOperatorArgs, UsageError, USAGE } from "./cli.ts";
import { ApiClient } from "./kube/api-client.ts";
import { OperatorMetrics } from "./metrics.ts";
import { Operator } from "./controller/operator.ts";
import { siteQueueConnector } from "./controller/site-queue.ts";
import { parseUninstallCheckArgs, UNINSTALL_CHECK_USAGE, uninstallCheck } from "./uninstall-check.ts";

function loadKubeConfig(path: string | undefined): KubeConfig {
  const config = new KubeConfig();
  if (path) config.loadFromFile(path);
  else config.loadFromCluster();
  return config;
}

function loadRuleGroups(path: string | undefined): unknown[] {
  if (!path || !existsSync(path)) return [];
  const doc = parse(readFileSync(path, "utf8")) as { groups?: unknown[]; spec?: { groups?: unknown[] } } | null;
  return doc?.groups ?? doc?.spec?.groups ?? [];
}

/** The chart's pre-delete hook: see uninstall-check.ts. */
async function runUninstallCheck(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseUninstallCheckArgs(argv);
  } catch (err) {
    process.stderr.write(`mxwarden-operator uninstall-check: ${(err as Error).message}\n${UNINSTALL_CHECK_USAGE}\n`);
    return 2;
  }
  const client = new ApiClient(loadKubeConfig(options.kubeconfig));
  return await uninstallCheck(client, { ...options, print: (line) => process.stdout.write(`${line}\n`) });
}

async function main(): Promise<void> {
  if (process.argv[2] === "uninstall-check") {
    process.exitCode = await runUninstallCheck(process.argv.slice(3));
    return;
  }
  let config;
  try {
    config = parseOperatorArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`mxwarden-operator: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (config === "help") {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = createLogger({ component: "operator" }, config.logLevel);
  const metrics = new OperatorMetrics();
  const client = new ApiClient(loadKubeConfig(config.kubeconfig));
  const operator = new Operator({
    client,
    namespace: config.namespace,
    identity: config.identity,
    relayImage: config.relayImage,
    natsImage: config.natsImage,
    filterImages: { clamd: config.clamdImage, rspamd: config.rspamdImage },
    leaderElection: config.leaderElection,
    dnsServers: config.dnsServers,
    prometheusRuleGroups: loadRuleGroups(config.monitoringRules),
    pollIntervalMs: config.pollIntervalMs,
    siteHealthIntervalMs: config.siteHealthIntervalMs,
    connectSiteQueue: siteQueueConnector(log, client, config.namespace),
    metrics,
    log,
  });
  const server = await startHealthServer(config.metrics.host, config.metrics.port, metrics, operator);
  const address = server.address();
  const metricsPort = typeof address === "object" && address ? address.port : config.metrics.port;
  log.info("operator started", {
    namespace: config.namespace,
    identity: config.identity,
    metrics: `${config.metrics.host}:${metricsPort}`,
    leaderElection: config.leaderElection,
  });
  let stopping = false;
  const shutdown = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info("stopping");
    await operator.stop();
    server.close();
    process.exit(code);
  };
  operator.start(() => void shutdown(1));
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));
}

await main();
