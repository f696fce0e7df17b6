// Sender authentication with mailauth: SPF for the envelope sender, DKIM signatures, DMARC for the
// From domain, and ARC. The results reach the primary as Authentication-Results and Received-SPF
// in front of the message, under this relay's name as authserv-id; a DMARC failure of a domain
// that publishes p=reject is refused in the dialogue (and an SPF fail, if the domain asks for it).

import type { Resolver } from "node:dns/promises";
import type { authenticate as Authenticate } from "mailauth";
import { authenticationPolicy } from "#api";
import type { SenderAuthPolicy } from "../config/relay-domain.ts";
import type { FilterModule, MessageFilter, MessageUnderScan, Verdict } from "./filter.ts";

/** Split "Name: value\r\n folded\r\nName2: ..." into fields, keeping the folding. */
function fields(headers: string): Array<[string, string]> {
  const result: Array<[string, string]> = [];
  for (const field of headers.split(/\r?\n(?![ \t])/)) {
    const colon = field.indexOf(":");
    if (colon > 0)
      result.push([
        field.slice(0, colon),
        field
          .slice(colon + 1)
          .trim()
          .replace(/\r?\n/g, "\r\n"),
      ]);
  }
  return result;
}

export class SenderAuthFilter implements MessageFilter {
  readonly name = "sender_auth";
  readonly stage = "data" as const;
  readonly bypassedByAllowList = true;
  private readonly hostname: string;
  private readonly resolver: Resolver;
  private readonly policyFor: (domain: string) => SenderAuthPolicy | undefined;
  private readonly authenticate: typeof Authenticate;

  constructor(authenticate: typeof Authenticate, hostname: string, resolver: Resolver, policyFor: (domain: string) => SenderAuthPolicy | undefined) {
    this.authenticate = authenticate;
    this.hostname = hostname;
    this.resolver = resolver;
    this.policyFor = policyFor;
  }

  async check(message: MessageUnderScan): Promise<Verdict> {
    const policies = message.domains.map(this.policyFor).filter((p): p is SenderAuthPolicy => p?.enabled === true);
    if (policies.length === 0) return { action: "continue" };
    const result = await this.authenticate(message.open(), {
      ip: message.clientAddress,
      helo: message.heloName,
      sender: message.sender,
      mta: this.hostname,
      disableBimi: true,
      resolver: async (name: string, rrtype: string) => this.resolver.resolve(name, rrtype) as Promise<never>,
    });
    const dmarc = result.dmarc;
    if (dmarc && dmarc.status.result === "fail" && dmarc.policy === "reject" && !dmarc.testMode && policies.some((p) => p.rejectDmarcReject)) {
      const domain = dmarc.status.header?.from ?? "the sender domain";
      return {
        action: "reject",
        reason: `DMARC fail, p=reject for ${domain}`,
        reply: { code: 550, enhanced: "5.7.1", text: `Message rejected: DMARC policy of ${domain} says reject` },
      };
    }
    const spf = result.spf;
    if (spf && spf.status.result === "fail" && policies.some((p) => p.rejectSpfFail)) {
      return {
        action: "reject",
        reason: `SPF fail for ${spf.domain}`,
        reply: { code: 550, enhanced: "5.7.23", text: `Message rejected: SPF of ${spf.domain} does not permit this host` },
      };
    }
    return { action: "continue", headers: fields(result.headers) };
  }
}

export const senderAuthFilter: FilterModule = {
  name: "sender_auth",
  stage: "data",
  spec: { field: "authentication", schema: authenticationPolicy },
  // mailauth is large: it is loaded only when --sender-auth asks for it.
  create: async ({ config, resolver, policyFor }) => {
    if (!config.senderAuth) return undefined;
    const { authenticate } = await import("mailauth");
    return new SenderAuthFilter(authenticate, config.hostname, resolver, (domain) => policyFor(domain)?.authentication);
  },
};
