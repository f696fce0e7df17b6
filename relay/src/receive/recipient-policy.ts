// Decides, for one RCPT TO address, whether this backup MX may accept it. Only recipients in a
// configured domain pass (never an open relay), and addresses that ask an MTA to route onward
// (the % hack, bang paths, quoted local parts holding @ or %) are refused like Postfix does with
// allow_untrusted_routing = no, because the primary might honour the route and relay for us.

import { normaliseDomain } from "#api";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { SmtpReply } from "../smtp/index.ts";
import { replies } from "./smtp-reply.ts";

export type RecipientVerdict =
  | { accept: true; address: string; localPart: string; domain: string; policy: DomainPolicy }
  | { accept: false; reply: SmtpReply };

const dotAtomLocal = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~\x80-\uffff-]+(?:\.[A-Za-z0-9!#$&'*+/=?^_`{|}~\x80-\uffff-]+)*$/;

export function splitAddress(address: string): { localPart: string; domain: string } | undefined {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return undefined;
  return { localPart: address.slice(0, at), domain: address.slice(at + 1) };
}

export function checkRecipient(address: string, lookup: (domain: string) => DomainPolicy | undefined): RecipientVerdict {
  const parts = splitAddress(address);
  if (!parts) return { accept: false, reply: replies.badAddress };
  const { localPart, domain: rawDomain } = parts;
  if (rawDomain.startsWith("[")) return { accept: false, reply: replies.relayDenied };
  const domain = normaliseDomain(rawDomain);
  if (domain === undefined) {
    return { accept: false, reply: rawDomain.endsWith(".") ? replies.badAddress : replies.relayDenied };
  }
  const policy = lookup(domain);
  if (!policy) return { accept: false, reply: replies.relayDenied };
  if (policy.retiring) return { accept: false, reply: replies.domainRetiring };
  if (/[%!@"\\]/.test(localPart) || localPart.includes(":")) return { accept: false, reply: replies.routingDenied };
  if (!dotAtomLocal.test(localPart) || localPart.length > 64) return { accept: false, reply: replies.badAddress };
  if (policy.recipients.mode === "list" && !policy.recipients.localParts.has(localPart.toLowerCase())) {
    return { accept: false, reply: replies.unknownUser };
  }
  return { accept: true, address: `${localPart}@${domain}`, localPart, domain, policy };
}
