// The part of clamdjs (no bundled types) that the antivirus filter uses.
declare module "clamdjs" {
  import type { Readable } from "node:stream";
  export interface ClamdScanner {
    /** INSTREAM scan; resolves with clamd's reply such as "stream: OK" or "stream: Eicar-Signature FOUND". */
    scanStream(stream: Readable, timeoutMs?: number): Promise<string>;
  }
  export function createScanner(host: string, port: number): ClamdScanner;
  export function isCleanReply(reply: string): boolean;
  const clamd: { createScanner: typeof createScanner; isCleanReply: typeof isCleanReply };
  export default clamd;
}
