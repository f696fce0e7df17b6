// A paced SMTP client for the latency scenario: it offers messages at a fixed rate (message i is
// due at start + i/rate, sent by whichever session is free) and times each one from the end of
// DATA (the client writes the final ".") to the server's 250. smtp-source only reports totals.

import { SmtpDialogue } from "../test/harness/smtp-dialogue.ts";

export interface PacedLoadOptions {
  port: number;
  sessions: number;
  messages: number;
  /** Offered messages per second, over all sessions. */
  rate: number;
  /** Body size in bytes. */
  size: number;
  recipient: string;
}

export interface PacedLoadResult {
  /** End of DATA to 250, in ms, one per accepted message, sorted. */
  latenciesMs: number[];
  notAccepted: number;
  /** Messages sent more than 100 ms after they were due: the sessions could not keep up. */
  late: number;
}

export async function runPacedLoad(options: PacedLoadOptions): Promise<PacedLoadResult> {
  const latenciesMs: number[] = [];
  let notAccepted = 0;
  let late = 0;
  let next = 0;
  const line = `${"x".repeat(76)}\r\n`;
  const body = `From: load@load.test\r\nSubject: latency\r\n\r\n${line.repeat(Math.max(1, Math.round(options.size / line.length)))}`;
  const started = performance.now();
  const session = async (index: number): Promise<void> => {
    const { dialogue } = await SmtpDialogue.open(options.port);
    // The final "." is a short write after the body: with Nagle's algorithm it would wait for the
    // server's delayed ACK, and every server's figure would carry ~40 ms of TCP, not of its work.
    dialogue.noDelay();
    try {
      if ((await dialogue.command(`EHLO paced${index}.test`)).code !== 250) throw new Error(`EHLO refused by port ${options.port}`);
      for (let i = next++; i < options.messages; i = next++) {
        const due = started + (i * 1000) / options.rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        else if (wait < -100) late++;
        const mail = await dialogue.command("MAIL FROM:<load@load.test>");
        const rcpt = mail.code === 250 ? await dialogue.command(`RCPT TO:<${options.recipient}>`) : mail;
        const go = rcpt.code === 250 ? await dialogue.command("DATA") : rcpt;
        if (go.code !== 354) {
          notAccepted++;
          await dialogue.command("RSET");
          continue;
        }
        dialogue.write(body);
        const endOfData = performance.now();
        dialogue.write(".\r\n");
        const reply = await dialogue.read();
        if (reply.code === 250) latenciesMs.push(performance.now() - endOfData);
        else notAccepted++;
      }
      await dialogue.quit();
    } finally {
      dialogue.destroy();
    }
  };
  await Promise.all(Array.from({ length: options.sessions }, (_, i) => session(i)));
  return { latenciesMs: latenciesMs.sort((a, b) => a - b), notAccepted, late };
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}
