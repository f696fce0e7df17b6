// DNS block and allow lists for the client address, asked at RCPT for domains that configure
// them. Only a 127.0.0.0/8 answer is a listing: 127.255.255.x is how the large lists say "query
// refused" or "error" (Spamhaus: refused through a public resolver), and must never block mail.

import type { Resolver } from "node:dns/promises";
import { isIPv6 } from "node:net";
import type { DnsListPolicy } from "../config/relay-domain.ts";
import type { Logger } from "../log.ts";
import { ipv6Groups, plainAddress } from "./client-address.ts";
import { dnsblPolicy } from "#api";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";

const CACHE_MS = 300_000;

/** The label sequence a DNS list is queried with: reversed octets, or reversed nibbles for IPv6. */
export function reversedAddress(address: string): string {
  const plain = plainAddress(address);
  if (!isIPv6(plain)) return plain.split(".").reverse().join(".");
  return ipv6Groups(plain)
    .map((g) => g.padStart(4, "0"))
    .join("")
    .split("")
    .reverse()
    .join(".");
}

/** A DNS list answer that means "listed" (not an error code of the list). */
export function isListing(answer: string): boolean {
  return answer.startsWith("127.") && !answer.startsWith("127.255.255.") && answer !== "127.0.0.1";
}

export class DnsListFilter implements RecipientFilter {
  readonly name = "dnsbl";
  readonly stage = "rcpt" as const;
  readonly bypassedByAllowList = true;
  private readonly cache = new Map<string, { listed: boolean; until: number }>();
  private readonly resolver: Resolver;
  private readonly policyFor: (domain: string) => DnsListPolicy | undefined;
  private readonly log: Logger;

  constructor(resolver: Resolver, policyFor: (domain: string) => DnsListPolicy | undefined, log: Logger) {
    this.resolver = resolver;
    this.policyFor = policyFor;
    this.log = log.child({ component: "dnsbl" });
  }

  async check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    const policy = this.policyFor(rcpt.domain);
    if (!policy || policy.zones.length === 0) return { action: "continue" };
    for (const zone of policy.allowZones) {
      if (await this.listed(rcpt.clientAddress, zone)) return { action: "continue" };
    }
    let unanswered: string | undefined;
    for (const zone of policy.zones) {
      const listed = await this.listed(rcpt.clientAddress, zone);
      if (listed === undefined) unanswered ??= zone;
      if (listed) {
        return {
          action: "reject",
          reason: `client listed in ${zone}`,
          reply: { code: 554, enhanced: "5.7.1", text: `Client host [${rcpt.clientAddress}] blocked using ${zone}` },
        };
      }
    }
    if (unanswered && policy.onError === "tempfail") {
      return {
        action: "tempfail",
        reason: `${unanswered} could not be asked`,
        reply: { code: 451, enhanced: "4.7.1", text: "Client host check unavailable, try again later" },
      };
    }
    return { action: "continue" };
  }

  /** true: listed; false: not listed; undefined: the list could not be asked. */
  private async listed(address: string, zone: string): Promise<boolean | undefined> {
    const query = `${reversedAddress(address)}.${zone}`;
    const now = Date.now();
    const cached = this.cache.get(query);
    if (cached && cached.until > now) return cached.listed;
    let listed = false;
    try {
      const answers = await this.resolver.resolve4(query);
      listed = answers.some(isListing);
      if (!listed) this.log.warn("DNS list answered with an error code; not treated as a listing", { zone, answers });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "ENOTFOUND" && code !== "ENODATA") {
        // The list cannot be asked now; not cached, so the next recipient asks again.
        this.log.warn("DNS list lookup failed", { zone, error: err });
        return undefined;
      }
    }
    if (this.cache.size > 50_000) this.cache.clear();
    this.cache.set(query, { listed, until: now + CACHE_MS });
    return listed;
  }
}

export const dnsblFilter: FilterModule = {
  name: "dnsbl",
  stage: "rcpt",
  spec: { field: "dnsbl", schema: dnsblPolicy },
  create: ({ resolver, policyFor, log }) => new DnsListFilter(resolver, (domain) => policyFor(domain)?.dnsbl, log),
};
