// One API client per RelaySite's cluster, with a health loop of its own. The loop is separate from
// reconciling (as cluster-api's cluster cache does it): it asks /readyz every few seconds, publishes
// reachability, and asks for a reconcile of the site when it changes, so a site that comes back
// is brought up to date at once while an unreachable one never blocks the others.

import { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "#relay";
import type { RelaySite } from "#api";
import { ApiClient, isNotFound, type Unstructured } from "../kube/api-client.ts";
import type { KubeClient } from "../kube/kube-client.ts";
import { Resources } from "../kube/resources.ts";

export interface SiteConnection {
  client: ApiClient;
  reachable: boolean | undefined;
  /** Why the last check failed. */
  lastError?: string;
  /** monitoring.coreos.com CRDs (ServiceMonitor, PrometheusRule) exist in the site's cluster. */
  prometheusOperator: boolean;
  /** kubeconfig Secret resourceVersion the client was built from ("" for the local cluster). */
  source: string;
}

/** What the reconcilers need of the per-site connections. */
export interface SiteClients {
  /** Builds or refreshes the connection for a site; throws when its kubeconfig Secret is unusable. */
  ensure(site: RelaySite): Promise<SiteClient>;
  get(siteName: string): SiteClient | undefined;
  forget(siteName: string): void;
}

export interface SiteClient {
  client: KubeClient;
  reachable: boolean | undefined;
  lastError?: string;
  prometheusOperator: boolean;
}

export interface SiteConnectionsOptions {
  localClient: ApiClient;
  operatorNamespace: string;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  onChange: (siteName: string) => void;
  onReachability?: (siteName: string, reachable: boolean) => void;
  log: Logger;
}

export const DEFAULT_KUBECONFIG_KEY = "kubeconfig";

export class SiteConnections implements SiteClients {
  private readonly connections = new Map<string, SiteConnection>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly options: SiteConnectionsOptions;

  constructor(options: SiteConnectionsOptions) {
    this.options = options;
  }

  get(siteName: string): SiteConnection | undefined {
    return this.connections.get(siteName);
  }

  async ensure(site: RelaySite): Promise<SiteConnection> {
    const ref = site.spec.cluster?.kubeconfigSecretRef;
    let client = this.options.localClient;
    let source = "";
    if (ref) {
      const secret = await this.options.localClient.get<Unstructured & { data?: Record<string, string> }>(
        Resources.Secret,
        this.options.operatorNamespace,
        ref.name,
      );
      const encoded = secret.data?.[ref.key ?? DEFAULT_KUBECONFIG_KEY];
      if (!encoded) throw new Error(`Secret ${this.options.operatorNamespace}/${ref.name} has no key ${ref.key ?? DEFAULT_KUBECONFIG_KEY}`);
      source = secret.metadata.resourceVersion ?? "?";
      const existing = this.connections.get(site.metadata.name);
      if (existing && existing.source === source) return existing;
      const config = new KubeConfig();
      config.loadFromString(Buffer.from(encoded, "base64").toString("utf8"));
      client = new ApiClient(config, this.options.healthTimeoutMs);
    } else {
      const existing = this.connections.get(site.metadata.name);
      if (existing && existing.source === "") return existing;
    }
    const connection: SiteConnection = { client, reachable: undefined, prometheusOperator: false, source };
    this.connections.set(site.metadata.name, connection);
    this.startHealthLoop(site.metadata.name);
    await this.check(site.metadata.name, connection);
    return connection;
  }

  forget(siteName: string): void {
    clearTimeout(this.timers.get(siteName));
    this.timers.delete(siteName);
    this.connections.delete(siteName);
  }

  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  private startHealthLoop(siteName: string): void {
    clearTimeout(this.timers.get(siteName));
    const tick = async (): Promise<void> => {
      const connection = this.connections.get(siteName);
      if (!connection) return;
      await this.check(siteName, connection);
      if (this.connections.get(siteName) === connection) this.timers.set(siteName, setTimeout(() => void tick(), this.options.healthIntervalMs).unref());
    };
    this.timers.set(siteName, setTimeout(() => void tick(), this.options.healthIntervalMs).unref());
  }

  private async check(siteName: string, connection: SiteConnection): Promise<void> {
    const before = connection.reachable;
    const monitoringBefore = connection.prometheusOperator;
    try {
      await connection.client.rawGet("/readyz", this.options.healthTimeoutMs);
      connection.reachable = true;
      delete connection.lastError;
    } catch (err) {
      connection.reachable = false;
      connection.lastError = err instanceof Error ? err.message : String(err);
    }
    if (connection.reachable) {
      // A failed CRD lookup says nothing about reachability: keep what we knew.
      connection.prometheusOperator = await this.hasPrometheusOperator(connection.client).catch(() => connection.prometheusOperator);
    }
    if (before !== connection.reachable) {
      this.options.log.info(connection.reachable ? "site cluster reachable" : "site cluster unreachable", { site: siteName, error: connection.lastError });
      this.options.onReachability?.(siteName, connection.reachable);
    }
    if (before !== undefined && (before !== connection.reachable || monitoringBefore !== connection.prometheusOperator)) this.options.onChange(siteName);
  }

  private async hasPrometheusOperator(client: ApiClient): Promise<boolean> {
    try {
      await client.get(Resources.CustomResourceDefinition, undefined, "servicemonitors.monitoring.coreos.com");
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}
