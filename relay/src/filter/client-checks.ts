// Checks of the client itself at RCPT, per domain policy: a HELO that claims to be this relay (a
// forgery), a HELO that is no host name at all, and forward-confirmed reverse DNS (the PTR name of
// the client address must resolve back to it), which most legitimate mail servers have.

import type { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { clientChecksPolicy, normaliseDomain } from "#api";
import type { ClientCheckPolicy } from "../config/relay-domain.ts";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";

const CACHE_MS = 300_000;

/** A fully qualified host name or an address literal ([192.0.2.1], [IPv6:2001:db8::1]). */
export function isValidHelo(helo: string): boolean {
  const literal = /^\[(?:IPv6:)?([^\]]+)\]$/i.exec(helo);
  if (literal?.[1]) return isIP(literal[1]) !== 0;
  return normaliseDomain(helo.replace(/\.$/, "")) !== undefined;
}

export class ClientCheckFilter implements RecipientFilter {
  readonly name = "client_checks";
  readonly stage = "rcpt" as const;
  private readonly ourNames: Set<string>;
  private readonly resolver: Resolver;
  private readonly policyFor: (domain: string) => ClientCheckPolicy | undefined;
  private readonly fcrdnsCache = new Map<string, { confirmed: boolean; until: number }>();

  constructor(ourNames: readonly string[], resolver: Resolver, policyFor: (domain: string) => ClientCheckPolicy | undefined) {
    this.ourNames = new Set(ourNames.map((name) => name.toLowerCase()));
    this.resolver = resolver;
    this.policyFor = policyFor;
  }

  async check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    const policy = this.policyFor(rcpt.domain);
    if (!policy) return { action: "continue" };
    const helo = rcpt.heloName.toLowerCase().replace(/\.$/, "");
    if (policy.rejectHeloOurName && this.ourNames.has(helo)) {
      return {
        action: "reject",
        reason: "HELO claims to be this relay",
        reply: { code: 550, enhanced: "5.7.1", text: "Helo command rejected: you are not me" },
      };
    }
    if (policy.rejectInvalidHelo && !isValidHelo(rcpt.heloName)) {
      return {
        action: "reject",
        reason: "invalid HELO",
        reply: { code: 550, enhanced: "5.7.1", text: "Helo command rejected: need a fully qualified host name" },
      };
    }
    if (policy.reverseDns !== "disabled" && !(await this.forwardConfirmed(rcpt.clientAddress))) {
      const reply =
        policy.reverseDns === "reject"
          ? { code: 550, enhanced: "5.7.25", text: "Client host rejected: cannot find your reverse hostname" }
          : { code: 450, enhanced: "4.7.25", text: "Client host rejected: cannot find your reverse hostname" };
      return { action: policy.reverseDns === "reject" ? "reject" : "tempfail", reason: "no forward-confirmed reverse DNS", reply };
    }
    return { action: "continue" };
  }

  private async forwardConfirmed(plain: string): Promise<boolean> {
    const cached = this.fcrdnsCache.get(plain);
    if (cached && cached.until > Date.now()) return cached.confirmed;
    let confirmed = false;
    try {
      for (const name of (await this.resolver.reverse(plain)).slice(0, 10)) {
        const forward = isIP(plain) === 6 ? await this.resolver.resolve6(name).catch(() => []) : await this.resolver.resolve4(name).catch(() => []);
        if (forward.includes(plain)) {
          confirmed = true;
          break;
        }
      }
    } catch {
      confirmed = false;
    }
    if (this.fcrdnsCache.size > 50_000) this.fcrdnsCache.clear();
    this.fcrdnsCache.set(plain, { confirmed, until: Date.now() + CACHE_MS });
    return confirmed;
  }
}

export const clientChecksFilter: FilterModule = {
  name: "client_checks",
  stage: "rcpt",
  spec: { field: "clientChecks", schema: clientChecksPolicy },
  create: ({ config, resolver, policyFor }) =>
    new ClientCheckFilter([config.hostname, ...config.mxNames], resolver, (domain) => policyFor(domain)?.clientChecks),
};
