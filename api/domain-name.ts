// The one key of a mail domain: its lower-case A-label form. Relays index their domains by it and
// report by it, and the operator matches RelayDomains to those reports by it, so an IDN domain
// written as "bücher.example" and its relays' "xn--bcher-kva.example" are the same domain.

import { domainToASCII } from "node:url";

const labelPattern = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Lower-case A-label form of a mail domain, or undefined if it is not a valid host name. */
export function normaliseDomain(input: string): string | undefined {
  if (input.length === 0 || input.length > 253 || input.endsWith(".")) return undefined;
  const labels = input.split(".");
  if (labels.length < 2) return undefined;
  const ascii: string[] = [];
  for (const label of labels) {
    // domainToASCII would percent-decode ("exa%6dple" becomes "example") and map other
    // punctuation: only letters, digits, hyphens and non-ASCII letters may reach it.
    if (!/^[A-Za-z0-9\u0080-\uffff-]+$/.test(label)) return undefined;
    // Convert label by label: whole-name IDNA mapping would turn look-alike dots (U+3002 and
    // friends) into real ones, letting "user@example\u3002com" pass as example.com.
    const converted = domainToASCII(label).toLowerCase();
    if (!labelPattern.test(converted)) return undefined;
    ascii.push(converted);
  }
  return ascii.join(".");
}

/** The key of a RelayDomain's mail domain; the written form when it is not a valid name (the CRD refuses those). */
export function domainKey(domain: string): string {
  return normaliseDomain(domain) ?? domain.toLowerCase();
}
