// mxwarden as deployed: the relay process (relay/bin/mxwarden-relay) on a nats-server with
// JetStream file storage and `sync_interval: always`, the production setting: every message is
// fsynced before the PubAck, and the relay answers 250 only after the PubAck.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { TestNatsServer } from "../../test/harness/nats-server.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "../../test/harness/relay-process.ts";
import { peakRss } from "../../test/harness/workspace.ts";
import { listeningPids } from "../cpu.ts";
import type { BackupMx, BackupMxOptions } from "./backup-mx.ts";

export interface MxwardenOptions extends BackupMxOptions {
  /** false: nats-server's default 2-minute fsync interval, only to show what fsync costs. */
  syncAlways?: boolean;
  /** Extra relay flags, e.g. --clamd and --rspamd. */
  args?: string[];
  /** Extra RelayDomain spec fields (filter policies). */
  spec?: Record<string, unknown>;
  /** Processes of the filter engines this relay uses (clamd, rspamd): their CPU is the server's too. */
  filterEngines?: () => number[];
}

/**
 * BENCH_RELAY_PROCESSES (default 1): relays sharing the SMTP port with --reuse-port, as that many
 * relay pods behind one Service would share a site's traffic on this one machine.
 */
const RELAY_PROCESSES = Number(process.env.BENCH_RELAY_PROCESSES ?? "1");

/** The one RelayDomain of a bench run: the domain, relayed to the bench's primary. */
export function benchDomain(options: MxwardenOptions): RelayDomainSpec {
  return { domain: options.domain, primary: { hosts: [{ host: "127.0.0.1", port: options.primaryPort }] }, maxMessageSize: "60Mi", ...options.spec };
}

/** The flags of every relay in the bench: the run's own (BENCH_RELAY_ARGS), then the scenario's. */
export function benchRelayArgs(scenarioArgs: string[] = []): string[] {
  // The primary is probed every second while down (default 5s), so that the drain measures
  // delivery rather than the wait for the next probe; the peers are told at once (flush()).
  return ["--probe-interval", "1s", ...(process.env.BENCH_RELAY_ARGS ?? "").split(" ").filter(Boolean), ...scenarioArgs];
}

/** The nats-server listening on `port`: its CPU is the relay's server's too. */
export function natsServerPids(port: number): number[] {
  const pids = listeningPids(port);
  if (pids.length === 0) throw new Error(`no nats-server listening on port ${port}`);
  return pids;
}

export class MxwardenBackupMx implements BackupMx {
  readonly name = "mxwarden";
  readonly port: number;
  /** The first relay; with BENCH_RELAY_PROCESSES above 1, the others share its port. */
  readonly relay: RelayProcess;
  private readonly relays: RelayProcess[];
  private readonly nats: TestNatsServer;
  private readonly filterEngines: () => number[];

  private constructor(relays: [RelayProcess, ...RelayProcess[]], nats: TestNatsServer, filterEngines: () => number[]) {
    this.relay = relays[0];
    this.port = this.relay.smtpPort;
    this.relays = relays;
    this.nats = nats;
    this.filterEngines = filterEngines;
  }

  static async start(options: MxwardenOptions): Promise<MxwardenBackupMx> {
    const nats = await TestNatsServer.start(join(options.dir, "nats"), { syncAlways: options.syncAlways ?? true });
    const domainsPath = join(options.dir, "domains.yaml");
    writeDomains(domainsPath, [benchDomain(options)]);
    const args = [...(RELAY_PROCESSES > 1 ? ["--reuse-port"] : []), ...benchRelayArgs(options.args)];
    const relays: RelayProcess[] = [];
    try {
      for (let i = 0; i < RELAY_PROCESSES; i++) {
        const dir = i === 0 ? options.dir : join(options.dir, `relay-${i + 1}`);
        mkdirSync(dir, { recursive: true });
        const relay = await RelayProcess.start({ dir, domainsPath, nats: nats.url, args, smtpPort: relays[0]?.smtpPort });
        relays.push(relay);
        await relay.ready();
      }
    } catch (err) {
      await Promise.all(relays.map((relay) => relay.stop()));
      await nats.stop();
      throw err;
    }
    const [first, ...others] = relays;
    if (!first) throw new Error(`BENCH_RELAY_PROCESSES must be 1 or more, not ${process.env.BENCH_RELAY_PROCESSES}`);
    return new MxwardenBackupMx([first, ...others], nats, options.filterEngines ?? (() => []));
  }

  /** Nothing to do: the relay probes the primary and releases its deferred mail itself. */
  async flush(): Promise<void> {}

  /** Summed over the relay processes (each one's own peak). */
  peakRss(): number {
    return this.relays.reduce((sum, relay) => sum + peakRss(relay.process.pid), 0);
  }

  /** The relay, its nats-server (the process listening on its port) and the filter engines. */
  processes(): number[] {
    return [...this.relays.map((relay) => relay.process.pid), ...natsServerPids(this.nats.port), ...this.filterEngines()];
  }

  async stop(): Promise<void> {
    await Promise.all(this.relays.map((relay) => relay.stop()));
    await this.nats.stop();
  }
}
