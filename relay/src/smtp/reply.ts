// SMTP replies (RFC 5321 §4.2) with their enhanced status codes (RFC 3463, carried as RFC 2034
// says: after the reply code, on every line). One type for the replies the relay sends and the ones
// it reads, and one reader for the servers it talks to (the next hop, the callout, the probe).

export interface SmtpReply {
  /** The three-digit reply code, e.g. 550. */
  code: number;
  /** The enhanced status code, e.g. "5.1.1"; absent when the server sent none. */
  enhanced?: string | undefined;
  /** The text after the codes; the lines of a multi-line reply joined by "\n". */
  text: string;
}

/** The reply as it was on the wire, lines joined by "\n" (e.g. "550 5.1.1 user unknown"). */
export function formatReply(reply: SmtpReply): string {
  const lines = reply.text.split("\n");
  return lines
    .map((line, index) => {
      const text = reply.enhanced ? (line ? `${reply.enhanced} ${line}` : reply.enhanced) : line;
      const separator = index === lines.length - 1 ? " " : "-";
      return text ? `${reply.code}${separator}${text}` : `${reply.code}${separator.trim()}`;
    })
    .join("\n");
}

export type SmtpReplyErrorKind = "malformed" | "too-long";

/** The server's answer cannot be read as an SMTP reply; the connection is no use any more. */
export class SmtpReplyError extends Error {
  readonly kind: SmtpReplyErrorKind;

  constructor(kind: SmtpReplyErrorKind, message: string) {
    super(message);
    this.name = "SmtpReplyError";
    this.kind = kind;
  }
}

/** A longer reply is refused: a server that sends endless text must not fill our memory. */
export const MAX_REPLY_LENGTH = 64 * 1024;

// Reply-code = %x32-35 %x30-35 %x30-39, then "-" on all lines but the last, or SP (or nothing) on the last.
const replyLine = /^([2-5][0-5][0-9])(?:([ -])(.*))?$/s;
const enhancedCode = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/;

/**
 * Reads replies from the text a server sends, however it is split into chunks. Lines end in
 * CRLF; a bare LF is accepted, as most clients do. A multi-line reply keeps one code on every
 * line (RFC 5321 §4.2.1); its enhanced code is the first line's, and is taken off the other lines
 * that repeat it.
 */
export class SmtpReplyReader {
  private buffered = "";
  private readonly maxLength: number;

  constructor(maxLength = MAX_REPLY_LENGTH) {
    this.maxLength = maxLength;
  }

  push(data: string): void {
    this.buffered += data;
  }

  /** True while text is waiting that does not yet make a complete reply. */
  get hasPartialReply(): boolean {
    return this.buffered.length > 0;
  }

  /**
   * The next complete reply, or undefined until more text arrives. Throws SmtpReplyError for a
   * line that is not part of a reply, or a reply longer than the limit (complete or not).
   */
  next(): SmtpReply | undefined {
    const lines: string[] = [];
    let code = "";
    let start = 0;
    for (;;) {
      const end = this.buffered.indexOf("\n", start);
      // The reply so far runs from the start of the buffer to the end of this line.
      if ((end === -1 ? this.buffered.length : end + 1) > this.maxLength) throw new SmtpReplyError("too-long", "reply too long");
      if (end === -1) return undefined;
      const line = this.buffered.slice(start, end).replace(/\r$/, "");
      start = end + 1;
      const match = replyLine.exec(line);
      if (!match?.[1]) throw new SmtpReplyError("malformed", `unreadable reply: ${line.slice(0, 200)}`);
      if (code && match[1] !== code) throw new SmtpReplyError("malformed", `reply code changed within a reply: ${line.slice(0, 200)}`);
      code = match[1];
      lines.push(match[3] ?? "");
      if (match[2] === "-") continue;
      this.buffered = this.buffered.slice(start);
      return replyOf(Number(code), lines);
    }
  }
}

function replyOf(code: number, lines: string[]): SmtpReply {
  const enhanced = enhancedCode.exec(lines[0] ?? "")?.[1];
  if (!enhanced) return { code, text: lines.join("\n") };
  const strip = (line: string): string => (enhancedCode.exec(line)?.[1] === enhanced ? line.slice(enhanced.length + 1) : line);
  return { code, enhanced, text: lines.map(strip).join("\n") };
}
