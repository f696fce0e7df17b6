// mxwarden-queue as an administrator runs it: a subprocess against a real nats-server, with a real
// relay accepting and delivering mail to test primaries. Every command of README's "Queue
// operations", the tracking records the relay writes, the audit lines, bad input, and the race: an
// action on a message whose delivery is under way (the primary holds its reply to the final dot)
// must neither lose it nor deliver it twice.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import type { QueueActionResult, QueuedMessage, ShownMessage, TrackingRecord } from "#relay";
import { TestNatsServer } from "../harness/nats-server.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStackWithRelay } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { headerValue, TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, repoRoot, tempDir } from "../harness/workspace.ts";

function runCli(nats: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      join(repoRoot, "relay/bin/mxwarden-queue"),
      ["--nats", nats, "--actor", "tester", ...args],
      { env: { ...process.env, MXWARDEN_NATS_PASSWORD: "" }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A primary that can keep its reply to the final dot back, to hold a delivery in flight. */
class GatedPrimary {
  readonly accepted: Array<{ from: string; to: string[]; body: Buffer }> = [];
  /** Messages whose final dot arrived, answered or not. */
  dataReceived = 0;
  /** Each reply to the final dot waits this long (when no gate is closed). */
  delayMs = 0;
  port = 0;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  private server: SMTPServer | undefined;

  async start(port = 0): Promise<void> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["AUTH", "STARTTLS"],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => {
          this.dataReceived++;
          const wait = this.gate ?? new Promise<void>((resolve) => setTimeout(resolve, this.delayMs));
          void wait.then(() => {
            this.accepted.push({
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
              to: session.envelope.rcptTo.map((r) => r.address),
              body: Buffer.concat(chunks),
            });
            callback();
          });
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
    const address = server.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    this.server = server;
  }

  /** From now on, replies to the final dot wait until open(). */
  close(): void {
    this.gate = new Promise((resolve) => {
      this.openGate = resolve;
    });
  }

  open(): void {
    this.gate = undefined;
    this.openGate?.();
  }

  async stop(): Promise<void> {
    this.open();
    const server = this.server;
    if (!server) return;
    (server.options as { closeTimeout?: number }).closeTimeout = 0;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe("mxwarden-queue", () => {
  const dir = tempDir("mxw-queue-cli-");
  const gated = new GatedPrimary();
  let stack: RelayStackWithRelay<{ dir: string; nats: true; primary: true }>;
  let primary: TestPrimary;
  /** Recipients the primary answers 451 for, until a test takes them out. */
  const deferring = new Set(["later@slow.example", "later2@slow.example", "later3@slow.example", "later4@slow.example", "x@short.example"]);

  function cli(...args: string[]): Promise<CliResult> {
    return runCli(stack.nats.url, args);
  }

  async function json<T>(...args: string[]): Promise<T> {
    const result = await cli(...args, "--json");
    assert.equal(result.code, 0, `mxwarden-queue ${args.join(" ")} failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  }

  /** Send one message; returns its queue id (from the 250). */
  async function send(from: string, to: string, id: string): Promise<string> {
    const { data } = await sendMail(stack.relay.smtpPort, { from, to: [to], body: simpleMessage(id, id) });
    const queueId = /queued as ([0-9A-Z]{25})/.exec(data?.text ?? "")?.[1];
    assert.ok(queueId, `not queued: ${data?.code} ${data?.text}`);
    return queueId;
  }

  async function stateOf(queueId: string): Promise<QueuedMessage["state"] | undefined> {
    const [message] = await json<QueuedMessage[]>("list", "--json").then((all) => all.filter((m) => m.queueId === queueId));
    return message?.state;
  }

  const dsnsTo = (address: string) => primary.messages.filter((m) => m.from === "" && m.to.includes(address));

  before(async () => {
    await gated.start();
    stack = await startRelayStack({ dir: dir.path, nats: true, primary: true }, (peers) => {
      peers.primary.recipientRule = (address) => (deferring.has(address) ? { code: 451, message: "4.3.2 try again later" } : undefined);
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      const slowRetry = { retry: { initialBackoff: "1h", maxBackoff: "1h" } };
      return {
        domains: [
          { domain: "slow.example", primary: { hosts }, queue: slowRetry },
          { domain: "short.example", primary: { hosts }, queue: { ...slowRetry, lifetime: "8s" } },
          { domain: "race.example", primary: { hosts: [{ host: "127.0.0.1", port: gated.port }] } },
        ],
        // Bounces for client.test go to the test primary, standing in for the sender's MX.
        // Two deliveries at a time: a backlog of ready jobs waits in the stream, not in the relay.
        args: ["--bounce-relay", `127.0.0.1:${peers.primary.port}`, "--probe-interval", "1s", "--tracking-retention", "1h", "--delivery-concurrency", "2"],
      };
    });
    primary = stack.primary;
  });

  after(async () => {
    await stack?.stop();
    await gated.stop();
    dir.remove();
  });

  it("refuses bad input with exit code 2, and names an unknown queue id with exit code 1", async () => {
    const badDuration = await cli("list", "--older-than", "soon");
    assert.equal(badDuration.code, 2);
    assert.match(badDuration.stderr, /--older-than: expected a duration such as 30m, 2h or 7d, got "soon"/);
    assert.equal((await cli("frobnicate")).code, 2);
    assert.equal((await cli("retry")).code, 2, "an action needs queue ids, --domain or --all");
    assert.equal((await cli("list", "--state", "stuck")).code, 2);
    const notAnId = await cli("show", "nope");
    assert.equal(notAnId.code, 2);
    assert.match(notAnId.stderr, /not a queue id: "nope"/);
    const unknownId = "0000000000000000000000000";
    const show = await cli("show", unknownId);
    assert.equal(show.code, 1);
    assert.match(show.stderr, new RegExp(`no queued message with id ${unknownId}`));
    const retry = await cli("retry", unknownId, "--json");
    assert.equal(retry.code, 1);
    const result = JSON.parse(retry.stdout) as QueueActionResult;
    assert.deepEqual(
      result.skipped.map((s) => s.queueId),
      [unknownId],
    );
    assert.match(result.skipped[0]?.reason ?? "", /^not queued/);
    const noServer = await new Promise<number>((resolve) => {
      execFile(join(repoRoot, "relay/bin/mxwarden-queue"), ["list"], { env: { ...process.env, MXWARDEN_NATS: "" } }, (error) =>
        resolve(typeof error?.code === "number" ? error.code : 0),
      );
    });
    assert.equal(noServer, 2, "without --nats");
  });

  let first = "";
  let second = "";

  it("lists deferred mail with each filter, as a table and as JSON", async () => {
    first = await send("alice@client.test", "later@slow.example", "first");
    second = await send("bob@client.test", "later2@slow.example", "second");
    await eventually("both messages deferred", async () => (await stateOf(first)) === "deferred" && (await stateOf(second)) === "deferred");

    const all = await json<QueuedMessage[]>("list", "--domain", "slow.example");
    assert.deepEqual(all.map((m) => m.queueId).sort(), [first, second].sort());
    const one = all.find((m) => m.queueId === first);
    assert.ok(one);
    assert.deepEqual(Object.keys(one).sort(), [
      "arrivedAt",
      "attempts",
      "domain",
      "lastError",
      "nextAttemptAt",
      "queueId",
      "recipients",
      "sender",
      "size",
      "state",
    ]);
    assert.equal(one.domain, "slow.example");
    assert.equal(one.sender, "alice@client.test");
    assert.deepEqual(one.recipients, ["later@slow.example"]);
    assert.equal(one.attempts, 1);
    assert.match(one.lastError ?? "", /^451 4\.3\.2 try again later/);
    assert.ok(Date.parse(one.nextAttemptAt ?? "") > Date.now() + 50 * 60_000, "the next attempt is the 1h backoff away");
    assert.ok(Math.abs(Date.parse(one.arrivedAt) - Date.now()) < 60_000);
    assert.ok(one.size > 0);

    const ids = async (...filters: string[]) => (await json<QueuedMessage[]>("list", ...filters)).map((m) => m.queueId).sort();
    assert.deepEqual(await ids("--sender", "alice@client.test"), [first]);
    assert.deepEqual(await ids("--sender", "@client.test", "--domain", "slow.example"), [first, second].sort());
    assert.deepEqual(await ids("--recipient", "later2@slow.example"), [second]);
    assert.deepEqual(await ids("--older-than", "1h"), []);
    assert.deepEqual(await ids("--state", "ready", "--domain", "slow.example"), []);
    assert.deepEqual(await ids("--state", "deferred", "--domain", "slow.example"), [first, second].sort());
    await eventually("both older than 1s", async () => (await ids("--older-than", "1s", "--domain", "slow.example")).length === 2);

    const table = await cli("list", "--domain", "slow.example");
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^QUEUE ID +STATE +ARRIVED +SIZE +ATTEMPTS +NEXT ATTEMPT +SENDER -> RECIPIENTS\n/);
    assert.match(table.stdout, new RegExp(`${first} +deferred .* alice@client\\.test -> later@slow\\.example\\n +\\(451 4\\.3\\.2 try again later\\)`));
    assert.match(table.stdout, /-- 2 messages, \d+ bytes\n$/);
  });

  it("shows a message's envelope, header section and history", async () => {
    const shown = await json<ShownMessage>("show", first, "--headers");
    assert.equal(shown.message.queueId, first);
    assert.match(shown.headers ?? "", /^Received: from client\.test/);
    assert.match(shown.headers ?? "", /\r\nSubject: first\r\n/);
    assert.deepEqual(
      shown.history.map((h) => h.event),
      ["accepted", "1 delivery attempt so far", "next attempt scheduled"],
    );
    assert.match(shown.history[0]?.detail ?? "", /from alice@client\.test \(client 127\.0\.0\.1\)/);
    assert.match(shown.history[1]?.detail ?? "", /^last error: 451 4\.3\.2 try again later/);
    const human = await cli("show", first);
    assert.match(human.stdout, /state: +deferred\n/);
    assert.match(human.stdout, /last error: +451 4\.3\.2 try again later/);
  });

  it("retry delivers deferred mail now, and find tracks it after it left the queue", async () => {
    deferring.delete("later@slow.example");
    const retry = await cli("retry", first, "--json");
    assert.equal(retry.code, 0, retry.stderr);
    assert.deepEqual((JSON.parse(retry.stdout) as QueueActionResult).done, [first]);
    // The audit line on stderr, and nothing else: who, what, which messages; no secrets.
    const lines = retry.stderr.trim().split("\n");
    assert.equal(lines.length, 1, retry.stderr);
    const audit = JSON.parse(lines[0] ?? "{}") as Record<string, unknown>;
    assert.equal(audit.msg, "queue action");
    assert.equal(audit.actor, "tester");
    assert.equal(audit.action, "retry");
    assert.deepEqual(audit.done, [first]);
    const delivered = await eventually("delivery at the primary", () => primary.messages.find((m) => m.to.includes("later@slow.example")), 20_000);
    assert.equal(headerValue(delivered.body, "Subject"), "first");

    const found = await eventually("the delivered outcome", async () => {
      const [record] = await json<TrackingRecord[]>("find", "--message-id", "first@client.test");
      return record?.outcome === "delivered" ? record : undefined;
    });
    assert.equal(found.queueId, first);
    assert.equal(found.sender, "alice@client.test");
    assert.deepEqual(found.recipients, ["later@slow.example"]);
    assert.equal(found.client, "127.0.0.1");
    assert.match(found.remoteReply ?? "", /^250/);
    assert.deepEqual(
      (await json<TrackingRecord[]>("find", "--recipient", "later@slow.example", "--since", "1h")).map((r) => r.queueId),
      [first],
    );
    assert.deepEqual(await json<TrackingRecord[]>("find", "--sender", "alice@client.test", "--since", "1ms"), []);
    const table = await cli("find", "--sender", "alice@client.test");
    assert.match(
      table.stdout,
      new RegExp(
        `^QUEUE ID .*\\n${first} +\\S+ \\S+ +delivered +.*first@client\\.test +alice@client\\.test -> later@slow\\.example\\n +\\(client 127\\.0\\.0\\.1; reply: 250`,
      ),
    );
  });

  it("hold keeps mail from delivery until release, and records who held it", async () => {
    const hold = await json<QueueActionResult>("hold", "--domain", "slow.example");
    assert.deepEqual(hold.done, [second]);
    assert.equal(await stateOf(second), "held");
    const audited = await eventually("the hold in the message's history", async () =>
      (await json<ShownMessage>("show", second)).history.find((h) => h.event === "hold"),
    );
    assert.equal(audited.detail, "by tester (mxwarden-queue), was deferred");
    deferring.delete("later2@slow.example");
    // A message sent after the hold is delivered; the held one is not.
    const third = await send("carl@client.test", "now@slow.example", "third");
    await eventually("the later message delivered", () => primary.messages.some((m) => m.to.includes("now@slow.example")));
    assert.equal(await stateOf(third), undefined);
    assert.equal(await stateOf(second), "held");
    assert.ok(!primary.messages.some((m) => m.to.includes("later2@slow.example")));

    const release = await json<QueueActionResult>("release", second);
    assert.deepEqual(release.done, [second]);
    await eventually("the released message delivered", () => primary.messages.some((m) => m.to.includes("later2@slow.example")), 20_000);
    const shown = await eventually("the tracking record delivered", async () => {
      const [record] = await json<TrackingRecord[]>("find", "--message-id", "<second@client.test>");
      return record?.outcome === "delivered" ? record : undefined;
    });
    assert.equal(shown.queueId, second);
  });

  it("delete removes a message silently, and find says so", async () => {
    const id = await send("dora@client.test", "later3@slow.example", "fourth");
    await eventually("deferred", async () => (await stateOf(id)) === "deferred");
    const deleted = await json<QueueActionResult>("delete", id);
    assert.deepEqual(deleted.done, [id]);
    assert.equal(await stateOf(id), undefined);
    const [record] = await json<TrackingRecord[]>("find", "--sender", "dora@client.test");
    assert.equal(record?.outcome, "deleted");
    assert.equal(dsnsTo("dora@client.test").length, 0, "no bounce for a delete");
  });

  it("bounce returns a message to its sender with an RFC 3464 DSN", async () => {
    const id = await send("eve@client.test", "later4@slow.example", "fifth");
    await eventually("deferred", async () => (await stateOf(id)) === "deferred");
    const bounced = await json<QueueActionResult>("bounce", id);
    assert.deepEqual(bounced.done, [id]);
    assert.equal(await stateOf(id), undefined);
    const [dsn] = await eventually("the DSN at the sender's MX", () => (dsnsTo("eve@client.test").length > 0 ? dsnsTo("eve@client.test") : undefined), 20_000);
    const text = dsn?.body.toString("utf8") ?? "";
    assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/);
    assert.match(text, /Action: failed/);
    assert.match(text, /Final-Recipient: rfc822; ?later4@slow\.example/);
    assert.match(text, /returned to the sender by the mail administrator/);
    assert.match(text, /Subject: fifth/, "the original header section is in the report");
    const [record] = await json<TrackingRecord[]>("find", "--sender", "eve@client.test");
    assert.equal(record?.outcome, "bounced");
    assert.ok(!primary.messages.some((m) => m.to.includes("later4@slow.example")));
  });

  it("held mail whose queue lifetime ends bounces like any expired mail", async () => {
    const id = await send("fay@client.test", "x@short.example", "sixth");
    await eventually("deferred", async () => (await stateOf(id)) === "deferred");
    assert.deepEqual((await json<QueueActionResult>("hold", id)).done, [id]);
    const [dsn] = await eventually("the expiry DSN", () => (dsnsTo("fay@client.test").length > 0 ? dsnsTo("fay@client.test") : undefined), 30_000);
    assert.match(dsn?.body.toString("utf8") ?? "", /Action: failed/);
    assert.equal(await stateOf(id), undefined);
    const record = await eventually("the expired outcome", async () => {
      const [found] = await json<TrackingRecord[]>("find", "--sender", "fay@client.test");
      return found?.outcome === "expired" ? found : undefined;
    });
    assert.equal(record.queueId, id);
  });

  it("skips a message whose delivery is under way, which is then delivered exactly once", async () => {
    gated.close();
    const id = await send("gus@client.test", "r@race.example", "race-one");
    await eventually("the final dot at the primary, unanswered", () => gated.dataReceived === 1);
    for (const action of ["retry", "hold", "delete", "bounce"]) {
      const result = await json<QueueActionResult>(action, id);
      assert.equal(result.matched, 1, action);
      assert.deepEqual(result.done, [], action);
      assert.match(result.skipped[0]?.reason ?? "", /being delivered/, action);
    }
    const all = await json<QueueActionResult>("hold", "--domain", "race.example");
    assert.deepEqual(all.done, []);
    gated.open();
    await eventually("accepted by the primary", () => gated.accepted.length === 1);
    await eventually("gone from the queue", async () => (await stateOf(id)) === undefined);
    await eventually("tracked as delivered", async () => (await json<TrackingRecord[]>("find", "--sender", "gus@client.test"))[0]?.outcome === "delivered");
    assert.equal(gated.accepted.length, 1);
    assert.equal(gated.dataReceived, 1, "no second delivery attempt");
    assert.equal(dsnsTo("gus@client.test").length, 0);
  });

  it("loses nothing and delivers nothing twice when holds and releases race deliveries", async () => {
    gated.delayMs = 150;
    const count = 30;
    const before = gated.accepted.length;
    const sending = Promise.all(Array.from({ length: count }, (_, i) => send("hal@client.test", `r${i}@race.example`, `race-${i}`)));
    const actions: QueueActionResult[] = [];
    // Holds and releases of the whole domain while its mail is being delivered.
    for (let round = 0; round < 4; round++) {
      actions.push(await json<QueueActionResult>("hold", "--domain", "race.example"));
      actions.push(await json<QueueActionResult>("release", "--domain", "race.example"));
    }
    const ids = await sending;
    actions.push(await json<QueueActionResult>("release", "--domain", "race.example"));
    await eventually("every message accepted by the primary", () => gated.accepted.length - before >= count, 60_000);
    await eventually("nothing left queued", async () => (await json<QueuedMessage[]>("list", "--domain", "race.example")).length === 0);
    const subjects = gated.accepted.slice(before).map((m) => headerValue(m.body, "Subject"));
    assert.equal(subjects.length, count, "no duplicates");
    assert.equal(new Set(subjects).size, count);
    assert.equal(new Set(ids).size, count);
    const touched = actions.reduce((n, a) => n + a.done.length, 0);
    const skipped = actions.flatMap((a) => a.skipped);
    assert.ok(
      skipped.every((s) => /being delivered|not held|already held|changed|moving/.test(s.reason)),
      JSON.stringify(skipped.slice(0, 3)),
    );
    assert.ok(touched > 0, "some holds and releases landed between deliveries");
    assert.ok(
      skipped.some((s) => /being delivered/.test(s.reason)),
      "some messages were in flight when acted on",
    );
  });
});

describe("mxwarden-queue at a named site (--site, scoped subjects)", () => {
  const dir = tempDir("mxw-queue-site-");
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let relay: RelayProcess;
  let deferring = true;

  before(async () => {
    nats = await TestNatsServer.start(join(dir.path, "nats"), { domain: "site-a" });
    primary = await TestPrimary.start();
    primary.recipientRule = () => (deferring ? { code: 451, message: "4.3.2 try again later" } : undefined);
    const domainsPath = join(dir.path, "domains.yaml");
    writeDomains(domainsPath, [
      { domain: "site.example", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, queue: { retry: { initialBackoff: "1h", maxBackoff: "1h" } } },
    ]);
    relay = await RelayProcess.start({ dir: dir.path, domainsPath, nats: nats.url, args: ["--site", "site-a"] });
    await relay.ready();
  });

  after(async () => {
    await relay?.stop();
    await primary?.close();
    await nats?.stop();
    dir.remove();
  });

  it("finds the site's subjects from its JetStream domain, and holds, releases and tracks its mail", async () => {
    const json = async <T>(...args: string[]): Promise<T> => {
      const result = await runCli(nats.url, [...args, "--json"]);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout) as T;
    };
    const { data } = await sendMail(relay.smtpPort, { from: "ivy@client.test", to: ["a@site.example"], body: simpleMessage("site", "site-one") });
    const queueId = /queued as ([0-9A-Z]{25})/.exec(data?.text ?? "")?.[1] ?? "";
    await eventually("deferred at the site", async () => (await json<QueuedMessage[]>("list"))[0]?.state === "deferred");
    assert.deepEqual((await json<QueueActionResult>("hold", "--domain", "site.example")).done, [queueId]);
    assert.equal((await json<QueuedMessage[]>("list", "--state", "held"))[0]?.queueId, queueId);
    deferring = false;
    assert.deepEqual((await json<QueueActionResult>("release", "--all")).done, [queueId]);
    await eventually("delivered", () => primary.messages.some((m) => m.to.includes("a@site.example")), 20_000);
    const record = await eventually("tracked as delivered at site-a", async () => {
      const [found] = await json<TrackingRecord[]>("find", "--message-id", "site-one@client.test");
      return found?.outcome === "delivered" ? found : undefined;
    });
    assert.equal(record.site, "site-a");
    assert.equal(record.queueId, queueId);
  });
});

describe("mxwarden-queue while a recovered primary's held mail is flushed", () => {
  const dir = tempDir("mxw-queue-flush-");
  const gated = new GatedPrimary();
  let stack: RelayStackWithRelay<{ dir: string; nats: true }>;
  let port = 0;

  before(async () => {
    port = await freePort();
    // Nothing listens on the primary's port yet: the mail is deferred and the domain marked down.
    stack = await startRelayStack(
      { dir: dir.path, nats: true },
      {
        domains: [{ domain: "flush.example", primary: { hosts: [{ host: "127.0.0.1", port }] } }],
        args: ["--probe-interval", "1s"],
      },
    );
  });

  after(async () => {
    await stack?.stop();
    await gated.stop();
    dir.remove();
  });

  it("skips a deferred message the flush is delivering in place, which is delivered exactly once", async () => {
    const json = async <T>(...args: string[]): Promise<T> => {
      const result = await runCli(stack.nats.url, [...args, "--json"]);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout) as T;
    };
    const { data } = await sendMail(stack.relay.smtpPort, { from: "jo@client.test", to: ["a@flush.example"], body: simpleMessage("flush", "flush-one") });
    const queueId = /queued as ([0-9A-Z]{25})/.exec(data?.text ?? "")?.[1] ?? "";
    await eventually("deferred while the primary is down", async () => (await json<QueuedMessage[]>("list"))[0]?.state === "deferred");
    // The primary comes back, but keeps its reply to the final dot: the flush's delivery stays in flight.
    gated.close();
    await gated.start(port);
    await eventually("the final dot at the primary", () => gated.dataReceived === 1, 30_000);
    assert.equal((await json<QueuedMessage[]>("list"))[0]?.state, "deferred", "delivered in place, from the defer subject");
    for (const action of ["retry", "hold", "delete"]) {
      const result = await json<QueueActionResult>(action, queueId);
      assert.deepEqual(result.done, [], action);
      assert.match(result.skipped[0]?.reason ?? "", /being delivered by a flush/, action);
    }
    gated.open();
    await eventually("accepted", () => gated.accepted.length === 1);
    await eventually("gone from the queue", async () => (await json<QueuedMessage[]>("list")).length === 0);
    assert.equal(gated.dataReceived, 1, "no second delivery");
  });
});
