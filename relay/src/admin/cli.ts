// mxwarden-queue's command line: parsed apart from running, so every flag and its validation can be
// tested without a server. Exit codes: 0 done, 1 failed (or named messages that are not queued), 2 usage.

import { parseArgs } from "node:util";
import { normaliseDomain, parseDuration } from "#api";
import { isQueueId } from "../queue/index.ts";
import type { QueueAction, QueuedState, QueueSelector, TrackingQuery } from "./types.ts";

export class QueueUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QueueUsageError";
  }
}

export const QUEUE_USAGE = `Usage: mxwarden-queue --nats URL[,URL...] [connection options] COMMAND [options]

Commands:
  list [--domain D] [--sender S] [--recipient R] [--older-than DURATION] [--state ready|deferred|held]
  show QUEUEID [--headers]                      envelope, header section and attempt history
  retry   QUEUEID...|--domain D|--all           deliver now (deferred and held mail)
  hold    QUEUEID...|--domain D|--all           keep, never deliver, until released or its lifetime ends
  release QUEUEID...|--domain D|--all           make held mail ready again
  delete  QUEUEID...|--domain D|--all           remove silently
  bounce  QUEUEID...|--domain D|--all           return to the sender with an RFC 3464 DSN, then remove
  find --message-id ID | --sender S | --recipient R [--since DURATION]
                                                message tracking: queued mail and mail that left
  takeover --peer SITE                          deliver a lost peer site's mail from the copies this
                                                site holds (only when SITE is gone: on a cut link both
                                                sites would deliver it; docs/architecture.md, Takeover)
  Actions also take list's filters (--sender, --recipient, --older-than, --state) to narrow a selection.
  A sender or recipient is an address, or @domain for a whole domain.

Connection options:
  --nats URL[,URL...]   the site's NATS servers (or $MXWARDEN_NATS)
  --user NAME           NATS user; the password comes from $MXWARDEN_NATS_PASSWORD or --password
  --password SECRET     (visible to other local users in the process list: prefer the variable)
  --creds FILE          NATS credentials file (JWT and NKey seed)
  --tls-ca FILE         CA certificate(s) for the servers' TLS certificates
  --timeout DURATION    per request (default 10s)

Other options:
  --json                print JSON instead of a table
  --actor NAME          who acts, for the audit log (default: $MXWARDEN_ACTOR, else the OS user)
  --hostname NAME       Reporting-MTA of the DSNs bounce sends (default: this host's name)
  --help

DURATION is a number with ms, s, m, h or d, such as 30m, 2h or 7d.
`;

const ACTIONS: readonly QueueAction[] = ["retry", "hold", "release", "delete", "bounce"];
const STATES: readonly QueuedState[] = ["ready", "deferred", "held"];

export interface Connection {
  servers: string[];
  user?: string;
  pass?: string;
  credsFile?: string;
  caFile?: string;
  timeoutMs: number;
}

export type QueueCommand =
  | { command: "list"; selector: QueueSelector }
  | { command: "show"; queueId: string; headers: boolean }
  | { command: "act"; action: QueueAction; selector: QueueSelector }
  | { command: "find"; query: TrackingQuery }
  | { command: "takeover"; peer: string };

export interface QueueCliConfig {
  connection: Connection;
  actor: string;
  hostname?: string | undefined;
  json: boolean;
  run: QueueCommand;
}

function duration(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new QueueUsageError(`--${flag}: expected a duration such as 30m, 2h or 7d, got "${value}"`);
  return ms;
}

function address(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value === "" || /[\s<>]/.test(value)) throw new QueueUsageError(`--${flag}: expected an address or @domain, got "${value}"`);
  return value;
}

function domain(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const normalised = normaliseDomain(value);
  if (!normalised) throw new QueueUsageError(`--domain: not a domain name: "${value}"`);
  return normalised;
}

function state(value: string | undefined): QueuedState | undefined {
  if (value === undefined) return undefined;
  if (!(STATES as readonly string[]).includes(value)) throw new QueueUsageError(`--state: expected ready, deferred or held, got "${value}"`);
  return value as QueuedState;
}

function queueIds(values: string[]): string[] {
  for (const value of values) {
    if (!isQueueId(value)) throw new QueueUsageError(`not a queue id: "${value}" (25 characters, as in "queued as ..." and the Received header)`);
  }
  return values;
}

/** Parse argv (without node and script); "help" for --help. `env` supplies the defaults the variables give. */
export function parseQueueArgs(argv: string[], env: Record<string, string | undefined>, osUser: string): QueueCliConfig | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        nats: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        creds: { type: "string" },
        "tls-ca": { type: "string" },
        timeout: { type: "string", default: "10s" },
        json: { type: "boolean", default: false },
        actor: { type: "string" },
        hostname: { type: "string" },
        domain: { type: "string" },
        sender: { type: "string" },
        recipient: { type: "string" },
        "older-than": { type: "string" },
        state: { type: "string" },
        all: { type: "boolean", default: false },
        headers: { type: "boolean", default: false },
        "message-id": { type: "string" },
        since: { type: "string" },
        peer: { type: "string" },
        help: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    throw new QueueUsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const [command, ...rest] = parsed.positionals;
  if (command === undefined) throw new QueueUsageError("a command is required");
  const nats = v.nats ?? env.MXWARDEN_NATS;
  if (!nats) throw new QueueUsageError("--nats is required (or $MXWARDEN_NATS)");
  const servers = nats
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const server of servers) {
    if (!/^(nats|tls|wss?):\/\/[^\s]+$|^[^\s/:]+:\d+$/.test(server)) throw new QueueUsageError(`--nats: not a NATS URL: "${server}"`);
  }
  if (v.creds && v.user) throw new QueueUsageError("--creds and --user exclude each other");
  const pass = v.password ?? env.MXWARDEN_NATS_PASSWORD;
  const timeoutMs = duration("timeout", v.timeout) || 10_000;
  const connection: Connection = {
    servers,
    timeoutMs,
    ...(v.user !== undefined ? { user: v.user, pass: pass ?? "" } : {}),
    ...(v.creds ? { credsFile: v.creds } : {}),
    ...(v["tls-ca"] ? { caFile: v["tls-ca"] } : {}),
  };
  const actor = v.actor ?? env.MXWARDEN_ACTOR ?? osUser;
  const filters: QueueSelector = {
    ...(v.domain !== undefined ? { domain: domain(v.domain) } : {}),
    ...(v.sender !== undefined ? { sender: address("sender", v.sender) } : {}),
    ...(v.recipient !== undefined ? { recipient: address("recipient", v.recipient) } : {}),
    ...(v["older-than"] !== undefined ? { olderThanMs: duration("older-than", v["older-than"]) } : {}),
    ...(v.state !== undefined ? { state: state(v.state) } : {}),
  };
  const base = { connection, actor, hostname: v.hostname, json: v.json };
  const noPositionals = (): void => {
    if (rest.length > 0) throw new QueueUsageError(`${command}: unexpected argument "${rest[0]}"`);
  };
  if (command === "list") {
    noPositionals();
    return { ...base, run: { command: "list", selector: filters } };
  }
  if (command === "show") {
    if (rest.length !== 1) throw new QueueUsageError("show: exactly one queue id");
    return { ...base, run: { command: "show", queueId: queueIds(rest)[0] as string, headers: v.headers } };
  }
  if ((ACTIONS as readonly string[]).includes(command)) {
    const ids = queueIds(rest);
    const scoped = ids.length > 0 || filters.domain !== undefined || v.all;
    if (!scoped) throw new QueueUsageError(`${command}: name queue ids, --domain D, or --all`);
    if (ids.length > 0 && v.all) throw new QueueUsageError(`${command}: queue ids and --all exclude each other`);
    const selector: QueueSelector = { ...filters, ...(ids.length > 0 ? { queueIds: ids } : {}), ...(v.all ? { all: true } : {}) };
    return { ...base, run: { command: "act", action: command as QueueAction, selector } };
  }
  if (command === "find") {
    noPositionals();
    const query: TrackingQuery = {
      ...(v["message-id"] !== undefined ? { messageId: v["message-id"] } : {}),
      ...(v.sender !== undefined ? { sender: address("sender", v.sender) } : {}),
      ...(v.recipient !== undefined ? { recipient: address("recipient", v.recipient) } : {}),
      ...(v.since !== undefined ? { sinceMs: duration("since", v.since) } : {}),
    };
    if (query.messageId === undefined && query.sender === undefined && query.recipient === undefined) {
      throw new QueueUsageError("find: --message-id, --sender or --recipient");
    }
    return { ...base, run: { command: "find", query } };
  }
  if (command === "takeover") {
    noPositionals();
    if (!v.peer || !/^[A-Za-z0-9_-]{1,63}$/.test(v.peer)) throw new QueueUsageError("takeover: --peer SITE, the lost site's JetStream domain");
    return { ...base, run: { command: "takeover", peer: v.peer } };
  }
  throw new QueueUsageError(`unknown command "${command}"`);
}
