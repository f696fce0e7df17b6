// A load generator that remembers which messages got a 250: what the "every accepted message is
// delivered" tests need and smtp-source cannot tell. Each message carries a unique Message-ID.

import { SmtpDialogue } from "./smtp-dialogue.ts";

export interface LoadOptions {
  port: number;
  sessions: number;
  /** Body size in bytes. */
  size: number;
  recipient: string;
  /** Stop sending new messages once this returns true. */
  stop: () => boolean;
  /** Prefix of the Message-IDs, to tell runs apart. */
  tag: string;
}

export interface LoadResult {
  /** Message-IDs (with angle brackets) that the relay answered 250 to. */
  accepted: Set<string>;
  /** Messages that got any other answer or no answer at all. */
  notAccepted: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const accepted = new Set<string>();
  let notAccepted = 0;
  let sequence = 0;
  const line = `${"x".repeat(76)}\r\n`;
  const filler = line.repeat(Math.max(1, Math.floor(options.size / line.length)));
  const session = async (index: number): Promise<void> => {
    let opened;
    try {
      opened = await SmtpDialogue.open(options.port);
    } catch {
      return;
    }
    const { dialogue } = opened;
    try {
      if ((await dialogue.command(`EHLO load${index}.test`)).code !== 250) return;
      while (!options.stop()) {
        const id = `<${options.tag}.${index}.${sequence++}@load.test>`;
        const mail = await dialogue.command("MAIL FROM:<load@load.test>");
        const rcpt = mail.code === 250 ? await dialogue.command(`RCPT TO:<${options.recipient}>`) : mail;
        if (rcpt.code !== 250) {
          notAccepted++;
          if (rcpt.code === 0) return;
          // Like a sending MTA after a 4xx: give the server a moment before the next attempt.
          await dialogue.command("RSET");
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
        const reply = await dialogue.data(`Message-ID: ${id}\r\nFrom: load@load.test\r\nSubject: load\r\n\r\n${filler}`);
        if (reply.code === 250) accepted.add(id);
        else notAccepted++;
        if (reply.code === 0) return;
      }
      await dialogue.quit();
    } finally {
      dialogue.destroy();
    }
  };
  await Promise.all(Array.from({ length: options.sessions }, (_, i) => session(i)));
  return { accepted, notAccepted };
}
