// Writes this relay's queue report (see api/queue-report.ts) into its own key of a ConfigMap every few
// seconds. A JSON merge patch of that one key: server-side apply with the relays' shared field
// manager would remove the keys of the other relays, and a field manager per pod would pile up in
// managedFields as pods come and go. A relay that stops removes its key; the operator removes the
// keys of relays that died without doing so, once their reports are stale.

import type { DomainStore } from "../config/domain-store.ts";
import type { Logger } from "../log.ts";
import { domainToken, nothingQueued, type QueueConnection, type QueueIndex } from "../queue/index.ts";
import { encodeQueueReport, queueReportKey, type DomainQueueFigures, type QueueReport } from "#api";
import { startPeriodic } from "./periodic.ts";
import type { PrimaryReachability } from "./primary-reachability.ts";

export interface ReportTarget {
  namespace: string;
  name: string;
  /** kubeconfig file; absent means the pod's in-cluster service account. */
  kubeconfig?: string | undefined;
}

/** Counts and oldest job per configured domain, from one snapshot of the queue's subject index, and what this relay knows of its primary. */
export async function collectQueueReport(index: QueueIndex, store: DomainStore, reporter: string, primaries?: PrimaryReachability): Promise<QueueReport> {
  const snapshot = await index.snapshot();
  const domains: Record<string, DomainQueueFigures> = {};
  const served = store.current().byDomain;
  primaries?.retain(served);
  for (const [domain, policy] of served) {
    const { queued, oldestAcceptedAt } = snapshot.byDomainToken.get(domainToken(domain)) ?? nothingQueued(snapshot);
    const oldestQueuedSeconds = Math.max(0, Math.round((snapshot.takenAt - oldestAcceptedAt) / 1000));
    domains[domain] = { generation: policy.generation, retiring: policy.retiring !== undefined, queued, oldestQueuedSeconds, ...primaries?.figures(domain) };
  }
  return { updatedAt: new Date(snapshot.takenAt).toISOString(), reporter, domains };
}

/** How long a stopping relay tries to remove its report: its pod's termination grace keeps a few seconds for the closing steps. */
const WITHDRAW_TIMEOUT_MS = 5000;

/** Starts the reports; the function it returns stops them and removes this relay's key. */
export async function startQueueReporter(
  queue: QueueConnection,
  index: QueueIndex,
  store: DomainStore,
  target: ReportTarget,
  reporter: string,
  intervalMs: number,
  primaries: PrimaryReachability,
  log: Logger,
): Promise<() => Promise<void>> {
  // Loaded only when a report is configured: the Kubernetes client alone is a large part of the
  // relay's idle resident memory (measured by `make bench`, docs/benchmarks.md).
  const { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } = await import("@kubernetes/client-node");
  const config = new KubeConfig();
  if (target.kubeconfig) config.loadFromFile(target.kubeconfig);
  else config.loadFromCluster();
  const api = config.makeApiClient(CoreV1Api);
  const key = queueReportKey(reporter);
  const configMap = `${target.namespace}/${target.name}`;
  /** A JSON merge patch of this relay's key; null removes it. */
  const patch = (value: string | null): Promise<unknown> =>
    api.patchNamespacedConfigMap(
      { name: target.name, namespace: target.namespace, body: { data: { [key]: value } }, fieldManager: "mxwarden-relay" },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  let stopped = false;
  let writing: Promise<unknown> = Promise.resolve();
  const write = async (): Promise<void> => {
    if (!queue.isReady()) return;
    const report: QueueReport = { ...(await collectQueueReport(index, store, reporter, primaries)), intervalMs };
    if (stopped) return;
    writing = patch(encodeQueueReport(report));
    await writing;
  };
  const periodic = startPeriodic(intervalMs, write, (err) => log.warn("could not write the queue report", { configMap, error: err }));
  // A configuration change (a domain deleted, say) is reported at once, not one interval later.
  store.onChange(() => periodic.runNow());
  return async () => {
    stopped = true;
    periodic.stop();
    // After a write still under way, or that write would bring the key back.
    await writing.catch(() => undefined);
    // Until its report went stale (up to a minute), the operator would count this relay as live,
    // and a RelayDomain change would not be Ready before it: after every relay rollout.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, WITHDRAW_TIMEOUT_MS);
    });
    await Promise.race([patch(null).catch((err: unknown) => log.warn("could not remove the queue report", { configMap, error: err })), timeout]);
    clearTimeout(timer);
  };
}
