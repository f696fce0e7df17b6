// Monitoring mode (spec.acceptWhen: primaryDown) with two real relays of one site and a real
// primary: RCPT gets 450 4.7.1 while the primary answers probes, mail is accepted once it stops,
// and refused again when it is back (the mail taken meanwhile is delivered). The relays share the
// probe results through NATS, so a primary is probed about once per interval, not once per relay,
// and what the probe finds feeds the primary fields of the queue report.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { rcptReply, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { TestPrimary, headerValue } from "../harness/test-primary.ts";
import { eventually, tempDir } from "../harness/workspace.ts";
import { Resolver } from "node:dns/promises";
import { DomainStore } from "../../relay/src/config/domain-store.ts";
import { FileDomainSource } from "../../relay/src/config/domain-sources.ts";
import { NextHopResolver } from "../../relay/src/deliver/next-hop.ts";
import { PrimaryWatch } from "../../relay/src/filter/monitoring-mode.ts";
import { createLogger } from "../../relay/src/log.ts";
import { QueueConnection } from "../../relay/src/queue/index.ts";
import { PrimaryReachability } from "../../relay/src/status/primary-reachability.ts";

const PROBE_INTERVAL_S = 1;

/** A primary that only greets, and counts the connections (the relays' probes). */
async function countingGreeter(): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.on("error", () => undefined);
    socket.write("220 counted.test ESMTP\r\n");
    socket.on("data", () => socket.end("221 2.0.0 Bye\r\n"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return { server, port: typeof address === "object" && address ? address.port : 0, connections: () => connections };
}

describe("monitoring mode (spec.acceptWhen: primaryDown)", () => {
  const dir = tempDir("monitoring");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let greeter: Awaited<ReturnType<typeof countingGreeter>>;
  const relays: RelayProcess[] = [];

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    primary = await TestPrimary.start();
    greeter = await countingGreeter();
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "watched.example", acceptWhen: "primaryDown", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } },
      { domain: "counted.example", acceptWhen: "primaryDown", primary: { hosts: [{ host: "127.0.0.1", port: greeter.port }] } },
      { domain: "always.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } },
    ]);
    for (const name of ["relay-a", "relay-b"]) {
      mkdirSync(join(dir.path, name));
      relays.push(
        await RelayProcess.start({
          dir: join(dir.path, name),
          hostname: `${name}.backup-mx.test`,
          domainsPath: join(dir.path, "domains.yaml"),
          nats: nats.url,
          args: ["--probe-interval", `${PROBE_INTERVAL_S}s`],
        }),
      );
    }
    await Promise.all(relays.map((relay) => relay.ready()));
  });

  after(async () => {
    for (const relay of relays) await relay.stop();
    await primary?.close();
    await new Promise((resolve) => greeter?.server.close(resolve));
    await nats?.stop();
  });

  const rcptCode = async (relay: RelayProcess, to: string): Promise<number> => (await rcptReply(relay.smtpPort, { from: "s@client.test", to })).code;

  it("answers 450 4.7.1 at RCPT while the primary answers, at every relay; other domains accept", async () => {
    for (const relay of relays) {
      await eventually("monitoring mode refuses", async () => (await rcptCode(relay, "a@watched.example")) === 450 || undefined, 30_000, 200);
      const reply = await rcptReply(relay.smtpPort, { from: "s@client.test", to: "a@watched.example" });
      assert.equal(reply.status, "4.7.1");
      assert.match(reply.text, /primary/);
      assert.equal(await rcptCode(relay, "a@always.example"), 250);
    }
    assert.ok((await (relays[0] as RelayProcess).metric("mxwarden_filter_verdicts_total", 'filter="monitoring_mode",verdict="tempfail"')) >= 2);
  });

  it("accepts once the primary stops answering, refuses again when it is back, and delivers what it took", async () => {
    await primary.close();
    for (const relay of relays)
      await eventually("monitoring mode accepts", async () => (await rcptCode(relay, "a@watched.example")) === 250 || undefined, 30_000, 200);
    const result = await sendMail((relays[1] as RelayProcess).smtpPort, {
      from: "s@client.test",
      to: ["a@watched.example"],
      body: simpleMessage("while-down", "while-down"),
    });
    assert.equal(result.data?.code, 250, result.data?.text);
    await primary.listen();
    for (const relay of relays)
      await eventually("monitoring mode refuses again", async () => (await rcptCode(relay, "a@watched.example")) === 450 || undefined, 30_000, 200);
    const [message] = await primary.waitForMessages(1, 60_000);
    assert.equal(headerValue(message?.body ?? "", "Subject"), "while-down");
  });

  it("feeds the queue report's primary fields: unreachable with the probe's error, reachable (probed, or shared by the site's relays)", async () => {
    const log = createLogger({}, "error");
    const queue = new QueueConnection(
      { servers: [nats.url], name: "report-watch", publishTimeoutMs: 5000, replicas: 1, maxAckPending: 100, ackWaitMs: 60_000 },
      log,
    );
    queue.start();
    const domainsPath = join(dir.path, "watch-domains.yaml");
    // down.example only this watch probes (nothing listens on port 1); watched.example the relays probe too.
    writeDomains(domainsPath, [
      { domain: "down.example", acceptWhen: "primaryDown", primary: { hosts: [{ host: "127.0.0.1", port: 1 }] } },
      { domain: "watched.example", acceptWhen: "primaryDown", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] } },
    ]);
    const store = new DomainStore(new FileDomainSource(domainsPath, 60_000), log);
    await store.start();
    try {
      await queue.whenReady();
      const primaries = new PrimaryReachability();
      const watch = new PrimaryWatch(
        { hostname: "report-watch.backup-mx.test", probeIntervalMs: PROBE_INTERVAL_S * 1000, replicas: 1 },
        queue,
        new NextHopResolver(new Resolver(), { ourNames: ["report-watch.backup-mx.test"], mxPort: 25 }),
        () => store.current().byDomain.values(),
        primaries,
        log,
      );
      const down = await eventually("down.example reported unreachable", async () => {
        await watch.round();
        const figures = primaries.figures("down.example");
        return figures.primaryReachable === false && figures;
      });
      assert.equal(down.primaryError, "no 220 greeting from 127.0.0.1:1");
      assert.ok(Date.parse(down.primaryDownSince ?? "") <= Date.now());
      await eventually("watched.example reported reachable", async () => {
        await watch.round();
        return primaries.figures("watched.example").primaryReachable === true;
      });
    } finally {
      store.stop();
      await queue.close();
    }
  });

  it("probes a primary about once per interval for the whole site, not once per relay", async () => {
    const windowS = 6;
    const before = greeter.connections();
    // A measuring window, not a wait for an event: the probes that fall into it are counted.
    await new Promise((resolve) => setTimeout(resolve, windowS * 1000));
    const probes = greeter.connections() - before;
    assert.ok(probes >= 2, `the primary was probed ${probes} times in ${windowS}s`);
    assert.ok(
      probes <= windowS / PROBE_INTERVAL_S + 2,
      `the primary was probed ${probes} times in ${windowS}s by two relays; one relay alone probes ${windowS / PROBE_INTERVAL_S}`,
    );
  });
});
