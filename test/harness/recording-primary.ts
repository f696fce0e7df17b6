// A primary MX as a process of its own, for the fault suite, where the primary lives in another
// network namespace than the test: it accepts every message on HOST:PORT and prints one JSON line
// per message to stdout (envelope and every Message-ID header in it, so that a DSN names the
// message it is about). The test counts deliveries and duplicates from those lines.
//
//   node test/harness/recording-primary.ts HOST PORT

import { SMTPServer } from "smtp-server";

/** One line of this process's output per accepted message. */
export interface PrimaryRecord {
  from: string;
  to: string[];
  /** Every Message-ID header in the message: its own first; a DSN also carries the original's. */
  messageIds: string[];
  /** The client's EHLO name: which relay (its --hostname) or which Postfix delivered it. */
  helo: string;
  at: number;
}

export function messageIdsIn(text: string): string[] {
  return [...text.matchAll(/^Message-ID:[ \t]*(<[^>\r\n]*>)/gim)].map((match) => match[1] ?? "");
}

function main(host: string, port: number): void {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    logger: false,
    size: 50 * 1024 * 1024,
    onData: (stream, session, callback) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const record: PrimaryRecord = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          messageIds: messageIdsIn(Buffer.concat(chunks).toString("latin1")),
          helo: session.hostNameAppearsAs,
          at: Date.now(),
        };
        // Printed before the 250: a message the sender saw accepted is always in the output.
        process.stdout.write(`${JSON.stringify(record)}\n`, () => callback());
      });
    },
  });
  server.on("error", (err) => process.stderr.write(`primary: ${err.message}\n`));
  server.listen(port, host, () => process.stdout.write(`${JSON.stringify({ listening: `${host}:${port}` })}\n`));
  process.once("SIGTERM", () => {
    (server.options as { closeTimeout?: number }).closeTimeout = 0;
    server.close(() => process.exit(0));
  });
}

if (import.meta.main) {
  const [host, port] = process.argv.slice(2);
  if (!host || !port) throw new Error("usage: recording-primary.ts HOST PORT");
  main(host, Number(port));
}
