// mxwarden in its normal shape, two sites (scenario 8): the load goes to site A's relay, and site B
// (its nats-server joined to A's by a leafnode, its relay running but idle) sources a shadow copy
// of every message A accepts (docs/architecture.md, "Shadow copies"). Both sites are the server:
// their nats-servers and relays all count in its CPU time, the copies' cost at B included.

import { TwoSites, SITE_A, copiesHeld, peerSourcing } from "../../test/harness/two-sites.ts";
import { eventually, peakRss, StopWaiting } from "../../test/harness/workspace.ts";
import type { BackupMx, BackupMxOptions } from "./backup-mx.ts";
import { benchDomain, benchRelayArgs, natsServerPids } from "./mxwarden.ts";

export class MxwardenTwoSites implements BackupMx {
  readonly name = "mxwarden";
  readonly port: number;
  private readonly sites: TwoSites;

  private constructor(sites: TwoSites) {
    this.sites = sites;
    this.port = sites.relayA.smtpPort;
  }

  /** One relay per site, whatever BENCH_RELAY_PROCESSES says: the second site is what is measured. */
  static async start(options: BackupMxOptions): Promise<MxwardenTwoSites> {
    const args = benchRelayArgs();
    return new MxwardenTwoSites(await TwoSites.start({ dir: options.dir, domains: [benchDomain(options)], argsA: args, argsB: args }));
  }

  /** Nothing to do: the relay probes the primary and releases its deferred mail itself. */
  async flush(): Promise<void> {}

  /** Site A's relay, the one that receives. */
  peakRss(): number {
    return peakRss(this.sites.relayA.process.pid);
  }

  processes(): number[] {
    const { natsA, natsB, relayA, relayB } = this.sites;
    return [relayA.process.pid, relayB.process.pid, ...natsServerPids(natsA.port), ...natsServerPids(natsB.port)];
  }

  /**
   * Resolves once site A's relay has stored a shadow copy of each of the `messages` it accepted and
   * site B holds a record of each (the copy, or the retirement that replaced it), with nothing left
   * to source. Throws when a copy failed or they do not all reach B within `timeoutMs`: a run
   * without its copies measured one site, not two.
   */
  async settled(messages: number, timeoutMs: number): Promise<void> {
    const { natsB, relayA } = this.sites;
    let seen = { stored: 0, lag: 0, held: 0 };
    await eventually(
      "every shadow copy at site B",
      async () => {
        const failed = await relayA.metric("mxwarden_shadow_copies_total", 'result="failed"');
        if (failed > 0) throw new StopWaiting(`site A's relay failed to store ${failed} shadow copies`);
        seen = {
          stored: await relayA.metric("mxwarden_shadow_copies_total", 'result="stored"'),
          lag: (await peerSourcing(natsB, SITE_A)).lag,
          held: seen.held,
        };
        // Counting B's copies lists every subject: only once nothing is left to source.
        if (seen.stored < messages || seen.lag > 0) return false;
        seen.held = await copiesHeld(natsB, SITE_A);
        return seen.held === messages;
      },
      timeoutMs,
      250,
    ).catch((err: unknown) => {
      if (err instanceof StopWaiting) throw err;
      throw new Error(
        `${seen.held} of ${messages} shadow copies at site B after ${timeoutMs / 1000} s (site A stored ${seen.stored}; ${seen.lag} records still to source)`,
      );
    });
  }

  async stop(): Promise<void> {
    await this.sites.stop();
  }
}
