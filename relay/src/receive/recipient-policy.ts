// Decides, for one RCPT TO address, whether this backup MX may accept it. Only recipients in a
// configured domain pass (never an open relay), and addresses that ask an MTA to route onward
// (the % hack, bang paths, quoted local parts holding @ or %) are refused like Postfix does with
// allow_untrusted_routing = no, because the primary might honour the route and relay for us.
// Postmaster is always accepted (RFC 5321 §4.5.1): the bare "Postmaster" becomes postmaster@ the
// relay's postmaster domain, and postmaster@ any of our domains passes a recipient list.

import { normaliseDomain } from "#api";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { SmtpReply } from "../smtp/index.ts";
import { replies } from "./smtp-reply.ts";

export type RecipientVerdict = { accept: true; address: string; localPart: string; domain: string; policy: DomainPolicy } | { accept: false; reply: SmtpReply };

const dotAtomLocal = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~\x80-\uffff-]+(?:\.[A-Za-z0-9!#$&'*+/=?^_`{|}~\x80-\uffff-]+)*$/;

export function splitAddress(address: string): { localPart: string; domain: string } | undefined {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return undefined;
  return { localPart: address.slice(0, at), domain: address.slice(at + 1) };
}

/**
 * `postmasterDomain`: where a bare RCPT TO:<Postmaster> goes (--postmaster-domain, else the first
 * configured domain); undefined when the relay serves no domain yet.
 */
export function checkRecipient(
  address: string,
  lookup: (domain: string) => DomainPolicy | undefined,
  postmasterDomain: () => string | undefined = () => undefined,
): RecipientVerdict {
  if (address.toLowerCase() === "postmaster") {
    const domain = postmasterDomain();
    if (domain === undefined || !lookup(domain)) return { accept: false, reply: replies.postmasterUnavailable };
    return checkRecipient(`postmaster@${domain}`, lookup);
  }
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
  const local = localPart.toLowerCase();
  if (policy.recipients.mode === "list" && local !== "postmaster" && !policy.recipients.localParts.has(local)) {
    return { accept: false, reply: replies.unknownUser };
  }
  return { accept: true, address: `${localPart}@${domain}`, localPart, domain, policy };
}
