// The test DNS server (dns-server.ts) as a process of its own, to run inside a network namespace:
// it serves the zones given as JSON and prints the port it listens on (127.0.0.1 of that namespace).
//
//   node test/harness/netns-dns.ts '{"example.test":{"mx":[...]}}'

import { startDnsServer, type Zones } from "./dns-server.ts";

if (import.meta.main) {
  const zones = JSON.parse(process.argv[2] ?? "{}") as Zones;
  const server = await startDnsServer(zones);
  process.stdout.write(`${JSON.stringify({ dnsPort: server.port })}\n`);
  process.once("SIGTERM", () => void server.close().then(() => process.exit(0)));
}
