// What the benchmark needs from each server under test: a backup MX for one domain that relays to
// one primary, an SMTP port to load, a way to retry its deferred mail at once, and its processes.

export interface BackupMxOptions {
  /** Scratch directory of this server (its configuration, queue and logs). */
  dir: string;
  /** The one domain it is backup MX for. */
  domain: string;
  /** Port of the primary on 127.0.0.1. */
  primaryPort: number;
}

export interface BackupMx {
  readonly name: string;
  readonly port: number;
  /** Tell the server the primary is back, the way its administrator would (a no-op if it notices itself). */
  flush(): Promise<void>;
  /** Peak resident memory so far of the process that receives and queues mail, in bytes. */
  peakRss(): number;
  /**
   * Resolves once the work the server still does for `messages` delivered ones is done, and throws
   * if it cannot be (mxwarden at two sites: every shadow copy at the peer site). Absent: nothing.
   */
  settled?(messages: number, timeoutMs: number): Promise<void>;
  /** The processes that are this server: their CPU time and their descendants' is the server's (cpu.ts). */
  processes(): number[];
  stop(): Promise<void>;
}
