// Runs operator/bin/mxwarden-operator as a user would, against a test control plane.

import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { repoRoot } from "./workspace.ts";

export interface OperatorOptions {
  dir: string;
  kubeconfigPath: string;
  namespace: string;
  identity: string;
  args?: string[];
}

export class OperatorProcess {
  readonly process: TestProcess;
  readonly metricsPort: number;

  private constructor(process: TestProcess, metricsPort: number) {
    this.process = process;
    this.metricsPort = metricsPort;
  }

  static async start(options: OperatorOptions): Promise<OperatorProcess> {
    const child = new TestProcess(
      join(repoRoot, "operator/bin/mxwarden-operator"),
      [
        `--namespace=${options.namespace}`,
        `--kubeconfig=${options.kubeconfigPath}`,
        "--metrics=127.0.0.1:0",
        "--poll-interval=1s",
        "--site-health-interval=1s",
        ...(options.args ?? []),
      ],
      {
        logFile: join(options.dir, `operator-${options.identity}.log`),
        env: { ...process.env, POD_NAME: options.identity },
      },
    );
    const started = JSON.parse(await child.waitForLine(/"msg":"operator started"/, 60_000)) as { metrics: string };
    return new OperatorProcess(child, Number(started.metrics.split(":").pop()));
  }

  async metricsText(): Promise<string> {
    return await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
  }

  /** Sum of the samples of `name` whose labels contain `labels` (e.g. 'site="a"'). */
  async metric(name: string, labels = ""): Promise<number> {
    let total = 0;
    for (const line of (await this.metricsText()).split("\n")) {
      const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!match || match[1] !== name || !(match[2] ?? "").includes(labels)) continue;
      total += Number(match[3]);
    }
    return total;
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }

  async kill9(): Promise<void> {
    await this.process.kill9();
  }
}
