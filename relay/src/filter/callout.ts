// A recipient callout: ask the primary whether it would take mail for an address (EHLO, MAIL FROM:<>,
// RCPT TO, QUIT) without sending any. Only the RCPT reply matters; nothing is delivered.

import { connect } from "node:net";
import type { NextHop } from "../deliver/next-hop.ts";
import { formatReply, SmtpReplyError, SmtpReplyReader, type SmtpReply } from "../smtp/index.ts";

export type CalloutAnswer = "exists" | "unknown" | "unavailable";

export interface CalloutResult {
  answer: CalloutAnswer;
  /** The primary's reply to RCPT, or what went wrong. */
  detail: string;
}

export function rcptCallout(hop: NextHop, heloName: string, recipient: string, timeoutMs: number): Promise<CalloutResult> {
  return new Promise((resolve) => {
    const socket = connect({ host: hop.address, port: hop.port });
    const script = [`EHLO ${heloName}`, "MAIL FROM:<>", `RCPT TO:<${recipient}>`];
    const reader = new SmtpReplyReader();
    let step = -1; // -1: waiting for the greeting
    let done = false;
    const finish = (result: CalloutResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (socket.writable) socket.end("QUIT\r\n");
      else socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      finish({ answer: "unavailable", detail: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    socket.setEncoding("latin1");
    socket.on("data", (data: string) => {
      reader.push(data);
      for (;;) {
        let parsed: SmtpReply | undefined;
        try {
          parsed = reader.next();
        } catch (err) {
          if (!(err instanceof SmtpReplyError)) throw err;
          return finish({ answer: "unavailable", detail: err.message });
        }
        if (!parsed) return;
        const { code } = parsed;
        const reply = formatReply(parsed);
        if (step === script.length - 1) {
          // The answer to RCPT TO.
          if (code >= 200 && code < 300) return finish({ answer: "exists", detail: reply });
          if (code >= 500 && code !== 503) return finish({ answer: "unknown", detail: reply });
          return finish({ answer: "unavailable", detail: reply });
        }
        const expected = step === -1 ? 220 : 250;
        if (code !== expected) return finish({ answer: "unavailable", detail: reply });
        step++;
        socket.write(`${script[step]}\r\n`);
      }
    });
    socket.on("error", (err) => finish({ answer: "unavailable", detail: err.message }));
    socket.on("close", () => finish({ answer: "unavailable", detail: "connection closed" }));
  });
}
