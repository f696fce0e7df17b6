// The fault suite's world, in network namespaces (netns.ts), as issue 16 describes it:
//
//   root (the test) ── ctl ── internet: Postfix (the sender), the DNS server (MX: primary, then mx-a, mx-b)
//                               │  │  └── primary: the primary MX (recording-primary.ts)
//                               │  └───── site-b: nats b1..b3 (domain b, R3), relays b1, b2
//                               └──────── site-a: nats a1..a3 (domain a, R3), relays a1, a2
//                                         site-a ══ site-b: the leafnode link (b's servers are leafnodes of a's)
//
// Each link is a veth pair the test can cut. The internet namespace routes between the others
// (the test reads the relays' metrics through it), but never between the two sites: the sites
// reach each other only over their own link, so cutting it partitions them.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TestProcess } from "./child.ts";
import type { Zones } from "./dns-server.ts";
import { findNatsServer } from "../../relay/src/queue/index.ts";
import { Link, Namespace, NETNS_PREFIX, ip, removeNamespaces } from "./netns.ts";
import { PostfixSender } from "./postfix-sender.ts";
import type { PrimaryRecord } from "./recording-primary.ts";
import { writeDomains } from "./relay-process.ts";
import { eventually, repoRoot, StopWaiting } from "./workspace.ts";

export type SiteName = "a" | "b";
export const SITES: SiteName[] = ["a", "b"];

export const DOMAIN = "faults.example";
export const SENDER = "sender@sender.example";

const NODE = process.execPath;
const HARNESS = join(repoRoot, "test/harness");
const PRIMARY_ADDRESS = "10.77.9.2";
/** Where the primary listens when the delaying forwarder stands in front of it on port 25. */
const PRIMARY_BEHIND_PROXY_PORT = 2525;
const SITE_OCTET: Record<SiteName, number> = { a: 1, b: 2 };
const NATS_CLIENT_PORT = 4222;
const NATS_ROUTE_PORT = 6222;
const NATS_LEAF_PORT = 7422;
const SITE_LINK_ADDRESS: Record<SiteName, string> = { a: "10.77.3.1", b: "10.77.3.2" };

export interface TopologyOptions {
  /** The relays' --takeover-after (e.g. "20s"); absent: the flag is not given. */
  takeoverAfter?: string;
  /** Put the delaying forwarder (delay-proxy.ts) in front of the primary, with this delay in ms. */
  primaryDelayMs?: number;
  /** Relays per site (default 2; at most 2, the DNS names two addresses per site). */
  relaysPerSite?: number;
  /** Messages the sender may have in flight to Postfix at once when injecting. */
  injectConcurrency?: number;
}

/** One relay: its process inside its site's namespace, and the addresses it serves on. */
export interface SiteRelay {
  name: string;
  address: string;
  dir: string;
  args: string[];
  process: TestProcess;
}

export interface SiteNats {
  name: string;
  dir: string;
  config: string;
  process: TestProcess;
}

export interface Site {
  name: SiteName;
  ns: Namespace;
  /** The link to the internet namespace (senders, primary, DNS). */
  uplink: Link;
  nats: SiteNats[];
  relays: SiteRelay[];
  destroyed: boolean;
}

/** The counts each scenario prints and asserts (issue 16, item 4). */
export interface Counts {
  sent: number;
  /** 250s Postfix logged (status=sent), per message at most one: where Postfix handed it over. */
  accepted: number;
  acceptedByPrimary: number;
  acceptedBySite: Record<SiteName, number>;
  /** Distinct messages of this run the primary received. */
  delivered: number;
  /** Messages of this run that came back in a DSN (relay bounces) or that Postfix bounced. */
  bounced: number;
  /** Receptions at the primary beyond the first of each message. */
  duplicates: number;
  /** Sent, but neither delivered nor bounced. */
  lost: number;
  /** Postfix attempts that ended after the final dot without a reply ("may be sent more than once"). */
  ambiguous: number;
}

export class FaultTopology {
  readonly dir: string;
  readonly internet: Namespace;
  readonly primaryNs: Namespace;
  readonly primaryLink: Link;
  readonly siteLink: Link;
  readonly sites: Record<SiteName, Site>;
  readonly sender: PostfixSender;
  private readonly options: TopologyOptions;
  private readonly primaries: TestProcess[] = [];
  private readonly helpers: TestProcess[] = [];
  private readonly sentIds: string[] = [];
  /** When this topology was built: the origin of the times in duplicateTrail(). */
  readonly startedAt = Date.now();
  private sequence = 0;
  /** Makes the Message-IDs of one topology unique across the scenarios of a run. */
  private readonly runId = `${process.pid}-${Date.now().toString(36)}`;

  private constructor(init: {
    dir: string;
    internet: Namespace;
    primaryNs: Namespace;
    primaryLink: Link;
    siteLink: Link;
    sites: Record<SiteName, Site>;
    sender: PostfixSender;
    options: TopologyOptions;
  }) {
    this.dir = init.dir;
    this.internet = init.internet;
    this.primaryNs = init.primaryNs;
    this.primaryLink = init.primaryLink;
    this.siteLink = init.siteLink;
    this.sites = init.sites;
    this.sender = init.sender;
    this.options = init.options;
  }

  /** Build the whole world; on failure, remove what was built and rethrow. */
  static async start(dir: string, options: TopologyOptions = {}): Promise<FaultTopology> {
    await removeNamespaces();
    try {
      return await FaultTopology.build(dir, options);
    } catch (err) {
      await removeNamespaces();
      throw err;
    }
  }

  private static async build(dir: string, options: TopologyOptions): Promise<FaultTopology> {
    const internet = await Namespace.create(`${NETNS_PREFIX}internet`, { forwarding: true, resolver: "127.0.0.1" });
    const primaryNs = await Namespace.create(`${NETNS_PREFIX}primary`);
    const siteNs = {
      a: await Namespace.create(`${NETNS_PREFIX}site-a`),
      b: await Namespace.create(`${NETNS_PREFIX}site-b`),
    };
    // The test's own way in (the relays' metrics), routed through the internet namespace.
    await ip("link", "add", `${NETNS_PREFIX}ctl`, "type", "veth", "peer", "name", `${NETNS_PREFIX}ctlp`);
    await ip("link", "set", `${NETNS_PREFIX}ctlp`, "netns", internet.name);
    await internet.ip("link", "set", `${NETNS_PREFIX}ctlp`, "name", "ctl");
    await internet.ip("addr", "add", "10.77.254.2/30", "dev", "ctl");
    await internet.ip("link", "set", "ctl", "up");
    await ip("addr", "add", "10.77.254.1/30", "dev", `${NETNS_PREFIX}ctl`);
    await ip("link", "set", `${NETNS_PREFIX}ctl`, "up");
    await ip("route", "add", "10.77.0.0/16", "via", "10.77.254.2");

    const primaryLink = await Link.create(
      { ns: internet, device: "primary", address: "10.77.9.1/24" },
      { ns: primaryNs, device: "uplink", address: `${PRIMARY_ADDRESS}/24` },
    );
    await primaryLink.route(primaryNs, "default", "via", "10.77.9.1");
    const uplinks = {} as Record<SiteName, Link>;
    for (const site of SITES) {
      const octet = SITE_OCTET[site];
      uplinks[site] = await Link.create(
        { ns: internet, device: `site-${site}`, address: `10.77.${octet}.1/24` },
        { ns: siteNs[site], device: "uplink", address: `10.77.${octet}.2/24`, extra: [`10.77.${octet}.11/24`, `10.77.${octet}.12/24`] },
      );
      await uplinks[site].route(siteNs[site], "default", "via", `10.77.${octet}.1`);
    }
    const siteLink = await Link.create(
      { ns: siteNs.a, device: "peer", address: `${SITE_LINK_ADDRESS.a}/24` },
      { ns: siteNs.b, device: "peer", address: `${SITE_LINK_ADDRESS.b}/24` },
    );
    // The internet does not carry traffic between the sites: only their own link does.
    for (const [from, to] of [
      ["10.77.1.0/24", "10.77.2.0/24"],
      ["10.77.2.0/24", "10.77.1.0/24"],
    ] as const) {
      await internet.iptables("-A", "FORWARD", "-s", from, "-d", to, "-j", "DROP");
    }
    await internet.iptables("-A", "FORWARD", "-d", "10.77.3.0/24", "-j", "DROP");

    const sites = {} as Record<SiteName, Site>;
    for (const site of SITES) sites[site] = { name: site, ns: siteNs[site], uplink: uplinks[site], nats: [], relays: [], destroyed: false };
    const sender = await PostfixSender.start(internet, join(dir, "postfix"), "mta.sender.example");
    const topology = new FaultTopology({ dir, internet, primaryNs, primaryLink, siteLink, sites, sender, options });
    await topology.startDns();
    await topology.primaryUp();
    for (const site of SITES) await topology.startNats(site);
    const relays = Array.from({ length: options.relaysPerSite ?? 2 }, (_, i) => i + 1);
    await Promise.all(SITES.flatMap((site) => relays.map((i) => topology.startRelay(site, i))));
    return topology;
  }

  // --- the parts ------------------------------------------------------------------------------

  private async startDns(): Promise<void> {
    const zones: Zones = {
      [DOMAIN]: {
        mx: [
          { preference: 10, exchange: `primary.${DOMAIN}` },
          { preference: 20, exchange: `mx-a.${DOMAIN}` },
          { preference: 20, exchange: `mx-b.${DOMAIN}` },
        ],
      },
      [`primary.${DOMAIN}`]: { a: [PRIMARY_ADDRESS] },
      [`mx-a.${DOMAIN}`]: { a: ["10.77.1.11", "10.77.1.12"] },
      [`mx-b.${DOMAIN}`]: { a: ["10.77.2.11", "10.77.2.12"] },
      // Where bounces to the sender would go (the relays use --bounce-relay instead).
      "sender.example": { mx: [{ preference: 10, exchange: `primary.${DOMAIN}` }] },
    };
    const dns = this.internet.spawn(NODE, [join(HARNESS, "netns-dns.ts"), JSON.stringify(zones)], { logFile: join(this.dir, "dns.log") });
    this.helpers.push(dns);
    const port = (JSON.parse(await dns.waitForLine(/"dnsPort"/)) as { dnsPort: number }).dnsPort;
    // The resolver library asks port 53, which resolv.conf cannot change: the DNS server listens on
    // a free port of the namespace's loopback, and this rule sends port 53 there.
    for (const proto of ["udp", "tcp"]) {
      await this.internet.iptables("-t", "nat", "-A", "OUTPUT", "-d", "127.0.0.1", "-p", proto, "--dport", "53", "-j", "REDIRECT", "--to-ports", String(port));
    }
  }

  /** (Re)start the primary; with primaryDelayMs, behind the delaying forwarder. */
  async primaryUp(): Promise<void> {
    const behindProxy = this.options.primaryDelayMs !== undefined;
    const port = behindProxy ? PRIMARY_BEHIND_PROXY_PORT : 25;
    const primary = this.primaryNs.spawn(NODE, [join(HARNESS, "recording-primary.ts"), PRIMARY_ADDRESS, String(port)], {
      logFile: join(this.dir, `primary-${this.primaries.length + 1}.log`),
    });
    this.primaries.push(primary);
    await primary.waitForLine(/"listening"/);
    if (behindProxy && !this.helpers.some((h) => h.lines.some((l) => l.includes('"delayMs"')))) {
      const proxy = this.primaryNs.spawn(
        NODE,
        [join(HARNESS, "delay-proxy.ts"), PRIMARY_ADDRESS, "25", PRIMARY_ADDRESS, String(port), String(this.options.primaryDelayMs)],
        { logFile: join(this.dir, "delay-proxy.log") },
      );
      this.helpers.push(proxy);
      await proxy.waitForLine(/"listening"/);
    }
  }

  /** The primary goes down: it stops listening and drops its connections (connection refused). */
  async primaryDown(): Promise<void> {
    const current = this.primaries.at(-1);
    if (current?.running) await current.stop();
  }

  /**
   * The sender cannot reach the primary (a routing problem between them) while the relays can:
   * Postfix gets a reset on port 25 and uses the backup MXes, which deliver at once.
   */
  async blockSenderToPrimary(): Promise<void> {
    await this.internet.iptables("-A", "OUTPUT", "-d", PRIMARY_ADDRESS, "-p", "tcp", "--dport", "25", "-j", "REJECT", "--reject-with", "tcp-reset");
  }

  async unblockSenderToPrimary(): Promise<void> {
    await this.internet.iptables("-D", "OUTPUT", "-d", PRIMARY_ADDRESS, "-p", "tcp", "--dport", "25", "-j", "REJECT", "--reject-with", "tcp-reset");
  }

  private natsConfig(site: SiteName, i: number, dir: string): string {
    const routes = [1, 2, 3].map((j) => `nats-route://127.0.0.1:${NATS_ROUTE_PORT + j - 1}`).join(", ");
    const leaf =
      site === "a"
        ? `leafnodes { listen: "${SITE_LINK_ADDRESS.a}:${NATS_LEAF_PORT + i - 1}" }`
        : `leafnodes { remotes: [ { urls: [${[1, 2, 3].map((j) => `"nats-leaf://${SITE_LINK_ADDRESS.a}:${NATS_LEAF_PORT + j - 1}"`).join(", ")}] } ], reconnect: 1 }`;
    return [
      `server_name: ${site}${i}`,
      `listen: "0.0.0.0:${NATS_CLIENT_PORT + i - 1}"`,
      "jetstream {",
      `  store_dir: "${join(dir, "jetstream")}"`,
      "  sync_interval: always",
      `  domain: ${site}`,
      "}",
      "cluster {",
      `  name: site-${site}`,
      `  listen: "127.0.0.1:${NATS_ROUTE_PORT + i - 1}"`,
      `  routes: [${routes}]`,
      "}",
      leaf,
      "",
    ].join("\n");
  }

  private async startNats(site: SiteName): Promise<void> {
    const s = this.sites[site];
    for (const i of [1, 2, 3]) {
      const dir = join(this.dir, `site-${site}`, `nats${i}`);
      mkdirSync(join(dir, "jetstream"), { recursive: true });
      const config = join(dir, "nats.conf");
      writeFileSync(config, this.natsConfig(site, i, dir));
      s.nats.push({ name: `${site}${i}`, dir, config, process: this.spawnNats(s, dir, config) });
    }
    await Promise.all(s.nats.map((n) => n.process.waitForLine(/Server is ready/)));
  }

  private spawnNats(site: Site, dir: string, config: string): TestProcess {
    return site.ns.spawn(findNatsServer(), ["-c", config], { logFile: join(dir, "nats.log") });
  }

  private natsUrls(): string {
    return [1, 2, 3].map((i) => `nats://127.0.0.1:${NATS_CLIENT_PORT + i - 1}`).join(",");
  }

  private async startRelay(site: SiteName, i: number): Promise<void> {
    const s = this.sites[site];
    const octet = SITE_OCTET[site];
    const address = `10.77.${octet}.${10 + i}`;
    const dir = join(this.dir, `site-${site}`, `relay${i}`);
    mkdirSync(dir, { recursive: true });
    const domainsPath = join(this.dir, "domains.yaml");
    writeDomains(domainsPath, [
      {
        domain: DOMAIN,
        primary: { hosts: [{ host: PRIMARY_ADDRESS, port: 25 }] },
        queue: { retry: { initialBackoff: "1s", maxBackoff: "3s" } },
      },
    ]);
    const peer = site === "a" ? "b" : "a";
    const args = [
      "--listen",
      `${address}:25`,
      "--hostname",
      `${site}${i}.mx.${DOMAIN}`,
      "--mx-name",
      `mx-${site}.${DOMAIN}`,
      "--domains",
      domainsPath,
      "--metrics",
      `${address}:9464`,
      "--data",
      join(dir, "data"),
      "--nats",
      this.natsUrls(),
      "--replicas",
      "3",
      "--site",
      site,
      "--peer-sites",
      peer,
      "--probe-interval",
      "1s",
      "--ack-wait",
      "10s",
      "--shutdown-grace",
      "5s",
      "--bounce-relay",
      `${PRIMARY_ADDRESS}:25`,
      ...(this.options.takeoverAfter !== undefined ? ["--takeover-after", this.options.takeoverAfter] : []),
    ];
    const relay: SiteRelay = { name: `${site}${i}`, address, dir, args, process: this.spawnRelay(s, dir, args) };
    const existing = s.relays.findIndex((r) => r.name === relay.name);
    if (existing >= 0) s.relays[existing] = relay;
    else s.relays.push(relay);
    await relay.process.waitForLine(/"msg":"relay started"/, 90_000);
    await eventually(
      `relay ${relay.name} to be ready`,
      async () => {
        if (!relay.process.running) throw new StopWaiting(`relay ${relay.name} exited`);
        return (await fetch(`http://${address}:9464/readyz`).catch(() => undefined))?.ok;
      },
      90_000,
      250,
    );
  }

  private spawnRelay(site: Site, dir: string, args: string[]): TestProcess {
    return site.ns.spawn(join(repoRoot, "relay/bin/mxwarden-relay"), args, {
      logFile: join(dir, "relay.log"),
      env: { ...process.env, MXWARDEN_LOG_LEVEL: process.env.MXWARDEN_LOG_LEVEL ?? "info" },
    });
  }

  // --- faults -----------------------------------------------------------------------------------

  /** Site `site` loses every link: to the internet (senders, primary) and to the other site. */
  async cutOff(site: SiteName): Promise<void> {
    await this.sites[site].uplink.cut();
    await this.siteLink.cut();
  }

  async reconnect(site: SiteName): Promise<void> {
    await this.sites[site].uplink.heal();
    await this.siteLink.heal();
  }

  async killRelay(site: SiteName, i: number): Promise<void> {
    await this.sites[site].relays[i - 1]?.process.kill9();
  }

  async restartRelay(site: SiteName, i: number): Promise<void> {
    await this.startRelay(site, i);
  }

  async killNats(site: SiteName, i: number): Promise<void> {
    await this.sites[site].nats[i - 1]?.process.kill9();
  }

  async restartNats(site: SiteName, i: number): Promise<void> {
    const s = this.sites[site];
    const nats = s.nats[i - 1];
    if (!nats) throw new Error(`no nats ${site}${i}`);
    nats.process = this.spawnNats(s, nats.dir, nats.config);
    await nats.process.waitForLine(/Server is ready/);
  }

  /**
   * The site is gone for good (disk, cluster or region lost): every process is killed with -9,
   * its data directories are deleted, and its links go down.
   */
  async destroySite(site: SiteName): Promise<void> {
    const s = this.sites[site];
    s.destroyed = true;
    await Promise.all([...s.relays.map((r) => r.process.kill9()), ...s.nats.map((n) => n.process.kill9())]);
    for (const n of s.nats) rmSync(n.dir, { recursive: true, force: true });
    for (const r of s.relays) rmSync(join(r.dir, "data"), { recursive: true, force: true });
    await s.uplink.cut();
    await this.siteLink.cut();
  }

  // --- mail ---------------------------------------------------------------------------------------

  /**
   * Hand `count` new messages to Postfix, at most `ratePerSecond` a second (spread over time, so
   * that faults land during the load), resolving once all are queued in Postfix.
   */
  async send(count: number, ratePerSecond = 25): Promise<string[]> {
    const ids: string[] = [];
    const started = Date.now();
    const concurrency = this.options.injectConcurrency ?? 4;
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const n = next++;
        if (n >= count) return;
        const due = started + (n * 1000) / ratePerSecond;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        const id = `<fault-${this.runId}-${++this.sequence}@sender.example>`;
        await this.sender.send(SENDER, `user${n % 50}@${DOMAIN}`, id, `fault suite ${this.sequence}`);
        ids.push(id);
        this.sentIds.push(id);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return ids;
  }

  /**
   * Duplicates whose first copy came from one of `relays` (names such as "a1") from `windowMs`
   * before the kills began (`killedAt`) until they were done (`killsDoneAt`): a relay killed
   * between the primary's 250 and the acknowledgement of its job leaves the job to be delivered
   * again (docs/architecture.md, "Crash safety"). So does a nats-server killed while it leads the
   * delivery consumer: an acknowledgement it confirmed but had not yet replicated is lost with it,
   * and the job comes back after the ack wait (seen in CI: a2 delivered, its site's nats-server
   * was killed, a1 delivered the job again 11.6 s later). `relays` are those killed, or those of a
   * site whose nats-server was killed. The window runs from `windowMs` before the kills began to
   * `windowMs` after they were done, the time a delivery's settling writes take.
   */
  duplicatesFromKilled(relays: string[], killedAt: number, killsDoneAt: number, windowMs = 2000): number {
    const helos = new Set(relays.map((name) => `${name}.mx.${DOMAIN}`));
    const first = new Map<string, PrimaryRecord>();
    const seen = new Map<string, number>();
    for (const record of this.primaryRecords()) {
      const id = record.messageIds[0];
      if (record.from === "" || !id) continue;
      if (!first.has(id)) first.set(id, record);
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    let explained = 0;
    for (const [id, n] of seen) {
      const record = first.get(id);
      if (n > 1 && record && helos.has(record.helo) && record.at <= killsDoneAt + windowMs && killedAt - record.at <= windowMs) explained += n - 1;
    }
    return explained;
  }

  /**
   * Each message the primary received more than once: who delivered each copy and when (ms from
   * `since`), and where Postfix handed it over, so that a failed count says where the copy came from.
   */
  duplicateTrail(since: number): string[] {
    const copies = new Map<string, PrimaryRecord[]>();
    for (const record of this.primaryRecords()) {
      const id = record.messageIds[0];
      if (record.from === "" || !id) continue;
      copies.set(id, [...(copies.get(id) ?? []), record]);
    }
    const outcomes = this.sender.outcomes();
    return [...copies]
      .filter(([, records]) => records.length > 1)
      .map(([id, records]) => {
        const outcome = outcomes.get(id);
        const deliveries = records.map((record) => `${record.helo} at ${record.at - since} ms`).join(", ");
        return `${id}: delivered by ${deliveries}; Postfix handed it to ${outcome?.sentTo.join(", ") || "nobody"} as ${outcome?.queueIds.join(", ") || "?"}`;
      });
  }

  /** Every message the primary received, across its restarts. */
  primaryRecords(): PrimaryRecord[] {
    const records: PrimaryRecord[] = [];
    for (const primary of this.primaries) {
      for (const line of primary.lines) if (line.startsWith('{"from"')) records.push(JSON.parse(line) as PrimaryRecord);
    }
    return records;
  }

  /**
   * For each message sent but neither delivered nor bounced: where Postfix handed it over and the
   * queue id that MX answered with, so that its trail in the relays' logs can be followed.
   */
  lostMessages(): string[] {
    const counts = this.counts();
    if (counts.lost === 0) return [];
    const arrived = new Set(this.primaryRecords().flatMap((record) => record.messageIds));
    const outcomes = this.sender.outcomes();
    return this.sentIds
      .filter((id) => !arrived.has(id))
      .map((id) => {
        const outcome = outcomes.get(id);
        return `${id} accepted by ${outcome?.sentTo.join(", ") || "nobody"} as ${outcome?.queueIds.join(", ") || "?"}`;
      });
  }

  counts(): Counts {
    const ours = new Set(this.sentIds);
    const receptions = new Map<string, number>();
    const bounced = new Set<string>();
    for (const record of this.primaryRecords()) {
      if (record.from === "") {
        // A DSN: the messages of ours it names bounced.
        for (const id of record.messageIds.slice(1)) if (ours.has(id)) bounced.add(id);
        continue;
      }
      const id = record.messageIds[0];
      if (id && ours.has(id)) receptions.set(id, (receptions.get(id) ?? 0) + 1);
    }
    const acceptedBySite: Record<SiteName, number> = { a: 0, b: 0 };
    let accepted = 0;
    let acceptedByPrimary = 0;
    let ambiguous = 0;
    for (const outcome of this.sender.outcomes().values()) {
      if (!ours.has(outcome.messageId)) continue;
      if (outcome.bounced) bounced.add(outcome.messageId);
      ambiguous += outcome.ambiguous;
      const first = outcome.sentTo[0];
      if (!first) continue;
      accepted++;
      if (first === PRIMARY_ADDRESS) acceptedByPrimary++;
      else if (first.startsWith("10.77.1.")) acceptedBySite.a++;
      else if (first.startsWith("10.77.2.")) acceptedBySite.b++;
    }
    let duplicates = 0;
    for (const n of receptions.values()) duplicates += n - 1;
    let lost = 0;
    for (const id of ours) if (!receptions.has(id) && !bounced.has(id)) lost++;
    return { sent: ours.size, accepted, acceptedByPrimary, acceptedBySite, delivered: receptions.size, bounced: bounced.size, duplicates, lost, ambiguous };
  }

  /** mxwarden_queue_messages of one relay, or undefined when it cannot be asked. */
  relayQueue(site: SiteName, i = 1): Promise<number | undefined> {
    return this.relayMetric(site, i, "mxwarden_queue_messages");
  }

  /** One sample of a relay's metric (summed over its label sets), or undefined when it cannot be asked. */
  async relayMetric(site: SiteName, i: number, name: string): Promise<number | undefined> {
    const relay = this.sites[site].relays[i - 1];
    if (!relay?.process.running) return undefined;
    const response = await fetch(`http://${relay.address}:9464/metrics`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
    if (!response?.ok) return undefined;
    let total: number | undefined;
    for (const line of (await response.text()).split("\n")) {
      if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total = (total ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
    }
    return total;
  }

  /**
   * The recovery point while `during` runs: the most shadow-copy records of the other site that
   * each site's relay 1 reported missing (mxwarden_peer_shadow_lag_messages), sampled every 250 ms.
   */
  async sampleLag<T>(during: Promise<T>): Promise<{ result: T; maxLag: Record<SiteName, number> }> {
    const maxLag: Record<SiteName, number> = { a: 0, b: 0 };
    let done = false;
    const sampler = (async () => {
      while (!done) {
        for (const site of SITES) {
          const lag = await this.relayMetric(site, 1, "mxwarden_peer_shadow_lag_messages");
          if (lag !== undefined) maxLag[site] = Math.max(maxLag[site], lag);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      return { result: await during, maxLag };
    } finally {
      done = true;
      await sampler;
    }
  }

  /**
   * Wait until every message sent is delivered or bounced, Postfix's queue is empty and the queues
   * of the sites still standing are empty, so that late duplicates are counted too. When that
   * does not happen within `timeoutMs`, the counts come back anyway with `unsettled` saying what
   * was still pending, so that a failing scenario still prints its counts.
   */
  async settle(timeoutMs: number): Promise<Counts & { unsettled?: string; lostMessages: string[]; duplicateTrail: string[] }> {
    try {
      await eventually(
        "every message to be delivered or bounced, and every queue to be empty",
        async () => {
          // Thrown, not returned: when time runs out, eventually() reports what was still pending.
          const counts = this.counts();
          if (counts.lost > 0) throw new Error(`${counts.lost} messages neither delivered nor bounced`);
          const postfix = await this.sender.queued();
          if (postfix > 0) throw new Error(`${postfix} messages in Postfix's queue`);
          for (const site of SITES) {
            if (this.sites[site].destroyed) continue;
            for (const i of this.sites[site].relays.map((_, n) => n + 1)) {
              const queued = await this.relayQueue(site, i);
              if (queued !== 0) throw new Error(`relay ${site}${i}: mxwarden_queue_messages ${queued ?? "unreadable"}`);
            }
          }
          return true;
        },
        timeoutMs,
        1000,
      );
      return { ...this.counts(), lostMessages: [], duplicateTrail: this.duplicateTrail(this.startedAt) };
    } catch (err) {
      return { ...this.counts(), unsettled: (err as Error).message, lostMessages: this.lostMessages(), duplicateTrail: this.duplicateTrail(this.startedAt) };
    }
  }

  /** A one-line summary for the test's output. */
  static format(name: string, counts: Counts, extra = ""): string {
    const { sent, accepted, acceptedByPrimary, acceptedBySite, delivered, bounced, duplicates, lost, ambiguous } = counts;
    return (
      `${name}: sent=${sent} accepted=${accepted} (primary ${acceptedByPrimary}, site a ${acceptedBySite.a}, site b ${acceptedBySite.b}) ` +
      `delivered=${delivered} bounced=${bounced} duplicates=${duplicates} lost=${lost} ambiguous=${ambiguous}${extra ? ` ${extra}` : ""}`
    );
  }

  /** Stop everything and remove the namespaces; the scratch directory stays for post-mortems. */
  async stop(): Promise<void> {
    await this.sender.stop().catch(() => undefined);
    const all = [
      ...SITES.flatMap((site) => this.sites[site].relays.map((r) => r.process)),
      ...SITES.flatMap((site) => this.sites[site].nats.map((n) => n.process)),
      ...this.primaries,
      ...this.helpers,
    ];
    await Promise.all(all.map((p) => p.kill9()));
    await removeNamespaces();
  }
}
