// The one interface every filter implements (Haraka's plugin idea): a filter is attached to a
// stage of the SMTP transaction and returns a verdict. The receiver runs the filters of a stage in
// their declared order and stops at the first verdict that refuses the message.

import type { Readable } from "node:stream";
import type { SmtpReply } from "../receive/smtp-reply.ts";

export type FilterStage = "rcpt" | "data";

/** What a filter may say about a message. */
export type Verdict =
  | { action: "continue"; headers?: ReadonlyArray<readonly [string, string]> }
  // `unavailable`: the filter's engine could not answer, so the 4xx is the relay's failure rather
  // than a judgement of the message; it counts against the acceptance SLO.
  | { action: "tempfail"; reply: SmtpReply; reason: string; unavailable?: boolean }
  | { action: "reject"; reply: SmtpReply; reason: string };

/** The message as a DATA-stage filter sees it: already stored, readable as often as needed. */
export interface MessageUnderScan {
  queueId: string;
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
  check(recipient: RecipientUnderCheck): Promise<Verdict>;
}

export type AnyFilter = MessageFilter | RecipientFilter;
