// One setup for the integration tests that run the relay against real peers. A test names the
// peers it needs (nats-server, clamd, rspamd, a DNS server, a test primary); they start side by
// side in the test's scratch directory, then the relay starts wired to them, and one stop() ends
// it all. The RelayDomain documents are the test's own: the stack writes them as they are given.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { TestClamd } from "./clamd.ts";
import { startDnsServer, type TestDnsServer, type Zones } from "./dns-server.ts";
import { TestNatsServer } from "./nats-server.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "./relay-process.ts";
import { TestRspamd } from "./rspamd.ts";
import { TestPrimary } from "./test-primary.ts";

/** The peers a test needs. Each one it asks for is started, and handed to the relay. */
export interface PeerOptions {
  /** The test's scratch directory: each peer gets a folder in it, the relay its data and log. */
  dir: string;
  /** A nats-server with JetStream: the relay's queue (--nats). */
  nats?: boolean;
  /** clamd with the test signatures (--clamd). */
  clamd?: boolean;
  /** rspamd with the stock rules, offline (--rspamd). */
  rspamd?: boolean;
  /** A DNS server for these zones, the relay's only resolver (--resolver). */
  dns?: Zones;
  /** A test primary: the relay does not know it; the RelayDomain documents name it. */
  primary?: boolean;
}

/** The relay to start once the peers are up. */
export interface RelayPlan {
  /** The RelayDomain documents, written to domains.yaml in the scratch directory. */
  domains: RelayDomainSpec[];
  /** Arguments beyond those that wire in the peers. */
  args?: string[];
}

/** The peers a stack was asked for, typed: a peer that was not asked for is undefined. */
export interface Peers<O extends PeerOptions> {
  readonly nats: O extends { nats: true } ? TestNatsServer : undefined;
  readonly clamd: O extends { clamd: true } ? TestClamd : undefined;
  readonly rspamd: O extends { rspamd: true } ? TestRspamd : undefined;
  readonly dns: O extends { dns: Zones } ? TestDnsServer : undefined;
  readonly primary: O extends { primary: true } ? TestPrimary : undefined;
}

/** What every stack has, whatever it was asked for. */
export interface RelayStack {
  /** Stops the relays first, then every peer. */
  stop(): Promise<void>;
}

/**
 * The relay to run, or a function that returns it once the peers are up (for documents that name
 * the primary's port, or anything else the relay must not start before).
 */
export type RelaySetup<O extends PeerOptions> = RelayPlan | ((peers: Peers<O>) => RelayPlan | Promise<RelayPlan>);

export type PeerStack<O extends PeerOptions> = RelayStack & Peers<O>;

export type RelayStackWithRelay<O extends PeerOptions> = PeerStack<O> & {
  readonly relay: RelayProcess;
  /**
   * Starts one more relay on the same peers, documents and arguments, with its data and log in
   * relay<n>/ of the scratch directory: to show that what NATS keeps is shared between relays.
   */
  addRelay(): Promise<RelayProcess>;
};

interface Handles {
  nats?: TestNatsServer;
  clamd?: TestClamd;
  rspamd?: TestRspamd;
  dns?: TestDnsServer;
  primary?: TestPrimary;
}

/** Stops what was started, relays first, so that a relay shuts down with its queue and peers still there. */
function stopper(handles: Handles, relays: RelayProcess[]): () => Promise<void> {
  return async () => {
    for (const relay of relays.splice(0)) await relay.stop();
    const { nats, clamd, rspamd, dns, primary } = handles;
    await Promise.all([primary?.close(), rspamd?.stop(), clamd?.stop(), nats?.stop(), dns?.close()]);
  };
}

/** The relay flags that point at the peers the stack runs. */
function peerArgs(handles: Handles): string[] {
  return [
    ...(handles.clamd ? ["--clamd", `127.0.0.1:${handles.clamd.port}`] : []),
    ...(handles.rspamd ? ["--rspamd", handles.rspamd.url] : []),
    ...(handles.dns ? ["--resolver", `127.0.0.1:${handles.dns.port}`] : []),
  ];
}

/**
 * Starts the peers (together: clamd and rspamd take long to load their rules), then the relay of
 * `relay`, and waits until it is ready. If anything fails to start, what did start is stopped
 * before the error is thrown.
 */
export async function startRelayStack<O extends PeerOptions>(peers: O): Promise<PeerStack<O>>;
export async function startRelayStack<O extends PeerOptions>(peers: O, relay: RelaySetup<O>): Promise<RelayStackWithRelay<O>>;
export async function startRelayStack<O extends PeerOptions>(options: O, relay?: RelaySetup<O>): Promise<PeerStack<O> | RelayStackWithRelay<O>> {
  const { dir } = options;
  const handles: Handles = {};
  const relays: RelayProcess[] = [];
  const stop = stopper(handles, relays);
  try {
    const started = await Promise.allSettled([
      options.nats
        ? TestNatsServer.start(join(dir, "nats")).then((nats) => {
            handles.nats = nats;
          })
        : undefined,
      options.clamd
        ? TestClamd.start(join(dir, "clamd")).then((clamd) => {
            handles.clamd = clamd;
          })
        : undefined,
      options.rspamd
        ? TestRspamd.start(join(dir, "rspamd")).then((rspamd) => {
            handles.rspamd = rspamd;
          })
        : undefined,
      options.dns
        ? startDnsServer(options.dns).then((dns) => {
            handles.dns = dns;
          })
        : undefined,
      options.primary
        ? TestPrimary.start().then((primary) => {
            handles.primary = primary;
          })
        : undefined,
    ]);
    for (const result of started) if (result.status === "rejected") throw result.reason;
    // Sound because each peer is set exactly when the options asked for it (see Peers).
    const peers = { ...handles } as Peers<O>;
    const stack: PeerStack<O> = { ...peers, stop };
    const plan = typeof relay === "function" ? await relay(peers) : relay;
    if (!plan) return stack;
    const domainsPath = join(dir, "domains.yaml");
    writeDomains(domainsPath, plan.domains);
    const args = [...peerArgs(handles), ...(plan.args ?? [])];
    let count = 0;
    const addRelay = async (): Promise<RelayProcess> => {
      // The first relay keeps its data and log in the scratch directory itself, as a lone relay.
      const relayDir = count === 0 ? dir : join(dir, `relay${count}`);
      count++;
      mkdirSync(relayDir, { recursive: true });
      const added = await RelayProcess.start({ dir: relayDir, domainsPath, nats: handles.nats?.url, args });
      relays.push(added);
      await added.ready();
      return added;
    };
    return { ...stack, relay: await addRelay(), addRelay };
  } catch (err) {
    await stop();
    throw err;
  }
}
