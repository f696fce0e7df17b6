// A real Prometheus server (Debian package prometheus) for tests: scrapes the given targets every
// second, evaluates the given rule files every second, and answers its HTTP API on loopback.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { eventually, freePort } from "./workspace.ts";

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing";
}

function prometheusBinary(): string {
  for (const path of ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]) if (existsSync(path)) return path;
  throw new Error("prometheus not found; run 'make deps' (Debian package prometheus)");
}

export class TestPrometheus {
  readonly port: number;
  private readonly process: TestProcess;

  private constructor(port: number, process: TestProcess) {
    this.port = port;
    this.process = process;
  }

  /** `jobs` maps a scrape job name to its host:port targets. */
  static async start(dir: string, jobs: Record<string, string[]>, ruleFiles: string[]): Promise<TestPrometheus> {
    mkdirSync(join(dir, "data"), { recursive: true });
    const config = join(dir, "prometheus.yml");
    // JSON is YAML: no hand-written indentation to get wrong.
    writeFileSync(
      config,
      JSON.stringify(
        {
          global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
          rule_files: ruleFiles,
          scrape_configs: Object.entries(jobs).map(([job, targets]) => ({ job_name: job, static_configs: [{ targets }] })),
        },
        null,
        2,
      ),
    );
    const port = await freePort();
    const process = new TestProcess(
      prometheusBinary(),
      [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
      { logFile: join(dir, "prometheus.log") },
    );
    const prometheus = new TestPrometheus(port, process);
    await eventually("prometheus to be ready", async () => (await fetch(`${prometheus.url}/-/ready`).catch(() => undefined))?.ok, 60_000, 200);
    return prometheus;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async alerts(): Promise<PrometheusAlert[]> {
    const response = await fetch(`${this.url}/api/v1/alerts`);
    const body = (await response.json()) as { status: string; data: { alerts: PrometheusAlert[] } };
    if (body.status !== "success") throw new Error(`/api/v1/alerts answered ${body.status}`);
    return body.data.alerts;
  }

  /** Instant query; the samples' values as numbers. */
  async query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await response.json()) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (body.status !== "success") throw new Error(`query ${expr} answered ${body.status}`);
    return body.data.result.map((sample) => ({ metric: sample.metric, value: Number(sample.value[1]) }));
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}
