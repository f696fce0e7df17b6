// The destination probe (deliver/destination-health.ts probeGreeting) against a loopback server
// that greets as told: the probe decides on the whole greeting, read as an SMTP reply.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { probeGreeting } from "../../relay/src/deliver/destination-health.ts";

/** A server that writes `greeting` to every connection (in the given chunks) and keeps it open. */
async function greeter(chunks: string[]): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    for (const chunk of chunks) socket.write(chunk);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("not listening");
  const close = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  return { port: address.port, close };
}

const cases: Array<{ name: string; chunks: string[]; up: boolean }> = [
  { name: "a one-line 220", chunks: ["220 mx.example ESMTP\r\n"], up: true },
  { name: "a multi-line 220, split across writes", chunks: ["220-mx.example ESMTP\r\n220-", "welcome\r\n", "220 ready\r\n"], up: true },
  { name: "a 554 refusal", chunks: ["554 5.3.2 no service here\r\n"], up: false },
  { name: "a 421 in several lines", chunks: ["421-4.3.2 busy\r\n421 4.3.2 try later\r\n"], up: false },
  { name: "something that is not SMTP", chunks: ["+OK POP3 ready\r\n"], up: false },
  { name: "an endless greeting", chunks: [`220-${"x".repeat(5000)}`], up: false },
];

describe("destination probe", () => {
  for (const c of cases) {
    it(`${c.up ? "up" : "down"} for ${c.name}`, async () => {
      const { port, close } = await greeter(c.chunks);
      try {
        // The timeout is far beyond any loopback answer: a result by timeout would be a false "down".
        const started = performance.now();
        assert.equal(await probeGreeting({ host: "mx.example", address: "127.0.0.1", port }, 10_000), c.up);
        assert.ok(performance.now() - started < 5000, "decided by the greeting, not by the timeout");
      } finally {
        await close();
      }
    });
  }
});
