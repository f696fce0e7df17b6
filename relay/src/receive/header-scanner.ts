// Watches the start of a message body for the end of its header section, counts Received
// headers (mail loop detection, RFC 5321 §6.3) and keeps the header section for later use.

const MAX_HEADER_BYTES = 256 * 1024;

export class HeaderScanner {
  private readonly parts: Buffer[] = [];
  private bytes = 0;
  /** No more input is looked at: the header section ended, or it is too long to keep. */
  done = false;
  /** Header section (CRLF line endings), complete once `complete` is true. */
  header = Buffer.alloc(0);
  complete = false;

  /** Feed normalised (CRLF) body bytes; cheap once the header section is over. */
  push(chunk: Buffer): void {
    if (this.done) return;
    this.parts.push(chunk);
    this.bytes += chunk.length;
    const joined = Buffer.concat(this.parts);
    this.parts.length = 0;
    this.parts.push(joined);
    const blank = joined.subarray(0, 2).equals(Buffer.from("\r\n")) ? 0 : joined.indexOf("\r\n\r\n");
    if (blank !== -1) {
      this.header = joined.subarray(0, blank === 0 ? 0 : blank + 2);
      this.complete = true;
      this.done = true;
      this.parts.length = 0;
    } else if (this.bytes > MAX_HEADER_BYTES) {
      // An endless header section: judge what we have and stop buffering.
      this.header = joined.subarray(0, MAX_HEADER_BYTES);
      this.done = true;
      this.parts.length = 0;
    }
  }

  finish(): void {
    if (this.done) return;
    this.header = Buffer.concat(this.parts);
    this.done = true;
    this.parts.length = 0;
  }

  receivedCount(): number {
    return (this.header.toString("latin1").match(/^received:/gim) ?? []).length;
  }
}
