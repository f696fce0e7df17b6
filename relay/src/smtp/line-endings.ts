// SMTP smuggling defence (CVE-2023-51764/5/6). smtp-server passes bare LF and bare CR inside DATA
// through unchanged; a primary that treats "<LF>.<LF>" as the end of data could then see a second,
// smuggled message. Like Postfix's smtpd_forbid_bare_newline we either rewrite every bare CR or LF
// to CRLF ("normalize", Postfix's default) or refuse the message ("reject").

/** --bare-newline: what the receiver does with a message that holds a bare CR or LF. */
export type BareNewlinePolicy = "normalize" | "reject";

const CR = 0x0d;
const LF = 0x0a;

export class LineEndingNormaliser {
  /** The previous chunk ended in CR, so a leading LF completes a CRLF. */
  private pendingCR = false;
  /** How many bare CR or LF were seen. */
  bareCount = 0;

  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    if (!this.needsRewrite(chunk)) {
      this.pendingCR = chunk[chunk.length - 1] === CR;
      return chunk;
    }
    const out = Buffer.allocUnsafe(chunk.length * 2 + 1);
    let o = 0;
    let i = 0;
    if (this.pendingCR) {
      if (chunk[0] === LF) {
        out[o++] = LF;
        i = 1;
      } else {
        // The CR at the end of the previous chunk was bare: finish it as CRLF here.
        this.bareCount++;
        out[o++] = LF;
      }
      this.pendingCR = false;
    }
    for (; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (byte === CR) {
        if (i + 1 === chunk.length) {
          out[o++] = CR;
          this.pendingCR = true;
        } else if (chunk[i + 1] === LF) {
          out[o++] = CR;
          out[o++] = LF;
          i++;
        } else {
          this.bareCount++;
          out[o++] = CR;
          out[o++] = LF;
        }
      } else if (byte === LF) {
        this.bareCount++;
        out[o++] = CR;
        out[o++] = LF;
      } else {
        out[o++] = byte;
      }
    }
    return out.subarray(0, o);
  }

  /** End of data: a CR left pending is bare. Returns the bytes that complete it. */
  end(): Buffer {
    if (!this.pendingCR) return Buffer.alloc(0);
    this.pendingCR = false;
    this.bareCount++;
    return Buffer.from([LF]);
  }

  private needsRewrite(chunk: Buffer): boolean {
    if (this.pendingCR && chunk[0] !== LF) return true;
    let at = chunk.indexOf(LF, this.pendingCR ? 1 : 0);
    while (at !== -1) {
      if (chunk[at - 1] !== CR) return true;
      at = chunk.indexOf(LF, at + 1);
    }
    at = chunk.indexOf(CR);
    while (at !== -1 && at < chunk.length - 1) {
      if (chunk[at + 1] !== LF) return true;
      at = chunk.indexOf(CR, at + 1);
    }
    return false;
  }
}
