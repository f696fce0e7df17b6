// Each filter's section of the RelayDomain spec, with its defaults: one per filter, named as the
// filter is (relay/src/filter/<name>.ts exports the same section as its `policySection`). Adding a
// filter adds its section here and one field in relay-domain.ts.

import { Type } from "@sinclair/typebox";
import { parseDuration } from "./quantities.ts";
import { addressOrCidr, array, boolean, byteSize, celDurationMs, duration, hostname, mailAddress, number, object, oneOf, rate, rule } from "./schema.ts";
import { MAX_MESSAGE_BYTES_LIMIT, MAX_QUEUE_LIFETIME_MS } from "./limits.ts";

const { Optional } = Type;
const ms = (text: string): number => parseDuration(text) ?? Number.NaN;
const onError = (what: string) => oneOf(`${what} cannot answer: tempfail (451, fail closed) or accept (fail open)`, ["tempfail", "accept"], "tempfail");
const zoneList = (description: string) => array(description, hostname("A DNS zone", "is not a valid DNS zone"), { maxItems: 32 });
const score = (description: string) => number(description, { minimum: -1000, maximum: 1000, message: "must be a number (an rspamd score)" });

export const acceptWhenPolicy = oneOf(
  "always: accept whenever the relay can; primaryDown (monitoring mode): while the primary answers the relays' probes, RCPT gets 450 4.7.1 telling senders to use it",
  ["always", "primaryDown"],
  "always",
);

const accessList = (description: string) =>
  object(description, {
    clients: Optional(array("Client addresses or networks (CIDR)", addressOrCidr("Address or CIDR"), { maxItems: 1000 })),
    senders: Optional(array("Envelope sender addresses (MAIL FROM), matched without regard to case", mailAddress("A sender address"), { maxItems: 1000 })),
    senderDomains: Optional(
      array("Envelope sender domains; each also matches its subdomains", hostname("A domain", "is not a valid domain"), { maxItems: 1000 }),
    ),
  });

export const accessPolicy = object("Allow and block lists of the domain, checked first at RCPT (a block wins over an allow)", {
  allow: Optional(accessList("Listed clients and senders skip rspamd, SPF/DKIM/DMARC, DNS block lists and greylisting; antivirus still scans")),
  block: Optional(accessList("Listed clients and senders are refused at RCPT with 550 5.7.1")),
});

export const antivirusPolicy = object("clamd scanning of this domain's mail (relays started with --clamd)", {
  enabled: Optional(boolean("Scan messages", true)),
  onError: Optional(onError("clamd")),
  // Debian's clamd default StreamMaxLength.
  maxScanSize: Optional(
    byteSize("Messages above this are not scanned", {
      default: "25Mi",
      min: 1024,
      max: MAX_MESSAGE_BYTES_LIMIT,
      message: `must be a size from 1Ki to 200Mi such as "25Mi"`,
    }),
  ),
  onOversize: Optional(oneOf("What happens to a message above maxScanSize", ["accept", "tempfail", "reject"], "accept")),
});

export const antispamPolicy = object(
  "rspamd scoring (relays started with --rspamd)",
  {
    enabled: Optional(boolean("Score messages", true)),
    onError: Optional(onError("rspamd")),
    rejectScore: Optional(score("Reject at or above this score instead of at rspamd's reject action")),
    addHeaderScore: Optional(score("Mark as spam at or above this score instead of at rspamd's add header action")),
  },
  [
    rule<{ rejectScore?: number; addHeaderScore?: number }>(
      "!has(self.rejectScore) || !has(self.addHeaderScore) || self.addHeaderScore <= self.rejectScore",
      "must not be above rejectScore",
      (self) => self.rejectScore === undefined || self.addHeaderScore === undefined || self.addHeaderScore <= self.rejectScore,
      ".addHeaderScore",
    ),
  ],
);

// Postgrey's defaults: a 5 minute delay, first attempts kept 2 days, auto-allow for 35 days.
export const greylistingPolicy = object(
  "Temp-fail the first attempt of an unknown (client network, sender, recipient)",
  {
    enabled: Optional(boolean("Greylist", false)),
    delay: Optional(duration("Minimum wait before a retry passes", { default: "5m" })),
    expiry: Optional(duration("How long a first attempt is remembered (longer than delay)", { default: "2d" })),
    autoAllow: Optional(
      duration("After a passed retry, the client network and sender domain pass for this long (at most 60d)", {
        default: "35d",
        maxMs: 2 * MAX_QUEUE_LIFETIME_MS,
      }),
    ),
    allowClients: Optional(array("Client networks never greylisted (CIDR)", addressOrCidr("Address or CIDR"), { maxItems: 1000 })),
    allowSenderDomains: Optional(array("Sender domains never greylisted", hostname("A domain", "is not a valid domain"), { maxItems: 1000 })),
  },
  [
    rule<{ delay: string; expiry: string }>(
      `${celDurationMs("self.expiry")} > ${celDurationMs("self.delay")}`,
      "must be longer than delay",
      (self) => ms(self.expiry) > ms(self.delay),
      ".expiry",
    ),
  ],
);

export const dnsblPolicy = object("DNS block and allow lists asked about the client address", {
  zones: Optional(zoneList("Block list zones: a listed client is refused (554 5.7.1)")),
  allowZones: Optional(zoneList("Allow list zones: a listed client skips the block lists")),
  onError: Optional(oneOf("A list cannot be asked: accept or tempfail", ["accept", "tempfail"], "accept")),
});

export const authenticationPolicy = object("SPF, DKIM, DMARC and ARC", {
  enabled: Optional(boolean("Check and record Authentication-Results", true)),
  rejectDmarcReject: Optional(boolean("Refuse DMARC failures of domains publishing p=reject", true)),
  rejectSpfFail: Optional(boolean("Refuse SPF -all failures (off by default: forwarding breaks SPF)", false)),
});

export const rateLimitsPolicy = object("Recipients accepted per window, counted by all relays together", {
  perClient: Optional(rate('At most N recipients per window per client address, such as "100/1m" (windows of 1s to 1d)')),
  perSenderDomain: Optional(rate('At most N recipients per window per sender domain, such as "100/1m" (windows of 1s to 1d)')),
  perDomain: Optional(rate('At most N recipients per window for the whole domain, such as "100/1m" (windows of 1s to 1d)')),
});

export const clientChecksPolicy = object("HELO and reverse DNS checks", {
  rejectHeloOurName: Optional(boolean("Refuse HELO with the relay's own name", true)),
  rejectInvalidHelo: Optional(boolean("Refuse HELO that is neither a FQDN nor an address literal", false)),
  reverseDns: Optional(oneOf("Forward-confirmed reverse DNS required: disabled, tempfail or reject", ["disabled", "tempfail", "reject"], "disabled")),
});
