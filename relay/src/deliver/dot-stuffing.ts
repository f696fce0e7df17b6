// The DATA encoding of a message body (RFC 5321 §4.5.2): every line that starts with "." gets a
// second one, and the body ends with CRLF "." CRLF. Line endings are normalised to CRLF on the way
// out too, whatever the stored body holds, so that no next hop can be handed a bare LF "." LF
// (SMTP smuggling). The searches are Buffer.indexOf, native code: a byte-by-byte JavaScript loop
// was a large share of the relay's CPU with large messages (docs/benchmarks.md, round 4).

import { LineEndingNormaliser } from "../smtp/index.ts";

const DOT = 0x2e;
const LF = 0x0a;
const EXTRA_DOT = Buffer.from(".");
const LINE_DOT = "\n.";

export class DotStuffer {
  private readonly lineEndings = new LineEndingNormaliser();
  /** The next byte starts a line (true before the first byte). */
  private atLineStart = true;

  /** The DATA bytes for the next piece of the body. */
  push(chunk: Buffer): Buffer {
    const text = this.lineEndings.push(chunk);
    if (text.length === 0) return text;
    const pieces: Buffer[] = [];
    let from = 0;
    if (this.atLineStart && text[0] === DOT) pieces.push(EXTRA_DOT);
    for (let at = text.indexOf(LINE_DOT); at !== -1; at = text.indexOf(LINE_DOT, at + 2)) {
      pieces.push(text.subarray(from, at + 1), EXTRA_DOT);
      from = at + 1;
    }
    this.atLineStart = text[text.length - 1] === LF;
    if (pieces.length === 0) return text;
    pieces.push(text.subarray(from));
    return Buffer.concat(pieces);
  }

  /** The bytes that end the DATA: whatever completes the last line, then "." CRLF. */
  end(): Buffer {
    const rest = this.lineEndings.end();
    if (rest.length > 0) this.atLineStart = true;
    const ending = this.atLineStart ? ".\r\n" : "\r\n.\r\n";
    return rest.length > 0 ? Buffer.concat([rest, Buffer.from(ending)]) : Buffer.from(ending);
  }
}
