// Entry point of relay/bin/mxwarden-queue. Results go to stdout (a table, or JSON with --json);
// the audit line of every action goes to stderr as JSON, with who acted and what it touched.
// Secrets (passwords, credentials) are never printed.

import { userInfo } from "node:os";
import { batchedLineWriter, createLogger } from "../log.ts";
import { QUEUE_USAGE, QueueUsageError, parseQueueArgs, type QueueCliConfig } from "./cli.ts";
import { QueueAdmin, QueueAdminError } from "./queue-admin.ts";
import { formatQueueTable, formatTrackingTable } from "./tables.ts";

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

const audit = createLogger({ service: "mxwarden-queue" }, "info", batchedLineWriter(process.stderr));

function print(config: QueueCliConfig, json: unknown, human: () => string): void {
  process.stdout.write(config.json ? `${JSON.stringify(json, null, 2)}\n` : human());
}

async function run(config: QueueCliConfig): Promise<number> {
  const { connection } = config;
  const admin = await QueueAdmin.connect({
    servers: connection.servers,
    actor: config.actor,
    timeoutMs: connection.timeoutMs,
    ...(connection.user !== undefined ? { user: connection.user, pass: connection.pass ?? "" } : {}),
    ...(connection.credsFile ? { credsFile: connection.credsFile } : {}),
    ...(connection.caFile ? { caFile: connection.caFile } : {}),
    ...(config.hostname ? { hostname: config.hostname } : {}),
  });
  try {
    const command = config.run;
    switch (command.command) {
      case "list": {
        const messages = await admin.list(command.selector);
        print(config, messages, () => formatQueueTable(messages));
        return 0;
      }
      case "show": {
        const shown = await admin.show(command.queueId, { headers: command.headers });
        if (!shown) {
          process.stderr.write(`mxwarden-queue: no queued message with id ${command.queueId} (it may have left the queue: try find)\n`);
          return 1;
        }
        print(config, shown, () => {
          const m = shown.message;
          const lines = [
            `queue id:      ${m.queueId}`,
            `state:         ${m.state}`,
            `domain:        ${m.domain}`,
            `sender:        ${m.sender || "<>"}`,
            `recipients:    ${m.recipients.join(", ")}`,
            `arrived:       ${m.arrivedAt}`,
            `size:          ${m.size}`,
            `attempts:      ${m.attempts}`,
            ...(m.nextAttemptAt ? [`next attempt:  ${m.nextAttemptAt}`] : []),
            ...(m.lastError ? [`last error:    ${m.lastError}`] : []),
            "history:",
            ...shown.history.map((h) => `  ${h.at}  ${h.event}${h.detail ? `: ${h.detail}` : ""}`),
          ];
          if (shown.headers !== undefined) lines.push("headers:", shown.headers.replace(/\r\n$/, "").replace(/\r\n/g, "\n"));
          return `${lines.join("\n")}\n`;
        });
        return 0;
      }
      case "act": {
        const result = await admin.act(command.action, command.selector);
        audit.info("queue action", {
          actor: config.actor,
          action: command.action,
          selector: command.selector,
          matched: result.matched,
          done: result.done,
          skipped: result.skipped,
        });
        print(config, result, () => {
          const lines = [`${command.action}: ${result.done.length} of ${result.matched} matched message${result.matched === 1 ? "" : "s"}`];
          for (const id of result.done) lines.push(`  ${id}  done`);
          for (const s of result.skipped) lines.push(`  ${s.queueId}  skipped: ${s.reason}`);
          return `${lines.join("\n")}\n`;
        });
        const unknown = result.skipped.some((s) => s.reason.startsWith("not queued"));
        return unknown ? 1 : 0;
      }
      case "takeover": {
        const result = await admin.takeOver(command.peer);
        audit.info("takeover", { actor: config.actor, peer: command.peer, ...result });
        print(config, result, () => `takeover of ${command.peer}: ${result.taken} queued here, ${result.already} taken over before, ${result.failed} failed\n`);
        return result.failed > 0 ? 1 : 0;
      }
      case "find": {
        const records = await admin.find(command.query);
        print(config, records, () => formatTrackingTable(records));
        return 0;
      }
    }
  } finally {
    await admin.close();
  }
}

async function main(): Promise<number> {
  let config: QueueCliConfig | "help";
  try {
    config = parseQueueArgs(process.argv.slice(2), process.env, osUser());
  } catch (err) {
    if (!(err instanceof QueueUsageError)) throw err;
    process.stderr.write(`mxwarden-queue: ${err.message}\n\n${QUEUE_USAGE}`);
    return 2;
  }
  if (config === "help") {
    process.stdout.write(QUEUE_USAGE);
    return 0;
  }
  try {
    return await run(config);
  } catch (err) {
    const usage = err instanceof QueueAdminError && err.usage;
    process.stderr.write(`mxwarden-queue: ${(err as Error).message}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await main();
