// Leader election through a coordination.k8s.io Lease, with controller-runtime's timings (15 s
// lease, 10 s renew deadline, 2 s retry). Writes are optimistic (resourceVersion), so two
// candidates can never both believe they hold the lease; a leader that cannot renew within the
// deadline steps down (onStoppedLeading) before its lease can expire for the others.

import type { ApiClient, Unstructured } from "./api-client.ts";
import { isNotFound } from "./api-client.ts";
import { Resources } from "./resources.ts";
import { delay } from "./informer.ts";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

interface Lease extends Unstructured {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

function microTime(date: Date): string {
  return date.toISOString().replace("Z", "000Z");
}

export class LeaderElector {
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private readonly abort = new AbortController();
  private leading = false;

  private readonly client: ApiClient;
  private readonly options: LeaderElectionOptions;

  constructor(client: ApiClient, options: LeaderElectionOptions) {
    this.client = client;
    this.options = options;
    this.leaseMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryMs = options.retryPeriodMs ?? 2_000;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Campaigns until elected, calls onStarted, renews; resolves after losing the lease or stop(). */
  async run(onStartedLeading: () => void, onStoppedLeading: () => void): Promise<void> {
    while (!this.abort.signal.aborted && !(await this.tryAcquireOrRenew())) await delay(this.retryMs, this.abort.signal);
    if (this.abort.signal.aborted) return;
    this.leading = true;
    onStartedLeading();
    let lastRenew = Date.now();
    while (!this.abort.signal.aborted) {
      await delay(this.retryMs, this.abort.signal);
      if (this.abort.signal.aborted) break;
      if (await this.tryAcquireOrRenew()) lastRenew = Date.now();
      else if (Date.now() - lastRenew > this.renewDeadlineMs) break;
    }
    this.leading = false;
    onStoppedLeading();
  }

  /** Stops campaigning; a leader gives the lease up so a standby takes over at once. */
  async stop(): Promise<void> {
    const wasLeading = this.leading;
    this.abort.abort();
    if (!wasLeading) return;
    try {
      const lease = await this.client.get<Lease>(Resources.Lease, this.options.namespace, this.options.name);
      if (lease.spec?.holderIdentity === this.options.identity) {
        await this.client.replace(Resources.Lease, { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 } });
      }
    } catch {
      // The lease simply expires.
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    const { namespace, name, identity } = this.options;
    try {
      let lease: Lease;
      try {
        lease = await this.client.get<Lease>(Resources.Lease, namespace, name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await this.client.create(Resources.Lease, {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        });
        return true;
      }
      const spec = lease.spec ?? {};
      const renewed = spec.renewTime ? Date.parse(spec.renewTime) : 0;
      const held = spec.holderIdentity && spec.holderIdentity !== identity && renewed + (spec.leaseDurationSeconds ?? 15) * 1000 > now.getTime();
      if (held) return false;
      const takingOver = spec.holderIdentity !== identity;
      await this.client.replace(Resources.Lease, {
        ...lease,
        spec: {
          ...spec,
          holderIdentity: identity,
          leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
          renewTime: microTime(now),
          ...(takingOver ? { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
        },
      });
      return true;
    } catch {
      // A conflict (409: another candidate wrote first) or an unreachable API server: not leading
      // this round; the renew deadline decides when a leader gives up.
      return false;
    }
  }
}
