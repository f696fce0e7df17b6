// What the site controller learned about each site on its last reconcile, read by the domain
// controller to write per-site figures into RelayDomain status. In memory only: every figure is
// re-read from the sites' clusters within one polling interval after a restart.

import type { SiteReports } from "./relay-reports.ts";

export interface SiteState {
  reachable: boolean;
  /** Why the site is not usable, as a condition reason. */
  problem?: { reason: string; message: string };
  readyRelays: number;
  /** The relays' queue reports, as last read. */
  reports: SiteReports;
  /** When they were read (Date.now()). */
  reportsReadAt: number;
  configHash?: string;
  /** When the relays' configuration last changed (Date.now()): the reports are read again soon after. */
  configChangedAt?: number;
  /** Each served domain's view of the reports (relay-reports.ts domainView), by mail domain. */
  views?: ReadonlyMap<string, string>;
}

export class SiteStates {
  private readonly states = new Map<string, SiteState>();

  get(site: string): SiteState | undefined {
    return this.states.get(site);
  }

  set(site: string, state: SiteState): void {
    this.states.set(site, state);
  }

  delete(site: string): void {
    this.states.delete(site);
  }
}
