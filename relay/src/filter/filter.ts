// The one interface every filter implements (Haraka's plugin idea): a filter is attached to a
// stage of the SMTP transaction and returns a verdict. The receiver runs the filters of a stage in
// their declared order and stops at the first verdict that refuses the message.

import type { Resolver } from "node:dns/promises";
import type { Readable } from "node:stream";
import type { TSchema } from "@sinclair/typebox";
import type { RelayConfig } from "../cli.ts";
import type { DomainPolicy } from "../config/relay-domain.ts";
import type { NextHopResolver } from "../deliver/next-hop.ts";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "../queue/index.ts";
import type { SmtpReply } from "../smtp/index.ts";
import type { PrimaryReachability } from "../status/primary-reachability.ts";

export type FilterStage = "rcpt" | "data";

/** What a filter may say about a message. */
export type Verdict =
  | { action: "continue"; headers?: ReadonlyArray<readonly [string, string]> }
  // `unavailable`: the filter's engine could not answer, so the 4xx is the relay's failure rather
  // than a judgement of the message; it counts against the acceptance SLO.
  | { action: "tempfail"; reply: SmtpReply; reason: string; unavailable?: boolean }
  | { action: "reject"; reply: SmtpReply; reason: string };

/**
 * What a RCPT-stage filter may say: a Verdict, or `allow`: the domain's allow list (spec.access,
 * access.ts) trusts the client or sender. The pipeline then skips every later filter that declares
 * `bypassedByAllowList`, at RCPT and, when every recipient was allowed, at DATA.
 */
export type RecipientVerdict = Verdict | { action: "allow"; reason: string };

/** The message as a DATA-stage filter sees it: already stored, readable as often as needed. */
export interface MessageUnderScan {
  queueId: string;
  /** Every recipient was accepted on its domain's allow list: filters that declare `bypassedByAllowList` are skipped. */
  allowed: boolean;
  /** Plain client address: an IPv4-mapped IPv6 address is given as IPv4. */
  clientAddress: string;
  heloName: string;
  sender: string;
  recipients: readonly string[];
  /** Domains the recipients belong to (one policy each). */
  domains: readonly string[];
  size: number;
  /** A fresh stream of the message as stored (trace header included). */
  open(): Readable;
}

export interface MessageFilter {
  /** Short name used in metrics labels, logs and the RelayDomain spec. */
  readonly name: string;
  readonly stage: "data";
  /** The allow list (spec.access.allow) lets mail past this filter unjudged. */
  readonly bypassedByAllowList?: boolean;
  check(message: MessageUnderScan): Promise<Verdict>;
}

/** One accepted-so-far recipient, as a RCPT-stage filter sees it. */
export interface RecipientUnderCheck {
  /** Plain client address: an IPv4-mapped IPv6 address is given as IPv4. */
  clientAddress: string;
  heloName: string;
  sender: string;
  /** Normalised address (A-label domain). */
  recipient: string;
  domain: string;
}

export interface RecipientFilter {
  readonly name: string;
  readonly stage: "rcpt";
  /** The allow list (spec.access.allow) lets recipients past this filter unjudged. */
  readonly bypassedByAllowList?: boolean;
  check(recipient: RecipientUnderCheck): Promise<RecipientVerdict>;
}

export type AnyFilter = MessageFilter | RecipientFilter;

/** What a filter may use to build itself: the relay's settings and shared services. */
export interface FilterContext {
  config: RelayConfig;
  resolver: Resolver;
  queue: QueueConnection;
  nextHops: NextHopResolver;
  /** The loaded policy of a domain (A-label), or undefined when the domain is not served. */
  policyFor(domain: string): DomainPolicy | undefined;
  /** Every loaded domain policy, as of now (for filters that watch domains on their own schedule). */
  policies(): Iterable<DomainPolicy>;
  /** What the relay learns of each domain's primary, for the queue report. */
  primaries: PrimaryReachability;
  log: Logger;
}

/**
 * A filter as one module (Haraka's plugin): its name, its stage, the RelayDomain spec section it
 * reads (defined in #api with its defaults), and its factory. filters.ts lists them in order.
 */
export interface FilterModule {
  /** Metrics label and log name; the same as the filter's own `name`. */
  readonly name: string;
  readonly stage: FilterStage;
  /** The field of RelayDomain.spec this filter's policy comes from, and its schema. */
  readonly spec: { field: string; schema: TSchema };
  /** The filter, or undefined when the relay was started without what it needs (such as --clamd). */
  create(context: FilterContext): AnyFilter | undefined | Promise<AnyFilter | undefined>;
}
