// Antivirus at the door: the stored message is streamed to clamd (INSTREAM, never buffered whole)
// before the 250. A virus is refused with 554 5.7.1 and its signature name; a scanner that cannot
// answer refuses for now (451 4.7.1) unless every domain of the message chose to fail open.

import clamd, { type ClamdScanner } from "clamdjs";
import type { AntivirusPolicy } from "../config/relay-domain.ts";
import { antivirusPolicy } from "#api";
import { CLAMD_TIMEOUT_MS } from "../deliver/delivery-timing.ts";
import type { FilterModule, MessageFilter, MessageUnderScan, Verdict } from "./filter.ts";

export interface ClamdEndpoint {
  host: string;
  port: number;
}

const FOUND = /^stream: (.+) FOUND\0?\s*$/;
const CLEAN = /^stream: OK\0?\s*$/;

/** The strictest choice wins when a message goes to several domains. */
function strictest<T extends string>(choices: T[], order: readonly T[]): T | undefined {
  return order.find((choice) => choices.includes(choice));
}

export class ClamdFilter implements MessageFilter {
  readonly name = "antivirus";
  readonly stage = "data" as const;
  private readonly scanner: ClamdScanner;
  private readonly timeoutMs: number;
  private readonly policyFor: (domain: string) => AntivirusPolicy | undefined;

  constructor(endpoint: ClamdEndpoint, timeoutMs: number, policyFor: (domain: string) => AntivirusPolicy | undefined) {
    this.scanner = clamd.createScanner(endpoint.host, endpoint.port);
    this.timeoutMs = timeoutMs;
    this.policyFor = policyFor;
  }

  async check(message: MessageUnderScan): Promise<Verdict> {
    const policies = message.domains.map(this.policyFor).filter((p): p is AntivirusPolicy => p?.enabled === true);
    if (policies.length === 0) return { action: "continue" };
    if (message.size > Math.min(...policies.map((p) => p.maxScanBytes))) {
      const choice = strictest(
        policies.map((p) => p.onOversize),
        ["reject", "tempfail", "accept"] as const,
      );
      if (choice === "reject")
        return { action: "reject", reason: "too_large_to_scan", reply: { code: 552, enhanced: "5.3.4", text: "Message too large to be scanned for viruses" } };
      if (choice === "tempfail")
        return {
          action: "tempfail",
          reason: "too_large_to_scan",
          reply: { code: 452, enhanced: "4.3.4", text: "Message too large to be scanned for viruses now" },
        };
      return { action: "continue" };
    }
    let reply: string;
    try {
      reply = await this.scanner.scanStream(message.open(), this.timeoutMs);
    } catch (err) {
      return this.scannerFailed(policies, err instanceof Error ? err.message : String(err));
    }
    const found = FOUND.exec(reply);
    if (found?.[1]) {
      const signature = found[1].replace(/[^\x21-\x7e ]/g, "?").slice(0, 200);
      return { action: "reject", reason: `virus ${signature}`, reply: { code: 554, enhanced: "5.7.1", text: `Message rejected: virus found (${signature})` } };
    }
    if (CLEAN.test(reply)) return { action: "continue" };
    return this.scannerFailed(policies, `unexpected clamd reply: ${reply.replace(/[\0\r\n]+/g, " ").slice(0, 200)}`);
  }

  private scannerFailed(policies: AntivirusPolicy[], problem: string): Verdict {
    if (policies.some((p) => p.onError === "tempfail")) {
      return {
        action: "tempfail",
        unavailable: true,
        reason: `scanner failed: ${problem}`,
        reply: { code: 451, enhanced: "4.7.1", text: "Virus scanner unavailable, try again later" },
      };
    }
    return { action: "continue" };
  }
}

export const antivirusFilter: FilterModule = {
  name: "antivirus",
  stage: "data",
  spec: { field: "antivirus", schema: antivirusPolicy },
  create: ({ config, policyFor }) => (config.clamd ? new ClamdFilter(config.clamd, CLAMD_TIMEOUT_MS, (domain) => policyFor(domain)?.antivirus) : undefined),
};
