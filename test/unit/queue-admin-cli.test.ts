// mxwarden-queue's command line, its tables and the Message-ID the receiver tracks: every flag and
// rule without a server (the commands themselves run in test/integration/queue-cli.test.ts).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseQueueArgs, QueueUsageError, type QueueCliConfig } from "../../relay/src/admin/cli.ts";
import { formatQueueTable, formatTrackingTable } from "../../relay/src/admin/tables.ts";
import { messageIdOf } from "../../relay/src/receive/message-id.ts";
import { foldEntry } from "../../relay/src/queue/tracking.ts";
import { withoutUserInfo } from "../../relay/src/admin/queue-admin.ts";

const ID = "0MXAP1WYL36ADB9FAF22AC60D";
const parse = (args: string[], env: Record<string, string | undefined> = {}): QueueCliConfig => {
  const config = parseQueueArgs(["--nats", "nats://127.0.0.1:4222", ...args], env, "osuser");
  assert.notEqual(config, "help");
  return config as QueueCliConfig;
};

describe("mxwarden-queue arguments", () => {
  it("parses takeover with the lost site's name, and refuses it without one", () => {
    assert.deepEqual(parse(["takeover", "--peer", "site-a"]).run, { command: "takeover", peer: "site-a" });
    assert.throws(() => parse(["takeover"]), /--peer SITE/);
    assert.throws(() => parse(["takeover", "--peer", "a.b"]), /--peer SITE/);
  });

  it("parses list's filters, with durations and domains normalised", () => {
    const config = parse([
      "list",
      "--domain",
      "Example.COM",
      "--sender",
      "@client.test",
      "--recipient",
      "a@example.com",
      "--older-than",
      "2h",
      "--state",
      "held",
      "--json",
    ]);
    assert.deepEqual(config.run, {
      command: "list",
      selector: { domain: "example.com", sender: "@client.test", recipient: "a@example.com", olderThanMs: 7_200_000, state: "held" },
    });
    assert.equal(config.json, true);
  });

  it("takes actions on queue ids, a domain or all, narrowed by filters", () => {
    assert.deepEqual(parse(["retry", ID]).run, { command: "act", action: "retry", selector: { queueIds: [ID] } });
    assert.deepEqual(parse(["hold", "--domain", "example.com", "--older-than", "30m"]).run, {
      command: "act",
      action: "hold",
      selector: { domain: "example.com", olderThanMs: 1_800_000 },
    });
    assert.deepEqual(parse(["bounce", "--all"]).run, { command: "act", action: "bounce", selector: { all: true } });
    assert.throws(() => parse(["delete"]), /delete: name queue ids, --domain D, or --all/);
    assert.throws(() => parse(["delete", ID, "--all"]), /exclude each other/);
  });

  it("parses show and find", () => {
    assert.deepEqual(parse(["show", ID, "--headers"]).run, { command: "show", queueId: ID, headers: true });
    assert.deepEqual(parse(["find", "--message-id", "<a@b>", "--since", "7d"]).run, { command: "find", query: { messageId: "<a@b>", sinceMs: 604_800_000 } });
    assert.throws(() => parse(["find", "--since", "1d"]), /find: --message-id, --sender or --recipient/);
    assert.throws(() => parse(["show"]), /exactly one queue id/);
  });

  it("refuses bad input as a usage error", () => {
    for (const [args, message] of [
      [["list", "--older-than", "soon"], /--older-than: expected a duration such as 30m, 2h or 7d, got "soon"/],
      [["find", "--sender", "x", "--since", "1 day"], /--since: expected a duration/],
      [["list", "--state", "stuck"], /--state: expected ready, deferred or held/],
      [["list", "--domain", "not a domain"], /--domain: not a domain name/],
      [["show", "abc"], /not a queue id: "abc"/],
      [["frobnicate"], /unknown command "frobnicate"/],
      [["list", "--frob"], /Unknown option '--frob'/],
      [["list", "extra"], /list: unexpected argument "extra"/],
      [["list", "--sender", "a b@c"], /--sender: expected an address or @domain/],
    ] as const) {
      assert.throws(
        () => parse([...args]),
        (err: unknown) => err instanceof QueueUsageError && message.test(err.message),
        args.join(" "),
      );
    }
    assert.throws(() => parseQueueArgs(["list"], {}, "u"), /--nats is required/);
    assert.throws(() => parseQueueArgs(["--nats", "http://x", "list"], {}, "u"), /not a NATS URL/);
    assert.throws(() => parseQueueArgs(["--nats", "nats://x:4222", "--user", "a", "--creds", "f", "list"], {}, "u"), /exclude each other/);
  });

  it("takes the connection and the actor from flags, else the environment, else the OS user", () => {
    const fromEnv = parseQueueArgs(
      ["--user", "admin", "list"],
      { MXWARDEN_NATS: "nats://a:4222,nats://b:4222", MXWARDEN_NATS_PASSWORD: "s3cret", MXWARDEN_ACTOR: "alice" },
      "osuser",
    );
    assert.notEqual(fromEnv, "help");
    const config = fromEnv as QueueCliConfig;
    assert.deepEqual(config.connection, { servers: ["nats://a:4222", "nats://b:4222"], timeoutMs: 10_000, user: "admin", pass: "s3cret" });
    assert.equal(config.actor, "alice");
    assert.equal(parse(["list"]).actor, "osuser");
    assert.equal(parse(["list", "--actor", "bob", "--creds", "/x.creds", "--tls-ca", "/ca.pem"]).actor, "bob");
    assert.deepEqual(parse(["list", "--creds", "/x.creds", "--tls-ca", "/ca.pem"]).connection, {
      servers: ["nats://127.0.0.1:4222"],
      timeoutMs: 10_000,
      credsFile: "/x.creds",
      caFile: "/ca.pem",
    });
    assert.equal(parseQueueArgs(["--help"], {}, "u"), "help");
  });
});

describe("mxwarden-queue tables", () => {
  it("prints one line per message, its last error below, and a total", () => {
    const table = formatQueueTable([
      {
        queueId: ID,
        domain: "example.com",
        sender: "",
        recipients: ["a@example.com", "b@example.com"],
        state: "deferred",
        arrivedAt: "2026-12-05T10:00:00.123Z",
        size: 1234,
        attempts: 3,
        nextAttemptAt: "2026-12-05T11:00:00.000Z",
        lastError: "451 4.3.2 try\x1b[31m later",
      },
    ]);
    assert.equal(
      table,
      [
        "QUEUE ID                   STATE     ARRIVED               SIZE  ATTEMPTS  NEXT ATTEMPT          SENDER -> RECIPIENTS",
        `${ID}  deferred  2026-12-05 10:00:00Z  1234  3         2026-12-05 11:00:00Z  <> -> a@example.com, b@example.com`,
        "  (451 4.3.2 try [31m later)",
        "-- 1 message, 1234 bytes",
        "",
      ].join("\n"),
    );
    assert.equal(formatQueueTable([]), "No queued messages.\n");
  });

  it("prints tracking records with the client, site and reply below", () => {
    const table = formatTrackingTable([
      {
        queueId: ID,
        messageId: "a@b",
        sender: "s@client.test",
        recipients: ["a@example.com"],
        domain: "example.com",
        client: "192.0.2.1",
        site: "site-a",
        arrivedAt: "2026-12-05T10:00:00.000Z",
        outcome: "delivered",
        remoteReply: "250 2.0.0 Ok",
        updatedAt: "2026-12-05T10:00:01.000Z",
      },
    ]);
    assert.match(table, /^QUEUE ID +ARRIVED +OUTCOME +UPDATED +MESSAGE-ID +SENDER -> RECIPIENTS\n/);
    assert.match(
      table,
      new RegExp(
        `\\n${ID}  2026-12-05 10:00:00Z  delivered  2026-12-05 10:00:01Z  a@b +s@client\\.test -> a@example\\.com\\n  \\(client 192\\.0\\.2\\.1; site site-a; reply: 250 2\\.0\\.0 Ok\\)\\n$`,
      ),
    );
    assert.equal(formatTrackingTable([]), "No tracked messages.\n");
  });
});

describe("messageIdOf", () => {
  it("reads the first Message-ID field, unfolded, without brackets", () => {
    assert.equal(messageIdOf(Buffer.from("Subject: x\r\nMessage-ID: <abc@example.com>\r\n\r\n")), "abc@example.com");
    assert.equal(messageIdOf(Buffer.from("message-id:\r\n <folded@example.com>\r\nMessage-Id: <second@x>\r\n")), "folded@example.com");
    assert.equal(messageIdOf(Buffer.from("Subject: x\r\nX-Message-ID: <no@x>\r\n")), undefined);
    assert.equal(messageIdOf(Buffer.from("Subject: none\r\n\r\n")), undefined);
  });
});

describe("tracking entries folded into a record", () => {
  it("keeps the first writer's envelope, takes later outcomes and replies, and orders the history", () => {
    const accepted = { queueId: ID, sender: "s@client.test", recipients: ["a@x.test", "b@x.test"], domain: "x.test", arrivedAt: "2026-12-05T10:00:00.000Z" };
    let record = foldEntry(undefined, { ...accepted, messageId: "m@x" }, { at: "2026-12-05T10:01:00.000Z", event: "hold", detail: "by alice" });
    record = foldEntry(
      record,
      { ...accepted, recipients: ["b@x.test"], outcome: "delivered", remoteReply: "250 ok" },
      { at: "2026-12-05T10:05:00.000Z", event: "delivered" },
    );
    record = foldEntry(record, { queueId: ID }, { at: "2026-12-05T10:02:00.000Z", event: "release" });
    assert.deepEqual(record.recipients, ["a@x.test", "b@x.test"], "a retried job's shorter list does not replace the envelope");
    assert.equal(record.messageId, "m@x");
    assert.equal(record.outcome, "delivered");
    assert.equal(record.remoteReply, "250 ok");
    assert.equal(record.updatedAt, "2026-12-05T10:05:00.000Z");
    assert.deepEqual(
      record.history?.map((h) => h.event),
      ["hold", "release", "delivered"],
    );
  });
});

describe("withoutUserInfo", () => {
  it("leaves a password written into a server URL out of messages", () => {
    assert.equal(withoutUserInfo("nats://admin:s3cret@nats.example:4222"), "nats://nats.example:4222");
    assert.equal(withoutUserInfo("tls://token@nats.example:4222"), "tls://nats.example:4222");
    assert.equal(withoutUserInfo("nats://nats.example:4222"), "nats://nats.example:4222");
  });
});
