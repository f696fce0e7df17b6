// `make run`: a working backup MX on this machine. It starts a stand-in primary that prints what
// it receives, then the relay in its embedded mode (its own nats-server under .data/), and prints
// a swaks command that sends a message through it. Ctrl-C stops everything cleanly.

import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { SMTPServer } from "smtp-server";

const root = resolve(import.meta.dirname, "../..");
const dataDir = join(root, ".data");
const primaryPort = 2600;

function startStandInPrimary(): Promise<SMTPServer> {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["AUTH", "STARTTLS"],
    logger: false,
    size: 200 * 1024 * 1024,
    onData(stream, session, callback) {
      let size = 0;
      let head = "";
      stream.on("data", (chunk: Buffer) => {
        if (head.length < 4096) head += chunk.toString("utf8");
        size += chunk.length;
      });
      stream.on("end", () => {
        const headers = head.split("\r\n\r\n")[0] ?? "";
        process.stdout.write(
          `\n[primary] message from <${session.envelope.mailFrom ? session.envelope.mailFrom.address : ""}>` +
            ` to ${session.envelope.rcptTo.map((r) => `<${r.address}>`).join(", ")}, ${size} bytes\n` +
            headers
              .split("\r\n")
              .map((line) => `[primary]   ${line}`)
              .join("\n") +
            "\n",
        );
        callback(null, "2.0.0 Ok: received by the stand-in primary");
      });
    },
  });
  return new Promise((resolveServer, reject) => {
    server.server.once("error", reject);
    server.listen(primaryPort, "127.0.0.1", () => resolveServer(server));
  });
}

async function main(): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  const primary = await startStandInPrimary();
  process.stdout.write(`[primary] stand-in primary for example.com listening on 127.0.0.1:${primaryPort}\n`);

  const logPath = join(dataDir, "relay.log");
  const relay = spawn(
    join(root, "relay/bin/mxwarden-relay"),
    [
      "--listen",
      "127.0.0.1:2525",
      "--hostname",
      "backup-mx.localhost",
      "--domains",
      join(root, "relay/dev/example-com.yaml"),
      "--metrics",
      "127.0.0.1:9464",
      "--data",
      dataDir,
      "--probe-interval",
      "2s",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const log = createWriteStream(logPath, { flags: "a" });
  let partial = "";
  relay.stdout.setEncoding("utf8");
  relay.stdout.on("data", (chunk: string) => {
    log.write(chunk);
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const { time: _time, level, msg, service: _service, component: _component, ...fields } = record;
      if (level === "debug") continue;
      process.stdout.write(`[relay] ${String(level)}: ${String(msg)} ${JSON.stringify(fields)}\n`);
      if (msg === "relay started") {
        process.stdout.write(
          [
            "",
            "Backup MX for example.com is up: SMTP on 127.0.0.1:2525, metrics on http://127.0.0.1:9464/metrics",
            `Full relay log: ${logPath}`,
            "Send a test message through it:",
            "",
            "  swaks --server 127.0.0.1:2525 --from you@client.example --to postmaster@example.com",
            "",
            "Press Ctrl-C to stop.",
            "",
          ].join("\n"),
        );
      }
    }
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    relay.kill("SIGTERM");
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  relay.on("exit", (code) => {
    primary.close(() => process.exit(stopping ? 0 : (code ?? 1)));
  });
}

await main();
