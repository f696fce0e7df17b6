// mxwarden as deployed: the relay process (relay/bin/mxwarden-relay) on a nats-server with
// JetStream file storage and `sync_interval: always`, the production setting: every message is
// fsynced before the PubAck, and the relay answers 250 only after the PubAck.

import { join } from "node:path";
import { TestNatsServer } from "../../test/harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../../test/harness/relay-process.ts";
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

export class MxwardenBackupMx implements BackupMx {
  readonly name = "mxwarden";
  readonly port: number;
  readonly relay: RelayProcess;
  private readonly nats: TestNatsServer;
  private readonly filterEngines: () => number[];

  private constructor(relay: RelayProcess, nats: TestNatsServer, filterEngines: () => number[]) {
    this.port = relay.smtpPort;
    this.relay = relay;
    this.nats = nats;
    this.filterEngines = filterEngines;
  }

  static async start(options: MxwardenOptions): Promise<MxwardenBackupMx> {
    const nats = await TestNatsServer.start(join(options.dir, "nats"), { syncAlways: options.syncAlways ?? true });
    const domainsPath = join(options.dir, "domains.yaml");
    writeDomains(domainsPath, [
      {
        domain: options.domain,
        primary: { hosts: [{ host: "127.0.0.1", port: options.primaryPort }] },
        maxMessageSize: "60Mi",
        ...options.spec,
      },
    ]);
    // The primary is probed every second while down (default 5s), so that the drain measures
    // delivery rather than the wait for the next probe; the peers are told at once (flush()).
    const args = ["--probe-interval", "1s", ...(process.env.BENCH_RELAY_ARGS ?? "").split(" ").filter(Boolean), ...(options.args ?? [])];
    const relay = await RelayProcess.start({ dir: options.dir, domainsPath, nats: nats.url, args }).catch(async (err: unknown) => {
      await nats.stop();
      throw err;
    });
    await relay.ready();
    return new MxwardenBackupMx(relay, nats, options.filterEngines ?? (() => []));
  }

  /** Nothing to do: the relay probes the primary and releases its deferred mail itself. */
  async flush(): Promise<void> {}

  peakRss(): number {
    return peakRss(this.relay.process.pid);
  }

  /** The relay, its nats-server (the process listening on its port) and the filter engines. */
  processes(): number[] {
    const nats = listeningPids(this.nats.port);
    if (nats.length === 0) throw new Error(`no nats-server listening on port ${this.nats.port}`);
    return [this.relay.process.pid, ...nats, ...this.filterEngines()];
  }

  async stop(): Promise<void> {
    await this.relay.stop();
    await this.nats.stop();
  }
}
