// Runs relay/bin/mxwarden-relay exactly as a user would, and reads what it prints and exports.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RelayDomainSpec as ApiRelayDomainSpec } from "#api";
import { TestProcess } from "./child.ts";
import { repoRoot } from "./workspace.ts";

/** A RelayDomain spec (the one type from #api), with the resource's name when it is not derived from the domain. */
export type RelayDomainSpec = ApiRelayDomainSpec & { name?: string };

/** A RelayDomain document as a user would kubectl apply it (JSON is valid YAML). */
export function relayDomainYaml(spec: RelayDomainSpec): string {
  const { name, ...rest } = spec;
  return `${JSON.stringify(
    {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name: name ?? spec.domain.replace(/[^a-z0-9]+/g, "-") },
      spec: rest,
    },
    null,
    2,
  )}\n`;
}

export function writeDomains(path: string, specs: RelayDomainSpec[]): void {
  writeFileSync(path, specs.map(relayDomainYaml).join("---\n"));
}

export interface RelayOptions {
  dir: string;
  /** A file or directory of RelayDomains; absent when `args` name another source (--domains-configmaps). */
  domainsPath?: string;
  nats?: string | undefined;
  hostname?: string;
  args?: string[];
  /** Port for SMTP; 0 picks a free one. Fixed ports let a restarted relay keep its address. */
  smtpPort?: number;
}

export class RelayProcess {
  readonly process: TestProcess;
  smtpPort = 0;
  metricsPort = 0;

  private constructor(process: TestProcess) {
    this.process = process;
  }

  static async start(options: RelayOptions): Promise<RelayProcess> {
    const args = [
      "--listen",
      `127.0.0.1:${options.smtpPort ?? 0}`,
      "--hostname",
      options.hostname ?? "backup-mx.test",
      ...(options.domainsPath === undefined ? [] : ["--domains", options.domainsPath]),
      "--metrics",
      "127.0.0.1:0",
      "--data",
      join(options.dir, "data"),
      ...(options.nats ? ["--nats", options.nats] : []),
      ...(options.args ?? []),
    ];
    const child = new TestProcess(join(repoRoot, "relay/bin/mxwarden-relay"), args, {
      logFile: join(options.dir, "relay.log"),
      env: { ...process.env, MXWARDEN_LOG_LEVEL: process.env.MXWARDEN_LOG_LEVEL ?? "info" },
    });
    const relay = new RelayProcess(child);
    const started = JSON.parse(await child.waitForLine(/"msg":"relay started"/, 60_000)) as { smtp: string; metrics: string };
    relay.smtpPort = Number(started.smtp.split(":").pop());
    relay.metricsPort = Number(started.metrics.split(":").pop());
    return relay;
  }

  /** Resolves once /readyz says the relay can take mail. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const response = await fetch(`http://127.0.0.1:${this.metricsPort}/readyz`).catch(() => undefined);
      if (response?.ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("relay did not become ready");
  }

  async metricsText(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    return response.text();
  }

  /** Value of one sample, e.g. metric("mxwarden_messages_rejected_total", 'reason="size"'). */
  async metric(name: string, labels = ""): Promise<number> {
    const text = await this.metricsText();
    const wanted = labels ? `${name}{${labels}}` : name;
    for (const line of text.split("\n")) {
      const space = line.lastIndexOf(" ");
      if (space > 0 && line.slice(0, space) === wanted) return Number(line.slice(space + 1));
    }
    return 0;
  }

  /** Log records (JSON lines) whose msg matches. */
  logRecords(msg: string): Array<Record<string, unknown>> {
    return this.process.lines.filter((line) => line.includes(`"msg":"${msg}"`)).map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  stop(): Promise<void> {
    return this.process.stop(60_000);
  }

  kill9(): Promise<void> {
    return this.process.kill9();
  }
}
