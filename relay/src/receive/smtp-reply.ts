// The receiver's SMTP replies as values: policy code returns one of these, and the receiver turns
// it into the error object smtp-server expects. Keeps codes and enhanced status codes together in one place.

import type { SmtpReply } from "../smtp/index.ts";

export const replies = {
  relayDenied: { code: 550, enhanced: "5.7.1", text: "Relay access denied" },
  // Temporary, so senders keep the message and hand it to the primary rather than bouncing it.
  domainRetiring: { code: 450, enhanced: "4.7.1", text: "This backup MX no longer accepts mail for the domain; deliver to its primary" },
  routingDenied: { code: 550, enhanced: "5.7.1", text: "Sender-specified routing is not allowed" },
  badAddress: { code: 501, enhanced: "5.1.3", text: "Bad recipient address syntax" },
  // Postmaster must be accepted (RFC 5321 §4.5.1): only a relay with no domain to send it to yet says no, and only for now.
  postmasterUnavailable: { code: 451, enhanced: "4.3.0", text: "No postmaster domain is served here yet, try again later" },
  unknownUser: { code: 550, enhanced: "5.1.1", text: "Recipient address rejected: user unknown" },
  tooBigDeclared: { code: 552, enhanced: "5.3.4", text: "Message size exceeds the limit for this domain" },
  tooBig: { code: 552, enhanced: "5.3.4", text: "Message exceeds the maximum size" },
  headerTooBig: { code: 552, enhanced: "5.3.4", text: "Message header section too large" },
  loop: { code: 554, enhanced: "5.4.6", text: "Too many hops: mail loop detected" },
  queueUnavailable: { code: 451, enhanced: "4.3.0", text: "Queue temporarily unavailable, try again later" },
  // A filter broke (a bug, not a verdict): RFC 5321's "local error in processing".
  filterFailed: { code: 451, enhanced: "4.3.0", text: "Temporary filtering failure, try again later" },
  shuttingDown: { code: 421, enhanced: "4.3.2", text: "Service shutting down, try again later" },
  tooManyFromHost: { code: 421, enhanced: "4.7.0", text: "Too many connections from your host, try again later" },
  bareNewline: { code: 550, enhanced: "5.5.2", text: "Message contains bare CR or LF; use CRLF line endings" },
  noRecipients: { code: 554, enhanced: "5.5.1", text: "No valid recipients" },
} as const satisfies Record<string, SmtpReply>;

/**
 * An Error that smtp-server sends as the reply "code enhanced text"; without an enhanced code,
 * smtp-server picks one from the reply code (enhanced-replies.ts).
 */
export function replyError(reply: SmtpReply, detail?: string): Error & { responseCode: number } {
  const text = detail ? `${reply.text}: ${detail}` : reply.text;
  const err = new Error(reply.enhanced ? `${reply.enhanced} ${text}` : text) as Error & { responseCode: number };
  err.responseCode = reply.code;
  return err;
}
