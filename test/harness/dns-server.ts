// A small authoritative DNS server (dns2) for tests, on 127.0.0.1 over UDP and TCP on one port.
// Zones are a table of names: a name absent from the table is NXDOMAIN; a name present but
// without records of the asked type answers NOERROR with no answers (NODATA) and an SOA in the
// authority section, as a real authoritative server does (RFC 2308).

import type { AddressInfo, Socket } from "node:net";
import { Packet, createTCPServer, createUDPServer } from "dns2";
import type { DnsHandler, Resource, TCPServer, UDPServer } from "dns2";

export interface MxRecord {
  preference: number;
  exchange: string;
}

export interface NameRecords {
  mx?: MxRecord[];
  a?: string[];
  aaaa?: string[];
  /** PTR records (reverse DNS), for names under in-addr.arpa / ip6.arpa. */
  ptr?: string[];
  /** TXT records (SPF, DKIM keys, DMARC); each is split into 255-octet character-strings. */
  txt?: string[];
  /** Answer every query for this name with SERVFAIL (a broken or unreachable zone). */
  servfail?: boolean;
}

/** Owner name (case-insensitive, no trailing dot) to its records; names not listed do not exist. */
export type Zones = Record<string, NameRecords>;

/** RFC 7505 null MX: "this domain accepts no mail". */
export const NULL_MX: MxRecord[] = [{ preference: 0, exchange: "." }];

export interface TestDnsServer {
  port: number;
  /** Every question asked, as "TYPE name" (for example "MX example.test"), in arrival order. */
  queries: string[];
  close(): Promise<void>;
}

// Packet.RCODE exists at runtime but not in dns2's type declarations.
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
const TTL = 1;

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function typeName(type: number): string {
  const entry = Object.entries(Packet.TYPE).find(([, value]) => value === type);
  return entry ? entry[0] : String(type);
}

function soaFor(name: string): Resource {
  return new Packet.Resource({
    name,
    type: Packet.TYPE.SOA,
    class: Packet.CLASS.IN,
    ttl: TTL,
    primary: "ns.test",
    admin: "hostmaster.test",
    serial: 1,
    refresh: 3600,
    retry: 600,
    expiration: 86_400,
    minimum: TTL,
  });
}

function answersFor(name: string, type: number, records: NameRecords): Resource[] {
  const base = { name, class: Packet.CLASS.IN, ttl: TTL };
  switch (type) {
    case Packet.TYPE.MX:
      return (records.mx ?? []).map(({ preference, exchange }) => new Packet.Resource({ ...base, type: Packet.TYPE.MX, priority: preference, exchange }));
    case Packet.TYPE.A:
      return (records.a ?? []).map((address) => new Packet.Resource({ ...base, type: Packet.TYPE.A, address }));
    case Packet.TYPE.AAAA:
      return (records.aaaa ?? []).map((address) => new Packet.Resource({ ...base, type: Packet.TYPE.AAAA, address }));
    case Packet.TYPE.PTR:
      return (records.ptr ?? []).map((domain) => new Packet.Resource({ ...base, type: Packet.TYPE.PTR, domain }));
    case Packet.TYPE.TXT:
      return (records.txt ?? []).map((text) => new Packet.Resource({ ...base, type: Packet.TYPE.TXT, data: text.match(/[\s\S]{1,255}/g) ?? [""] }));
    default:
      return [];
  }
}

function handlerFor(zones: Zones, queries: string[]): DnsHandler {
  const table = new Map(Object.entries(zones).map(([name, records]) => [normalise(name), records]));
  return (request, send) => {
    const response = Packet.createResponseFromRequest(request);
    response.header.aa = 1;
    const question = request.questions[0];
    if (!question || request.questions.length !== 1) {
      response.header.rcode = RCODE.NOTIMP;
      void send(response);
      return;
    }
    queries.push(`${typeName(question.type)} ${normalise(question.name)}`);
    const records = table.get(normalise(question.name));
    if (records === undefined) {
      response.header.rcode = RCODE.NXDOMAIN;
      response.authorities.push(soaFor(question.name));
    } else if (records.servfail) {
      response.header.aa = 0;
      response.header.rcode = RCODE.SERVFAIL;
    } else {
      response.answers.push(...answersFor(question.name, question.type, records));
      if (response.answers.length === 0) response.authorities.push(soaFor(question.name));
    }
    void send(response);
  };
}

function listenTcp(server: TCPServer, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once("error", onError);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/** Start a server for `zones`: UDP on a free port, TCP on the same port. */
export async function startDnsServer(zones: Zones): Promise<TestDnsServer> {
  const queries: string[] = [];
  const handler = handlerFor(zones, queries);
  for (let attempt = 0; ; attempt++) {
    const udp: UDPServer = createUDPServer(handler);
    await udp.listen(0, "127.0.0.1");
    const port = (udp.address() as AddressInfo).port;
    const tcp: TCPServer = createTCPServer(handler);
    const connections = new Set<Socket>();
    tcp.on("connection", (socket: Socket) => {
      connections.add(socket);
      socket.once("close", () => connections.delete(socket));
    });
    try {
      await listenTcp(tcp, port);
    } catch (err) {
      // The TCP side of this port is taken by something else: try another port.
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if (attempt >= 10) throw err;
      continue;
    }
    return {
      port,
      queries,
      close: async () => {
        // dns2 keeps idle TCP connections open for 10 s (RFC 7766): do not wait for them.
        for (const socket of connections) socket.destroy();
        await Promise.all([
          new Promise<void>((resolve) => udp.close(() => resolve())),
          new Promise<void>((resolve, reject) => tcp.close((err) => (err ? reject(err) : resolve()))),
        ]);
      },
    };
  }
}
