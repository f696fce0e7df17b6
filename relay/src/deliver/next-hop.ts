// Where a job goes next. For a relayed domain: spec.primary.hosts in order, else the domain's MX
// records that rank better than ours (RFC 5321 §5.1: never ourselves or an MX of equal or worse
// preference, which would loop). For a bounce: the configured bounce relay, else the sender
// domain's MX. Host names are resolved here, with the relay's resolver, to IP addresses.

import { isIP } from "node:net";
import type { Resolver } from "node:dns/promises";
import type { DomainPolicy, OutboundTlsMode } from "../config/relay-domain.ts";

export interface NextHop {
  /** Name used for TLS (SNI and certificate checks) and in logs. */
  host: string;
  address: string;
  port: number;
}

export interface Route {
  hops: NextHop[];
  tls: { mode: OutboundTlsMode; verifyCertificate: boolean };
}

export class RouteError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.name = "RouteError";
    this.permanent = permanent;
  }
}

/** What routing needs to know of a domain's policy. */
export type DeliveryTarget = Pick<DomainPolicy, "domain" | "primaryHosts" | "outboundTls">;

export interface NextHopOptions {
  /** Names under which this relay appears in MX records (its --hostname and any aliases). */
  ourNames: readonly string[];
  /** Port for MX-derived hops: 25, changed only by tests. */
  mxPort: number;
  bounceRelay?: { host: string; port: number } | undefined;
}

interface MxCandidate {
  exchange: string;
  priority: number;
}

function dnsCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : undefined;
}

function shuffleTies(records: MxCandidate[]): MxCandidate[] {
  // resolveMx returns records unsorted; equal preferences are tried in random order (§5.1).
  return records
    .map((record) => ({ record, tie: Math.random() }))
    .sort((a, b) => a.record.priority - b.record.priority || a.tie - b.tie)
    .map(({ record }) => record);
}

export class NextHopResolver {
  private readonly resolver: Resolver;
  private readonly options: NextHopOptions;
  private readonly ourNames: Set<string>;

  constructor(resolver: Resolver, options: NextHopOptions) {
    this.resolver = resolver;
    this.options = options;
    this.ourNames = new Set(options.ourNames.map((name) => name.toLowerCase().replace(/\.$/, "")));
  }

  /** Hops for a configured domain. */
  async forDomain(policy: DeliveryTarget): Promise<Route> {
    const tls = policy.outboundTls;
    if (policy.primaryHosts.length > 0) {
      const hops: NextHop[] = [];
      for (const { host, port } of policy.primaryHosts) {
        try {
          hops.push(...(await this.addresses(host, port)));
        } catch (err) {
          // A configured host without an address must not hide the ones after it.
          if (!(err instanceof RouteError)) throw err;
        }
      }
      if (hops.length === 0) throw new RouteError(`no address for the primary hosts of ${policy.domain}`, false);
      return { hops, tls };
    }
    return { hops: await this.mxHops(policy.domain, true), tls };
  }

  /** Hops for a bounce to a domain we do not relay for. */
  async forBounce(domain: string): Promise<Route> {
    const tls = { mode: "opportunistic" as const, verifyCertificate: false };
    const relay = this.options.bounceRelay;
    if (relay) return { hops: await this.addresses(relay.host, relay.port), tls };
    return { hops: await this.mxHops(domain, false), tls };
  }

  private async mxHops(domain: string, relayed: boolean): Promise<NextHop[]> {
    let records: MxCandidate[];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      const code = dnsCode(err);
      if (code === "ENODATA")
        records = [{ exchange: domain, priority: 0 }]; // implicit MX (§5.1)
      else if (code === "ENOTFOUND") throw new RouteError(`domain ${domain} does not exist`, !relayed);
      else throw new RouteError(`MX lookup for ${domain} failed: ${code ?? String(err)}`, false);
    }
    if (records.length === 1 && (records[0]?.exchange === "" || records[0]?.exchange === ".")) {
      throw new RouteError(`${domain} accepts no mail (null MX)`, true);
    }
    const sorted = shuffleTies(records.map((r) => ({ exchange: r.exchange.toLowerCase().replace(/\.$/, ""), priority: r.priority })));
    const ours = sorted.filter((r) => this.ourNames.has(r.exchange)).map((r) => r.priority);
    const better = ours.length > 0 ? sorted.filter((r) => r.priority < Math.min(...ours)) : sorted;
    if (better.length === 0) {
      throw new RouteError(`no MX of ${domain} ranks above this relay; refusing to deliver to ourselves`, false);
    }
    const hops: NextHop[] = [];
    for (const record of better) {
      try {
        hops.push(...(await this.addresses(record.exchange, this.options.mxPort)));
      } catch {
        // An MX host without addresses is skipped; the next one may work.
      }
    }
    if (hops.length === 0) throw new RouteError(`no MX host of ${domain} has an address`, false);
    return hops;
  }

  private async addresses(host: string, port: number): Promise<NextHop[]> {
    if (isIP(host)) return [{ host, address: host, port }];
    const [v4, v6] = await Promise.all([this.resolver.resolve4(host).catch(() => [] as string[]), this.resolver.resolve6(host).catch(() => [] as string[])]);
    const found = [...v4, ...v6];
    if (found.length === 0) throw new RouteError(`host ${host} has no address`, false);
    return found.map((address) => ({ host, address, port }));
  }
}
