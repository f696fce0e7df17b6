// Writes this relay's queue report (see api/queue-report.ts) into its own key of a ConfigMap every few
// seconds. A JSON merge patch of that one key: server-side apply with the relays' shared field
// manager would remove the keys of the other relays, and a field manager per pod would pile up in
// managedFields as pods come and go. The operator removes the keys of relays that are gone.

import type { DomainStore } from "../config/domain-store.ts";
import type { Logger } from "../log.ts";
import { domainToken, nothingQueued, type QueueConnection, type QueueIndex } from "../queue/index.ts";
import { queueReportKey, type DomainQueueFigures, type QueueReport } from "#api";
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

export async function startQueueReporter(
  queue: QueueConnection,
  index: QueueIndex,
  store: DomainStore,
  target: ReportTarget,
  reporter: string,
  intervalMs: number,
  primaries: PrimaryReachability,
  log: Logger,
): Promise<() => void> {
  // Loaded only when a report is configured: the Kubernetes client alone is a large part of the
  // relay's idle resident memory (measured by `make bench`, docs/benchmarks.md).
  const { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } = await import("@kubernetes/client-node");
  const config = new KubeConfig();
  if (target.kubeconfig) config.loadFromFile(target.kubeconfig);
  else config.loadFromCluster();
  const api = config.makeApiClient(CoreV1Api);
  const write = async (): Promise<void> => {
    if (!queue.isReady()) return;
    const report: QueueReport = { ...(await collectQueueReport(index, store, reporter, primaries)), intervalMs };
    await api.patchNamespacedConfigMap(
      {
        name: target.name,
        namespace: target.namespace,
        body: { data: { [queueReportKey(reporter)]: JSON.stringify(report) } },
        fieldManager: "mxwarden-relay",
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  };
  const periodic = startPeriodic(intervalMs, write, (err) =>
    log.warn("could not write the queue report", { configMap: `${target.namespace}/${target.name}`, error: err }),
  );
  // A configuration change (a domain deleted, say) is reported at once, not one interval later.
  store.onChange(() => periodic.runNow());
  return periodic.stop;
}
