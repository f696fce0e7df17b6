// The NATS the operator runs for a site (RelaySite spec.nats.managed), run here as processes from
// the nats.conf siteNatsConfig() renders, with only what a pod would differ in made local: the
// addresses (every pod listens on the same ports; here each server needs its own), the store and
// the environment the StatefulSet gives a server (its name, the leafnode seed). Site A runs three
// servers clustered, site B one; B dials A's advertised leafnode address, as dialsPeer() decides.
// A relay logs in with the operator's nkey seed and relays mail; a client without the key, or
// with another, is refused; the relay's user cannot step outside its permissions.

import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream, jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { connect, nkeyAuthenticator, nkeys, type NatsConnection } from "@nats-io/transport-node";
import type { RelaySite } from "#api";
import { CLUSTER_AUTH_FILE, clusterAuthConfig, siteNatsConfig, type NatsCredentials, type NatsPeer } from "../../operator/src/render/nats-objects.ts";
import { findNatsServer } from "../../relay/src/queue/index.ts";
import { TestProcess } from "../harness/child.ts";
import { issue, SERVER_AUTH, selfSigned } from "../harness/pki.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

function credentials(): NatsCredentials {
  const seedOf = (pair: ReturnType<typeof nkeys.createUser>): string => new TextDecoder().decode(pair.getSeed());
  const relay = nkeys.createUser();
  const leaf = nkeys.createUser();
  return {
    relaySeed: seedOf(relay),
    relayPublicKey: relay.getPublicKey(),
    leafnodeSeed: seedOf(leaf),
    leafnodePublicKey: leaf.getPublicKey(),
    encryptionKey: "0123456789abcdef".repeat(4),
    routePassword: "fedcba9876543210".repeat(3),
  };
}

function site(name: string, managed: NonNullable<RelaySite["spec"]["nats"]["managed"]>): RelaySite {
  return {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelaySite",
    metadata: { name },
    spec: { hostname: `${name}.example.net`, nats: { managed, domain: name } },
  };
}

interface LocalServer {
  name: string;
  clientPort: number;
  monitorPort: number;
  routePort: number;
  leafnodePort: number;
  process?: TestProcess;
}

/** A site's servers from its rendered nats.conf, each on its own loopback ports. */
class LocalSite {
  readonly servers: LocalServer[] = [];
  readonly dir: string;
  readonly credentials: NatsCredentials;

  private constructor(dir: string, credentials: NatsCredentials) {
    this.dir = dir;
    this.credentials = credentials;
  }

  static async allocate(dir: string, size: number, credentials: NatsCredentials): Promise<LocalSite> {
    const local = new LocalSite(dir, credentials);
    for (let i = 0; i < size; i++) {
      local.servers.push({
        name: `mxwarden-nats-${i}`,
        clientPort: await freePort(),
        monitorPort: await freePort(),
        routePort: await freePort(),
        leafnodePort: await freePort(),
      });
    }
    return local;
  }

  /** The rendered configuration as server `i` runs it here. */
  localise(config: string, i: number): string {
    const server = this.servers[i] as LocalServer;
    const text = config
      .replace('"0.0.0.0:4222"', `"127.0.0.1:${server.clientPort}"`)
      .replace('"0.0.0.0:8222"', `"127.0.0.1:${server.monitorPort}"`)
      .replace('"0.0.0.0:6222"', `"127.0.0.1:${server.routePort}"`)
      .replace('"0.0.0.0:7422"', `"127.0.0.1:${server.leafnodePort}"`)
      .replace('"/data/jetstream"', JSON.stringify(join(this.dir, server.name, "jetstream")));
    assert.ok(!text.includes("0.0.0.0") && !text.includes(".svc:"), `every address made local:\n${text}`);
    return text;
  }

  async start(config: string): Promise<void> {
    await Promise.all(
      this.servers.map(async (server, i) => {
        mkdirSync(join(this.dir, server.name), { recursive: true });
        const file = join(this.dir, server.name, "nats.conf");
        writeFileSync(file, this.localise(config, i));
        // The routes' file the Secret projects next to nats.conf, with the servers' local route ports.
        const routes = this.servers.map((other) => `nats-route://127.0.0.1:${other.routePort}`);
        writeFileSync(join(this.dir, server.name, CLUSTER_AUTH_FILE), clusterAuthConfig(routes, this.credentials.routePassword));
        server.process = new TestProcess(findNatsServer(), ["-c", file], {
          env: { ...process.env, POD_NAME: server.name, MXW_LEAFNODE_SEED: this.credentials.leafnodeSeed, MXW_JETSTREAM_KEY: this.credentials.encryptionKey },
          logFile: join(this.dir, server.name, "nats.log"),
        });
        await server.process.waitForLine(/Server is ready/);
      }),
    );
  }

  get urls(): string[] {
    return this.servers.map((server) => `nats://127.0.0.1:${server.clientPort}`);
  }

  async monitor<T>(path: string, i = 0): Promise<T> {
    return (await (await fetch(`http://127.0.0.1:${(this.servers[i] as LocalServer).monitorPort}${path}`)).json()) as T;
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.process?.stop()));
  }
}

/** Files under `dir` whose bytes contain `text`. */
function filesContaining(dir: string, text: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((file) => readFileSync(file).includes(text));
}

const seedAuth = (seed: string) => nkeyAuthenticator(new TextEncoder().encode(seed));

describe("the operator's managed NATS, run from its rendered nats.conf", () => {
  const dir = tempDir("managed-nats");
  const credsA = credentials();
  const credsB = credentials();
  let siteA: LocalSite;
  let siteB: LocalSite;
  let primary: TestPrimary | undefined;
  let relay: RelayProcess | undefined;
  let configA = "";

  before(async () => {
    siteA = await LocalSite.allocate(join(dir.path, "site-a"), 3, credsA);
    siteB = await LocalSite.allocate(join(dir.path, "site-b"), 1, credsB);
    const advertiseA = `127.0.0.1:${siteA.servers[0]?.leafnodePort}`;
    const specA = site("site-a", { replicas: 3, encryption: true, leafnode: { advertise: advertiseA } });
    const specB = site("site-b", { replicas: 1, leafnode: {} });
    const peerOfA: NatsPeer = { domain: "site-a", advertise: advertiseA, leafnodePublicKey: credsA.leafnodePublicKey, tls: false };
    const peerOfB: NatsPeer = { domain: "site-b", advertise: undefined, leafnodePublicKey: credsB.leafnodePublicKey, tls: false };
    configA = siteNatsConfig(specA, { natsImage: "n", credentials: credsA, peers: [peerOfB] });
    const configB = siteNatsConfig(specB, { natsImage: "n", credentials: credsB, peers: [peerOfA] });
    await siteA.start(configA);
    await siteB.start(configB);
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await siteB?.stop();
    await siteA?.stop();
  });

  it("forms a three-server JetStream cluster that takes an R3 stream from the relays' user", async () => {
    const nc = await connect({ servers: siteA.urls, authenticator: seedAuth(credsA.relaySeed) });
    try {
      // The servers elect a JetStream meta leader once their routes are up.
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      await eventually("JetStream to answer", async () => (await jsm.getAccountInfo().catch(() => undefined)) !== undefined, 30_000);
      const info = await eventually(
        "an R3 stream created",
        async () =>
          await jsm.streams
            .add({ name: "MXW_PROBE", subjects: ["mxw.site-a.probe.>"], num_replicas: 3, retention: RetentionPolicy.Limits })
            .catch(() => undefined),
        30_000,
      );
      assert.equal(info.config.num_replicas, 3);
      const cluster = await eventually("all three replicas current", async () => {
        const state = await jsm.streams.info("MXW_PROBE");
        return state.cluster && (state.cluster.replicas ?? []).filter((r) => r.current).length === 2 ? state.cluster : undefined;
      });
      assert.ok(cluster.leader);
      const account = await jsm.getAccountInfo();
      assert.equal(account.domain, "site-a");
      // The store is encrypted: a message's body is nowhere in site A's files, while site B, which
      // does not encrypt, shows the same body in the clear (so the search itself works).
      const marker = `mail-body-${Date.now()}`;
      await jetstream(nc).publish("mxw.site-a.probe.secret", marker);
      assert.equal(filesContaining(siteA.dir, marker).length, 0, "no plaintext in the encrypted store");
      const ncB = await connect({ servers: siteB.urls, authenticator: seedAuth(credsB.relaySeed) });
      try {
        await (await jetstreamManager(ncB)).streams.add({ name: "MXW_PROBE", subjects: ["mxw.site-b.probe.>"], num_replicas: 1 });
        await jetstream(ncB).publish("mxw.site-b.probe.secret", marker);
        assert.ok(filesContaining(siteB.dir, marker).length > 0, "the unencrypted store shows it");
      } finally {
        await ncB.close();
      }
    } finally {
      await nc.close();
    }
  });

  it("joins the sites by the rendered leafnode: site B reaches site A's JetStream domain", async () => {
    await eventually("the leafnode link up", async () => (await siteA.monitor<{ leafnodes?: number }>("/leafz")).leafnodes === 1, 30_000);
    const nc = await connect({ servers: siteB.urls, authenticator: seedAuth(credsB.relaySeed) });
    try {
      const jsm = await jetstreamManager(nc, { domain: "site-a" });
      const account = await eventually("site A's JetStream answers through the leafnode", async () => await jsm.getAccountInfo().catch(() => undefined));
      assert.equal(account.domain, "site-a");
    } finally {
      await nc.close();
    }
    // Exactly one link: site A took site B's connection and dials nobody.
    const leafs = await siteA.monitor<{ leafs: Array<{ account: string }> }>("/leafz", 0);
    const total = (await Promise.all([0, 1, 2].map(async (i) => (await siteA.monitor<{ leafnodes?: number }>("/leafz", i)).leafnodes ?? 0))).reduce(
      (a, b) => a + b,
      0,
    );
    assert.equal(total, 1, "site B's one server holds one link to site A");
    assert.equal(leafs.leafs[0]?.account, "MXW");
    assert.ok(!configA.includes("remotes"), "the site that advertises and sorts first only accepts");
  });

  it("refuses a client without a key, and one with another key", async () => {
    await assert.rejects(connect({ servers: siteA.urls, maxReconnectAttempts: 0, reconnect: false }), /Authorization Violation/i);
    await assert.rejects(
      connect({ servers: siteA.urls, maxReconnectAttempts: 0, reconnect: false, authenticator: seedAuth(credentials().relaySeed) }),
      /Authorization Violation/i,
    );
    // Site B's relay key is not site A's.
    await assert.rejects(
      connect({ servers: siteA.urls, maxReconnectAttempts: 0, reconnect: false, authenticator: seedAuth(credsB.relaySeed) }),
      /Authorization Violation/i,
    );
  });

  it("refuses a server that dials a route without the routes' password", async () => {
    const rogueDir = join(dir.path, "rogue");
    mkdirSync(rogueDir, { recursive: true });
    const target = siteA.servers[0] as LocalServer;
    const config = join(rogueDir, "nats.conf");
    writeFileSync(
      config,
      `listen: "127.0.0.1:${await freePort()}"\ncluster { name: "mxwarden-site-a", listen: "127.0.0.1:${await freePort()}", routes: ["nats-route://127.0.0.1:${target.routePort}"] }\n`,
    );
    const rogue = new TestProcess(findNatsServer(), ["-c", config], { logFile: join(rogueDir, "nats.log") });
    try {
      await rogue.waitForLine(/Server is ready/);
      const log = join(siteA.dir, target.name, "nats.log");
      await eventually("the route refused", () => /rid:\d+ - (authentication error|Authorization Violation)/i.test(readFileSync(log, "utf8")), 30_000);
      const routez = await siteA.monitor<{ num_routes: number; routes: Array<{ remote_name?: string }> }>("/routez");
      assert.ok(
        routez.routes.every((route) => route.remote_name?.startsWith("mxwarden-nats-")),
        JSON.stringify(routez.routes.map((r) => r.remote_name)),
      );
    } finally {
      await rogue.stop();
    }
  });

  it("keeps the relays' user inside its permissions", async () => {
    const nc = await connect({ servers: siteA.urls, authenticator: seedAuth(credsA.relaySeed) });
    const violations: string[] = [];
    void (async () => {
      for await (const status of nc.status()) if (status.type === "error") violations.push(String(status.error));
    })();
    try {
      const denied = async (action: (c: NatsConnection) => unknown, subject: string): Promise<void> => {
        const before = violations.length;
        action(nc);
        await nc.flush();
        await eventually(`a permissions violation for ${subject}`, () => violations.slice(before).some((v) => v.includes(subject)));
      };
      await denied((c) => c.publish("other.subject"), "other.subject");
      await denied((c) => c.publish("$JS.API.STREAM.DELETE.MXW_PROBE"), "$JS.API.STREAM.DELETE.MXW_PROBE");
      await denied((c) => c.subscribe("mxw.>"), "mxw.>");
      // The stream is still there, and an allowed subject still works on the same connection.
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info("MXW_PROBE")).config.name, "MXW_PROBE");
      const ack = await jetstream(nc).publish("mxw.site-a.probe.1", "x");
      assert.equal(ack.stream, "MXW_PROBE");
    } finally {
      await nc.close();
    }
  });

  it("carries mail for a relay that logs in with the operator's seed file", async () => {
    primary = await TestPrimary.start();
    const relayDir = join(dir.path, "relay");
    mkdirSync(relayDir, { recursive: true });
    const seedFile = join(relayDir, "nkey.seed");
    writeFileSync(seedFile, `${credsA.relaySeed}\n`, { mode: 0o600 });
    const domainsPath = join(relayDir, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "managed.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } }]);
    relay = await RelayProcess.start({
      dir: relayDir,
      domainsPath,
      nats: siteA.urls.join(","),
      args: ["--nats-nkey-file", seedFile, "--replicas", "3", "--site", "site-a", "--peer-sites", "site-b"],
    });
    await relay.ready(60_000);
    const total = 20;
    for (let i = 0; i < total; i++) {
      const { data } = await sendMail(relay.smtpPort, { from: "alice@sender.test", to: ["bob@managed.example"], body: simpleMessage(`m${i}`, `managed-${i}`) });
      assert.equal(data?.code, 250, `message ${i} accepted`);
    }
    await primary.waitForMessages(total, 60_000);
    assert.equal(primary.messages.length, total);
    assert.ok(!readFileSync(join(relayDir, "relay.log"), "utf8").includes(credsA.relaySeed), "the seed is never logged");
  });

  it("two sites' relays, each logged in with its own seed: shadow copies cross the rendered leafnode, no permission violation", async () => {
    assert.ok(primary && relay, "the previous test's relay at site A runs");
    const violations = (): number =>
      [...siteA.servers, ...siteB.servers]
        .map((server, i) => join(i < siteA.servers.length ? siteA.dir : siteB.dir, server.name, "nats.log"))
        .reduce((sum, file) => sum + (readFileSync(file, "utf8").match(/Violation/g) ?? []).length, 0);
    const before = violations();
    const relayDir = join(dir.path, "relay-b");
    mkdirSync(relayDir, { recursive: true });
    const seedFile = join(relayDir, "nkey.seed");
    writeFileSync(seedFile, `${credsB.relaySeed}\n`, { mode: 0o600 });
    const domainsPath = join(relayDir, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "managed.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } }]);
    const relayB = await RelayProcess.start({
      dir: relayDir,
      domainsPath,
      nats: siteB.urls.join(","),
      args: ["--nats-nkey-file", seedFile, "--replicas", "1", "--site", "site-b", "--peer-sites", "site-a"],
    });
    try {
      await relayB.ready(60_000);
      const delivered = primary.messages.length;
      for (let i = 0; i < 10; i++) {
        const { data } = await sendMail(relay.smtpPort, {
          from: "alice@sender.test",
          to: ["bob@managed.example"],
          body: simpleMessage(`s${i}`, `shadow-a-${i}`),
        });
        assert.equal(data?.code, 250);
        const viaB = await sendMail(relayB.smtpPort, { from: "alice@sender.test", to: ["bob@managed.example"], body: simpleMessage(`t${i}`, `shadow-b-${i}`) });
        assert.equal(viaB.data?.code, 250);
      }
      await primary.waitForMessages(delivered + 20, 60_000);
      // Site B holds site A's copies, sourced through site A's domain over the leafnode.
      const nc = await connect({ servers: siteB.urls, authenticator: seedAuth(credsB.relaySeed) });
      try {
        const jsm = await jetstreamManager(nc);
        await eventually(
          "site A's shadow copies at site B",
          async () => {
            const info = await jsm.streams.info("MXW_PEER_site-a", { subjects_filter: ">" }).catch(() => undefined);
            return Object.keys(info?.state.subjects ?? {}).filter((subject) => subject.includes(".shadow.copy.")).length >= 10;
          },
          60_000,
        );
      } finally {
        await nc.close();
      }
      assert.equal(violations() - before, 0, "the relays never stepped outside their permissions");
      assert.equal(primary.messages.length, delivered + 20, "each message delivered once");
    } finally {
      await relayB.stop();
    }
  });
});

describe("the managed NATS with TLS (spec.nats.managed.tls), from its rendered nats.conf", () => {
  const dir = tempDir("managed-nats-tls");
  const creds = credentials();
  let site: LocalSite;
  let primary: TestPrimary | undefined;
  let relay: RelayProcess | undefined;
  const pki = join(dir.path, "pki");

  before(async () => {
    // What cert-manager would put in the Secret: the server's certificate and key, and the CA.
    mkdirSync(pki, { recursive: true });
    selfSigned(pki, "ca", "/CN=mxwarden-test-ca", 2, ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign"]);
    issue(pki, "tls", "/CN=mxwarden-nats", 2, `${SERVER_AUTH}subjectAltName=DNS:localhost,IP:127.0.0.1\n`);
    site = await LocalSite.allocate(join(dir.path, "site"), 1, creds);
    const config = siteNatsConfig(
      {
        apiVersion: "mxwarden.io/v1alpha1",
        kind: "RelaySite",
        metadata: { name: "site-t" },
        spec: { hostname: "t.example.net", nats: { domain: "site-t", managed: { replicas: 1, tls: { secretName: "nats-tls" } } } },
      },
      { natsImage: "n", credentials: creds, peers: [] },
    )
      .replace('"/etc/nats-tls/tls.crt"', JSON.stringify(join(pki, "tls.crt")))
      .replace('"/etc/nats-tls/tls.key"', JSON.stringify(join(pki, "tls.key")))
      .replace('"/etc/nats-tls/ca.crt"', JSON.stringify(join(pki, "ca.crt")));
    await site.start(config);
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await site?.stop();
  });

  it("speaks TLS only, with a certificate the site's CA vouches for", async () => {
    const url = `tls://127.0.0.1:${site.servers[0]?.clientPort}`;
    // Without the CA the client cannot verify the server.
    await assert.rejects(connect({ servers: url, reconnect: false, authenticator: seedAuth(creds.relaySeed) }));
    const nc = await connect({ servers: url, tls: { caFile: join(pki, "ca.crt") }, authenticator: seedAuth(creds.relaySeed) });
    try {
      assert.equal(nc.info?.tls_required, true);
    } finally {
      await nc.close();
    }
  });

  it("carries mail for a relay with --nats-ca-file and the seed", async () => {
    primary = await TestPrimary.start();
    const relayDir = join(dir.path, "relay");
    mkdirSync(relayDir, { recursive: true });
    const seedFile = join(relayDir, "nkey.seed");
    writeFileSync(seedFile, `${creds.relaySeed}\n`, { mode: 0o600 });
    const domainsPath = join(relayDir, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "tls.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } }]);
    relay = await RelayProcess.start({
      dir: relayDir,
      domainsPath,
      nats: `tls://127.0.0.1:${site.servers[0]?.clientPort}`,
      args: ["--nats-nkey-file", seedFile, "--nats-ca-file", join(pki, "ca.crt"), "--site", "site-t"],
    });
    await relay.ready(60_000);
    for (let i = 0; i < 5; i++) {
      const { data } = await sendMail(relay.smtpPort, { from: "alice@sender.test", to: ["bob@tls.example"], body: simpleMessage(`t${i}`, `tls-${i}`) });
      assert.equal(data?.code, 250);
    }
    await primary.waitForMessages(5, 60_000);
    assert.equal(primary.messages.length, 5);
  });
});
