// A recipient callout: ask the primary whether it would take mail for an address (EHLO, MAIL FROM:<>,
// RCPT TO, QUIT) without sending any. Only the RCPT reply matters; nothing is delivered.

import { connect } from "node:net";
import type { NextHop } from "../deliver/next-hop.ts";

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
    let buffered = "";
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
      buffered += data;
      if (buffered.length > 64 * 1024) return finish({ answer: "unavailable", detail: "reply too long" });
      for (;;) {
        const match = /^((?:\d{3}-[^\n]*\n)*)(\d{3})(?: [^\n]*)?\n/.exec(buffered);
        if (!match) return;
        buffered = buffered.slice(match[0].length);
        const code = Number(match[2]);
        const reply = match[0].trim().split(/\r?\n/).pop() ?? "";
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
