// Runs the configured filters of a stage in their declared order and stops at the first one that
// refuses the message. Each filter's verdicts and time are counted under its own name.

import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { AnyFilter, MessageFilter, MessageUnderScan, RecipientUnderCheck, RecipientVerdict, Verdict } from "./filter.ts";

export interface PipelineResult {
  verdict: Verdict;
  filter?: string | undefined;
  /** Header lines the filters want in front of the message (CRLF-terminated), or "". */
  headers: string;
}

/**
 * Header fields in front of the message. Values may be folded (CRLF followed by a space or tab,
 * as Authentication-Results usually is); any other control character becomes a space, and no
 * physical line may exceed RFC 5322's 998 octets.
 */
function renderHeaders(fields: ReadonlyArray<readonly [string, string]>): string {
  return fields
    .filter(([name]) => /^[!-9;-~]{1,76}$/.test(name))
    .map(([name, value]) => {
      const folded = value
        .replace(/\r\n(?=[ \t])/g, "\u0000")
        .replace(/[\x01-\x1f\x7f]+/g, " ")
        .split("\u0000");
      return `${name}: ${folded.map((line) => line.slice(0, 990)).join("\r\n")}\r\n`;
    })
    .join("");
}

export class FilterPipeline {
  private readonly filters: readonly AnyFilter[];
  private readonly metrics: RelayMetrics;
  private readonly log: Logger;

  constructor(filters: readonly AnyFilter[], metrics: RelayMetrics, log: Logger) {
    this.filters = filters;
    this.metrics = metrics;
    this.log = log.child({ component: "filters" });
  }

  get hasMessageFilters(): boolean {
    return this.filters.some((filter) => filter.stage === "data");
  }

  get hasRecipientFilters(): boolean {
    return this.filters.some((filter) => filter.stage === "rcpt");
  }

  /**
   * Judge one recipient at RCPT time; the first refusal wins. After an `allow` verdict the filters
   * the allow list covers are skipped, and the result is that `allow` (the receiver remembers it for DATA).
   */
  async runRcpt(recipient: RecipientUnderCheck): Promise<RecipientVerdict> {
    let allowed: RecipientVerdict | undefined;
    for (const filter of this.filters) {
      if (filter.stage !== "rcpt" || (allowed && filter.bypassedByAllowList)) continue;
      const verdict = await this.timed(filter.name, () => filter.check(recipient));
      if (verdict.action === "allow") {
        allowed ??= verdict;
      } else if (verdict.action !== "continue") {
        this.log.info("recipient refused by a filter", {
          filter: filter.name,
          verdict: verdict.action,
          reason: verdict.reason,
          client: recipient.clientAddress,
          recipient: recipient.recipient,
        });
        return verdict;
      }
    }
    return allowed ?? { action: "continue" };
  }

  private async timed<V extends RecipientVerdict>(name: string, check: () => Promise<V>): Promise<V> {
    const started = performance.now();
    const verdict = await check();
    this.metrics.filterDuration.observe({ filter: name }, (performance.now() - started) / 1000);
    this.metrics.filterVerdicts.inc({ filter: name, verdict: verdict.action });
    return verdict;
  }

  /**
   * Judge a stored message. The filters read it independently, so they run at the same time (the
   * message waits for the slowest, not for the sum); their verdicts are still taken in declared
   * order, and the first refusal wins. A message whose every recipient was allowed skips the
   * filters the allow list covers.
   */
  async runData(message: MessageUnderScan): Promise<PipelineResult> {
    const running = this.filters
      .filter((filter): filter is MessageFilter => filter.stage === "data" && !(message.allowed && filter.bypassedByAllowList))
      .map((filter) => ({ name: filter.name, verdict: this.timed(filter.name, () => filter.check(message)) }));
    // A refusal returns before later verdicts are read: their failures must not go unhandled.
    for (const { verdict } of running) verdict.catch(() => undefined);
    const added: Array<readonly [string, string]> = [];
    for (const { name, verdict: pending } of running) {
      const verdict = await pending;
      if (verdict.action !== "continue") {
        this.log.info("message refused by a filter", {
          queueId: message.queueId,
          filter: name,
          verdict: verdict.action,
          reason: verdict.reason,
          client: message.clientAddress,
        });
        return { verdict, filter: name, headers: "" };
      }
      added.push(...(verdict.headers ?? []));
    }
    return { verdict: { action: "continue" }, headers: renderHeaders(added) };
  }
}
