// Two sites joined as docs/architecture.md describes them: each its own JetStream domain (site-a,
// site-b), their nats-servers joined by a leafnode (B connects to A), a relay per site with
// --site/--peer-sites. Used by the two-sites tests and by `make bench` (scenario 8); the primary
// the relays deliver to is the caller's.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { QueueLayout } from "../../relay/src/queue/layout.ts";
import { peerStreamName } from "../../relay/src/queue/shadow-copies.ts";
import { TestNatsServer } from "./nats-server.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "./relay-process.ts";
import { eventually, freePort } from "./workspace.ts";

export const SITE_A = "site-a";
export const SITE_B = "site-b";

export interface TwoSitesOptions {
  /** Scratch directory: nats-a, nats-b, the relays' a and b, domains.yaml. */
  dir: string;
  /** The RelayDomains both sites serve. */
  domains: RelayDomainSpec[];
  /** Each relay's extra flags. */
  argsA?: string[];
  argsB?: string[];
}

export class TwoSites {
  readonly dir: string;
  readonly domainsPath: string;
  natsA!: TestNatsServer;
  natsB!: TestNatsServer;
  relayA!: RelayProcess;
  relayB!: RelayProcess;
  private readonly argsA: string[];

  private constructor(dir: string, argsA: string[]) {
    this.dir = dir;
    this.domainsPath = join(dir, "domains.yaml");
    this.argsA = ["--site", SITE_A, "--peer-sites", SITE_B, ...argsA];
  }

  /**
   * Both sites up and joined: the relays ready, subject interest crossing the leafnode, and each
   * site sourcing the other's shadow copies (until then a relay holds back its deliveries).
   */
  static async start(options: TwoSitesOptions): Promise<TwoSites> {
    const sites = new TwoSites(options.dir, options.argsA ?? []);
    try {
      const leafnodePort = await freePort();
      sites.natsA = await TestNatsServer.start(join(sites.dir, "nats-a"), { domain: SITE_A, leafnodePort });
      sites.natsB = await TestNatsServer.start(join(sites.dir, "nats-b"), { domain: SITE_B, leafnodeRemote: `nats-leaf://127.0.0.1:${leafnodePort}` });
      writeDomains(sites.domainsPath, options.domains);
      for (const site of ["a", "b"]) mkdirSync(join(sites.dir, site), { recursive: true });
      sites.relayA = await sites.startRelayA();
      sites.relayB = await RelayProcess.start({
        dir: join(sites.dir, "b"),
        domainsPath: sites.domainsPath,
        nats: sites.natsB.url,
        args: ["--site", SITE_B, "--peer-sites", SITE_A, ...(options.argsB ?? [])],
      });
      await Promise.all([sites.relayA.ready(), sites.relayB.ready()]);
      await leafnodeCarriesInterest(sites.natsA, sites.natsB);
      await eventually(
        "each site to source the other's shadow copies",
        async () => (await peerSourcing(sites.natsA, SITE_B)).active && (await peerSourcing(sites.natsB, SITE_A)).active,
        30_000,
      );
    } catch (err) {
      await sites.stop();
      throw err;
    }
    return sites;
  }

  /** Site A's relay, started (again) with its flags and store. */
  async startRelayA(): Promise<RelayProcess> {
    return await RelayProcess.start({ dir: join(this.dir, "a"), domainsPath: this.domainsPath, nats: this.natsA.url, args: this.argsA });
  }

  async stop(): Promise<void> {
    await this.relayA?.stop();
    await this.relayB?.stop();
    await this.natsB?.stop();
    await this.natsA?.stop();
  }
}

/** Subject interest crossing the leafnode is what made each site store the other's publishes: wait until it does. */
async function leafnodeCarriesInterest(natsA: TestNatsServer, natsB: TestNatsServer): Promise<void> {
  const ncA = await connect({ servers: natsA.url });
  const ncB = await connect({ servers: natsB.url });
  try {
    const seen = ncB.subscribe("mxw-test.leafnode-up");
    let crossed = false;
    void (async () => {
      for await (const _ of seen) crossed = true;
    })();
    await eventually("the leafnode to carry subject interest", async () => {
      ncA.publish("mxw-test.leafnode-up");
      await ncA.flush();
      return crossed;
    });
  } finally {
    await ncA.close();
    await ncB.close();
  }
}

/** How one site's stream of a peer's copies (MXW_PEER_<peer>) sources them. */
export interface PeerSourcing {
  /** The stream exists and every source has heard from the peer. */
  active: boolean;
  /** Records the sources have yet to bring over (JetStream's own count). */
  lag: number;
}

export async function peerSourcing(server: TestNatsServer, peer: string): Promise<PeerSourcing> {
  const sources = (await streamInfo(server, peer))?.sources ?? [];
  return { active: sources.length > 0 && sources.every((source) => source.active >= 0), lag: sources.reduce((sum, source) => sum + source.lag, 0) };
}

/** Messages of `peer`'s that `server`'s site holds a record of: a live copy, or the retirement that replaced it. */
export async function copiesHeld(server: TestNatsServer, peer: string): Promise<number> {
  return Object.keys((await streamInfo(server, peer, new QueueLayout(peer).shadowCopyFilter))?.state.subjects ?? {}).length;
}

/** The stream of `peer`'s copies at `server`, undefined while it does not exist; with its subjects under `subjects`. */
async function streamInfo(server: TestNatsServer, peer: string, subjects?: string): Promise<StreamInfo | undefined> {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    return await jsm.streams.info(peerStreamName(peer), subjects ? { subjects_filter: subjects } : undefined).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
