// A delaying TCP forwarder: a stand-in for `tc qdisc ... netem delay`, which this suite's kernel
// (a Firecracker VM without modules) lacks ("Specified qdisc kind is unknown"); no other qdisc
// there can hold packets back. It listens on HOST:PORT and forwards every connection to
// TARGET_HOST:TARGET_PORT, passing each chunk on DELAY_MS after it arrived, in both directions
// and in order. Unlike netem it delays data, not packets: the TCP handshake and ACKs of each leg
// are not delayed, so it adds DELAY_MS per exchange (a round trip of an SMTP command and its
// reply costs 2 x DELAY_MS), which is what SMTP, a lock-step protocol, notices of latency.
//
//   node test/harness/delay-proxy.ts HOST PORT TARGET_HOST TARGET_PORT DELAY_MS

import { createServer, connect, type Socket } from "node:net";

function delayed(from: Socket, to: Socket, delayMs: number): void {
  from.on("data", (chunk: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  // The end, too, comes after the data it follows.
  from.on("end", () => setTimeout(() => to.end(), delayMs));
  from.on("error", () => setTimeout(() => to.destroy(), delayMs));
  from.on("close", () => setTimeout(() => to.destroy(), delayMs + 10));
}

function main(host: string, port: number, targetHost: string, targetPort: number, delayMs: number): void {
  const server = createServer((client) => {
    const upstream = connect({ host: targetHost, port: targetPort });
    delayed(client, upstream, delayMs);
    delayed(upstream, client, delayMs);
  });
  server.listen(port, host, () => process.stdout.write(`${JSON.stringify({ listening: `${host}:${port}`, delayMs })}\n`));
}

if (import.meta.main) {
  const [host, port, targetHost, targetPort, delayMs] = process.argv.slice(2);
  if (!host || !port || !targetHost || !targetPort || !delayMs) throw new Error("usage: delay-proxy.ts HOST PORT TARGET_HOST TARGET_PORT DELAY_MS");
  main(host, Number(port), targetHost, Number(targetPort), Number(delayMs));
}
