// The SMTP protocol pieces both sides of the relay share: receiving and delivering, filters and
// probes use them, and this folder uses none of theirs.

export type { SmtpReply, SmtpReplyErrorKind } from "./reply.ts";
export { formatReply, MAX_REPLY_LENGTH, SmtpReplyError, SmtpReplyReader } from "./reply.ts";
