// The domain's own allow and block lists (spec.access), the first filter at RCPT. A blocked client
// or sender is refused with 550 5.7.1; a block wins over an allow, so a forged allowed sender
// cannot carry mail past a blocked network. An allowed one gets the `allow` verdict: the pipeline
// then skips the filters that declare `bypassedByAllowList` (rspamd, SPF/DKIM/DMARC, DNS block
// lists, greylisting), here and at DATA; antivirus, rate limits, client checks and recipient
// verification still run. Both verdicts are counted in mxwarden_filter_verdicts_total{filter="access"}.

import { BlockList, isIPv6 } from "node:net";
import { accessPolicy } from "#api";
import { senderAddress, type AccessList, type AccessPolicy } from "../config/relay-domain.ts";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, RecipientVerdict } from "./filter.ts";

function networks(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address = "", bits = ""] = cidr.split("/");
    list.addSubnet(address, Number(bits), isIPv6(address) ? "ipv6" : "ipv4");
  }
  return list;
}

export class AccessFilter implements RecipientFilter {
  readonly name = "access";
  readonly stage = "rcpt" as const;
  private readonly networks = new WeakMap<AccessList, BlockList>();
  private readonly policyFor: (domain: string) => AccessPolicy | undefined;

  constructor(policyFor: (domain: string) => AccessPolicy | undefined) {
    this.policyFor = policyFor;
  }

  check(rcpt: RecipientUnderCheck): Promise<RecipientVerdict> {
    const policy = this.policyFor(rcpt.domain);
    if (!policy) return Promise.resolve({ action: "continue" });
    const blocked = this.match(policy.block, rcpt);
    if (blocked) {
      const text = blocked.startsWith("client")
        ? `Client host [${rcpt.clientAddress}] blocked by the recipient domain's policy`
        : "Sender address blocked by the recipient domain's policy";
      return Promise.resolve({ action: "reject", reason: `block list: ${blocked}`, reply: { code: 550, enhanced: "5.7.1", text } });
    }
    const allowed = this.match(policy.allow, rcpt);
    return Promise.resolve(allowed ? { action: "allow", reason: `allow list: ${allowed}` } : { action: "continue" });
  }

  /** The entry of `list` the client or sender matches, described for the log; undefined when none does. */
  private match(list: AccessList, rcpt: RecipientUnderCheck): string | undefined {
    if (list.clients.length > 0) {
      let clients = this.networks.get(list);
      if (!clients) {
        clients = networks(list.clients);
        this.networks.set(list, clients);
      }
      if (clients.check(rcpt.clientAddress, isIPv6(rcpt.clientAddress) ? "ipv6" : "ipv4")) return `client ${rcpt.clientAddress}`;
    }
    const sender = senderAddress(rcpt.sender);
    if (sender === "") return undefined;
    if (list.senders.includes(sender)) return `sender ${sender}`;
    const domain = sender.slice(sender.lastIndexOf("@") + 1);
    const listed = list.senderDomains.find((entry) => domain === entry || domain.endsWith(`.${entry}`));
    return listed === undefined ? undefined : `sender domain ${listed}`;
  }
}

export const accessFilter: FilterModule = {
  name: "access",
  stage: "rcpt",
  spec: { field: "access", schema: accessPolicy },
  create: ({ policyFor }) => new AccessFilter((domain) => policyFor(domain)?.access),
};
