// The mail protocol pieces both sides of the relay share: replies and their reader, the CRLF
// line form of DATA, the date of mail headers. Receiving, filtering and delivering use them; this
// folder imports from none of theirs, which keeps the folders free of cycles
// (test/unit/import-cycles.test.ts).

export type { SmtpReply, SmtpReplyErrorKind } from "./reply.ts";
export { rfc5322Date } from "./date.ts";
export type { BareNewlinePolicy } from "./line-endings.ts";
export { LineEndingNormaliser } from "./line-endings.ts";
export { formatReply, MAX_REPLY_LENGTH, SmtpReplyError, SmtpReplyReader } from "./reply.ts";
