// Runs the configured filters of a stage in their declared order and stops at the first one that
// refuses the message. Each filter's verdicts and time are counted under its own name.

import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { MessageFilter, MessageUnderScan, Verdict } from "./filter.ts";

export interface PipelineResult {
  verdict: Verdict;
  filter?: string | undefined;
  /** Header lines the filters want in front of the message (CRLF-terminated), or "". */
  headers: string;
}

/** One header field per line; names and values come from our filters, but are made safe anyway. */
function renderHeaders(fields: ReadonlyArray<readonly [string, string]>): string {
  return fields
    .filter(([name]) => /^[!-9;-~]{1,76}$/.test(name))
    .map(([name, value]) => `${name}: ${value.replace(/[\x00-\x1f\x7f]+/g, " ").slice(0, 900)}\r\n`)
    .join("");
}

export class FilterPipeline {
  private readonly filters: readonly MessageFilter[];
  private readonly metrics: RelayMetrics;
  private readonly log: Logger;

  constructor(filters: readonly MessageFilter[], metrics: RelayMetrics, log: Logger) {
    this.filters = filters;
    this.metrics = metrics;
    this.log = log.child({ component: "filters" });
  }

  get empty(): boolean {
    return this.filters.length === 0;
  }

  async runData(message: MessageUnderScan): Promise<PipelineResult> {
    const added: Array<readonly [string, string]> = [];
    for (const filter of this.filters) {
      if (filter.stage !== "data") continue;
      const started = performance.now();
      const verdict = await filter.check(message);
      this.metrics.filterDuration.observe({ filter: filter.name }, (performance.now() - started) / 1000);
      this.metrics.filterVerdicts.inc({ filter: filter.name, verdict: verdict.action });
      if (verdict.action !== "continue") {
        this.log.info("message refused by a filter", { queueId: message.queueId, filter: filter.name, verdict: verdict.action, reason: verdict.reason, client: message.clientAddress });
        return { verdict, filter: filter.name, headers: "" };
      }
      added.push(...(verdict.headers ?? []));
    }
    return { verdict: { action: "continue" }, headers: renderHeaders(added) };
  }
}
