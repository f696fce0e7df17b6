// Several relays on one host sharing the SMTP port (--reuse-port, Linux SO_REUSEPORT): both bind
// it, the kernel spreads new connections between them, and a relay without the flag is refused the
// port rather than silently taking part of its traffic.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { SmtpDialogue } from "../harness/smtp-dialogue.ts";
import { tempDir } from "../harness/workspace.ts";

const CONNECTIONS = 40;

describe("--reuse-port", () => {
  const dir = tempDir("reuse-port");
  let nats: TestNatsServer;
  let domainsPath: string;
  const relays: RelayProcess[] = [];

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"));
    domainsPath = join(dir.path, "domains.yaml");
    writeDomains(domainsPath, [{ domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: 9 }] } }]);
    for (const name of ["first", "second", "exclusive"]) mkdirSync(join(dir.path, name));
    const first = await RelayProcess.start({ dir: join(dir.path, "first"), domainsPath, nats: nats.url, args: ["--reuse-port"] });
    relays.push(first);
    relays.push(await RelayProcess.start({ dir: join(dir.path, "second"), domainsPath, nats: nats.url, args: ["--reuse-port"], smtpPort: first.smtpPort }));
    await Promise.all(relays.map((relay) => relay.ready()));
  });

  after(async () => {
    await Promise.all(relays.map((relay) => relay.stop()));
    await nats?.stop();
  });

  it("lets two relays share the port and spreads new connections between them", async (t) => {
    const [first, second] = relays as [RelayProcess, RelayProcess];
    assert.equal(second.smtpPort, first.smtpPort);
    for (let i = 0; i < CONNECTIONS; i++) {
      const { dialogue, greeting } = await SmtpDialogue.open(first.smtpPort);
      assert.equal(greeting.code, 220);
      await dialogue.quit();
      dialogue.destroy();
    }
    const sessions = await Promise.all(relays.map((relay) => relay.metric("mxwarden_smtp_sessions_total")));
    t.diagnostic(`sessions per relay: ${sessions.join(", ")}`);
    assert.equal(
      sessions.reduce((sum, n) => sum + n, 0),
      CONNECTIONS,
    );
    // Each connection has a new source port, so the kernel's hash sends some to each socket:
    // all 40 on one side has a chance of 2^-39.
    for (const n of sessions) assert.ok(n > 0, `a relay got no connection: ${sessions.join(", ")}`);
  });

  it("refuses the port to a relay without --reuse-port", async () => {
    const [first] = relays as [RelayProcess];
    await assert.rejects(
      RelayProcess.start({ dir: join(dir.path, "exclusive"), domainsPath, nats: nats.url, smtpPort: first.smtpPort }),
      /exited before printing[\s\S]*EADDRINUSE/,
    );
  });
});
