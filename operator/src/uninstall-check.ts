// `mxwarden-operator uninstall-check`: the chart's pre-delete hook (charts/mxwarden/templates/
// uninstall-check.yaml). Removing the operator while RelayDomains or RelaySites exist would leave
// their finalizers with nobody to run them: the objects hang in Terminating, their namespaces with
// them, and the mail queued for those domains is never delivered. With --drain (the chart's
// default) the check deletes them itself, while the operator still runs: each RelayDomain's
// finalizer waits until no site holds mail for it (delivered, or bounced after its
// deletionGracePeriod), then the RelaySites go, and only then does helm remove the operator.
// Without it, the check refuses the uninstall and says what is left.

import { parseArgs } from "node:util";
import { parseDuration } from "#api";
import type { ApiClient } from "./kube/api-client.ts";
import { Resources, type ResourceRef } from "./kube/resources.ts";

export interface UninstallCheckOptions {
  drain: boolean;
  timeoutMs: number;
  /** How often the remaining objects are listed while they are being deleted. */
  pollMs?: number;
  print(line: string): void;
}

interface Listed {
  metadata: { name: string; namespace?: string; deletionTimestamp?: string; finalizers?: string[] };
  status?: { queuedMessages?: number };
}

export const UNINSTALL_CHECK_USAGE = `usage: mxwarden-operator uninstall-check [--drain] [--timeout DUR] [--kubeconfig FILE]
  Exits 0 when no RelayDomain and no RelaySite is left, else lists them and exits 1.
  --drain          delete them first, domains before sites, and wait while their finalizers drain queued mail
  --timeout DUR    how long --drain waits (default 10m)
  --kubeconfig F   management cluster kubeconfig (default: in-cluster)`;

export function parseUninstallCheckArgs(argv: string[]): { drain: boolean; timeoutMs: number; kubeconfig?: string | undefined } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: { drain: { type: "boolean", default: false }, timeout: { type: "string", default: "10m" }, kubeconfig: { type: "string" } },
  });
  const timeoutMs = parseDuration(values.timeout);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new Error(`--timeout: expected a duration such as 10m, got "${values.timeout}"`);
  return { drain: values.drain, timeoutMs, kubeconfig: values.kubeconfig };
}

function describe(kind: string, item: Listed): string {
  const name = item.metadata.namespace ? `${item.metadata.namespace}/${item.metadata.name}` : item.metadata.name;
  const notes: string[] = [];
  if (item.metadata.deletionTimestamp) notes.push("being deleted");
  if (item.status?.queuedMessages) notes.push(`${item.status.queuedMessages} messages queued`);
  return `${kind} ${name}${notes.length > 0 ? ` (${notes.join(", ")})` : ""}`;
}

async function remaining(client: ApiClient): Promise<{ domains: Listed[]; sites: Listed[] }> {
  const [domains, sites] = await Promise.all([client.list<Listed>(Resources.RelayDomain), client.list<Listed>(Resources.RelaySite)]);
  return { domains: domains.items, sites: sites.items };
}

/** Deletes every object of `ref` and waits until none is left; false on timeout. */
async function deleteAll(client: ApiClient, ref: ResourceRef, kind: string, deadline: number, options: UninstallCheckOptions): Promise<boolean> {
  let last = "";
  for (;;) {
    const { items } = await client.list<Listed>(ref);
    if (items.length === 0) return true;
    for (const item of items) if (!item.metadata.deletionTimestamp) await client.delete(ref, item.metadata.namespace, item.metadata.name);
    const summary = items.map((item) => describe(kind, item)).join("; ");
    if (summary !== last) options.print(`waiting for ${items.length} ${kind}${items.length === 1 ? "" : "s"}: ${summary}`);
    last = summary;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 2000));
  }
}

/** 0: nothing is left, helm may remove the operator; 1: something is left (listed). */
export async function uninstallCheck(client: ApiClient, options: UninstallCheckOptions): Promise<number> {
  const left = await remaining(client);
  if (left.domains.length === 0 && left.sites.length === 0) {
    options.print("no RelayDomain and no RelaySite left: the operator can be removed");
    return 0;
  }
  if (!options.drain) {
    options.print(
      `refusing to remove the operator: ${left.domains.length} RelayDomain(s) and ${left.sites.length} RelaySite(s) still exist, ` +
        "and their finalizers need the operator to deliver the mail queued for them and to remove the relays:",
    );
    for (const item of left.domains) options.print(`  ${describe("RelayDomain", item)}`);
    for (const item of left.sites) options.print(`  ${describe("RelaySite", item)}`);
    options.print(
      "Delete them (kubectl delete relaydomains --all -A; kubectl delete relaysites --all), then run helm uninstall again; " +
        "the chart's default, uninstall.drain=true, has the uninstall do this itself (docs/install.md).",
    );
    return 1;
  }
  const deadline = Date.now() + options.timeoutMs;
  options.print(`draining: deleting ${left.domains.length} RelayDomain(s), then ${left.sites.length} RelaySite(s)`);
  // Domains first: a domain's finalizer needs its sites' relays to deliver what is queued for it.
  if (!(await deleteAll(client, Resources.RelayDomain, "RelayDomain", deadline, options))) {
    options.print("timed out with RelayDomains left (their mail is still queued); run helm uninstall again to go on waiting");
    return 1;
  }
  if (!(await deleteAll(client, Resources.RelaySite, "RelaySite", deadline, options))) {
    options.print("timed out with RelaySites left; run helm uninstall again to go on waiting");
    return 1;
  }
  options.print("every RelayDomain and RelaySite is gone: the operator can be removed");
  return 0;
}
