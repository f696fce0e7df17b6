// kubectl-mxwarden's command line, parsed apart from running it so every form is testable. The
// kubectl flags a plugin is expected to honour (--kubeconfig, --context, -n ...) are collected as
// they were written and handed to every kubectl the plugin runs, so it acts with the user's own
// identity and configuration.

import { parseArgs } from "node:util";
import { MUTATING_QUEUE_ACTIONS, parseDuration, type QueueRequestAction, type QueueRequestSelector } from "#api";

export class UsageError extends Error {
  override name = "UsageError";
}

export const USAGE = `usage:
  kubectl mxwarden queue list [-n NS] DOMAINREF [--sender S] [--recipient R] [--older-than DUR] [--state ready|deferred|held]
  kubectl mxwarden queue retry|hold|release|delete|bounce [-n NS] DOMAINREF (--all | QUEUEID...) [filters as for list]
  kubectl mxwarden find [-n NS] (--message-id ID | --sender S | --recipient R) [--since DUR] [DOMAINREF]
DOMAINREF is the name of a RelayDomain in the namespace; find without it asks every RelayDomain there.
Each command creates a RelayQueueRequest, waits for the operator to carry it out at every site and
prints the result as mxwarden-queue does.
  -o, --output table|json   output format (default table)
  --timeout DUR             how long to wait for the result (default 60s)
  --kubeconfig, --context, --cluster, --user, -n/--namespace, --as, --as-group, --server, --token,
  --certificate-authority, --client-certificate, --client-key, --insecure-skip-tls-verify,
  --request-timeout         as for kubectl`;

/** kubectl's own flags, passed through to every kubectl call. */
const KUBECTL_FLAGS = [
  "kubeconfig",
  "context",
  "cluster",
  "user",
  "namespace",
  "as",
  "as-group",
  "server",
  "token",
  "certificate-authority",
  "client-certificate",
  "client-key",
  "request-timeout",
] as const;

export interface PluginCommand {
  action: QueueRequestAction;
  /** The RelayDomain named; undefined only for find ("every RelayDomain in the namespace"). */
  domainRef: string | undefined;
  selector: QueueRequestSelector;
  /** Flags for kubectl, as given (e.g. ["--kubeconfig=/x", "--namespace=team-a"]). */
  kubectlFlags: string[];
  output: "table" | "json";
  timeoutMs: number;
}

function duration(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (parseDuration(value) === undefined) throw new UsageError(`--${flag}: expected a duration such as 30m, 2h or 7d, got "${value}"`);
  return value;
}

export function parsePluginArgs(argv: string[]): PluginCommand | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        ...Object.fromEntries(
          KUBECTL_FLAGS.map((flag) => [flag, flag === "namespace" ? { type: "string" as const, short: "n" } : { type: "string" as const }]),
        ),
        "insecure-skip-tls-verify": { type: "boolean" },
        output: { type: "string", short: "o", default: "table" },
        timeout: { type: "string", default: "60s" },
        all: { type: "boolean" },
        sender: { type: "string" },
        recipient: { type: "string" },
        "older-than": { type: "string" },
        state: { type: "string" },
        "message-id": { type: "string" },
        since: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const text = (name: string): string | undefined => values[name] as string | undefined;
  if (values.help) return "help";
  const [group, ...rest] = parsed.positionals;
  let action: QueueRequestAction;
  let args: string[];
  if (group === "queue") {
    const [verb, ...more] = rest;
    if (verb !== "list" && !(MUTATING_QUEUE_ACTIONS as readonly string[]).includes(verb ?? ""))
      throw new UsageError(`queue: expected list, retry, hold, release, delete or bounce, got ${verb === undefined ? "nothing" : JSON.stringify(verb)}`);
    action = verb as QueueRequestAction;
    args = more;
  } else if (group === "find") {
    action = "find";
    args = rest;
  } else {
    throw new UsageError(group === undefined ? "expected a command: queue or find" : `unknown command ${JSON.stringify(group)}: expected queue or find`);
  }

  const output = text("output");
  if (output !== "table" && output !== "json") throw new UsageError(`-o: expected table or json, got "${output}"`);
  const timeout = parseDuration(text("timeout") ?? "");
  if (timeout === undefined || timeout < 1000) throw new UsageError(`--timeout: expected a duration of at least 1s, got "${text("timeout")}"`);
  const state = text("state");
  if (state !== undefined && !["ready", "deferred", "held"].includes(state)) throw new UsageError(`--state: expected ready, deferred or held, got "${state}"`);

  const [domainRef, ...queueIds] = args;
  const selector: QueueRequestSelector = {};
  const sender = text("sender");
  const recipient = text("recipient");
  if (sender !== undefined) selector.sender = sender;
  if (recipient !== undefined) selector.recipient = recipient;
  if (action === "find") {
    if (queueIds.length > 0) throw new UsageError("find: expected at most one DOMAINREF");
    for (const flag of ["all", "older-than", "state"]) if (values[flag] !== undefined) throw new UsageError(`find does not take --${flag}`);
    const messageId = text("message-id");
    if (messageId !== undefined) selector.messageId = messageId;
    const since = duration("since", text("since"));
    if (since !== undefined) selector.since = since;
    if (messageId === undefined && sender === undefined && recipient === undefined) throw new UsageError("find: give --message-id, --sender or --recipient");
  } else {
    if (domainRef === undefined) throw new UsageError(`queue ${action}: expected DOMAINREF, the name of a RelayDomain`);
    for (const flag of ["message-id", "since"]) if (values[flag] !== undefined) throw new UsageError(`--${flag} is for find`);
    const olderThan = duration("older-than", text("older-than"));
    if (olderThan !== undefined) selector.olderThan = olderThan;
    if (state !== undefined) selector.state = state as NonNullable<QueueRequestSelector["state"]>;
    if (action === "list") {
      if (queueIds.length > 0) selector.queueIds = queueIds;
      if (values.all !== undefined) throw new UsageError("queue list shows every matching message already: no --all");
    } else {
      if (queueIds.length > 0 === (values.all === true)) throw new UsageError(`queue ${action}: give either --all or QUEUEID...`);
      if (values.all === true) selector.all = true;
      else selector.queueIds = [...new Set(queueIds)];
    }
  }

  const kubectlFlags: string[] = [];
  for (const flag of KUBECTL_FLAGS) {
    const value = text(flag);
    if (value !== undefined) kubectlFlags.push(`--${flag}=${value}`);
  }
  if (values["insecure-skip-tls-verify"] === true) kubectlFlags.push("--insecure-skip-tls-verify=true");
  return { action, domainRef, selector, kubectlFlags, output, timeoutMs: timeout };
}
