// Content scoring with rspamd over its HTTP protocol (/checkv2): the stored message is streamed to
// rspamd with the envelope, client IP and HELO, and rspamd's score and action decide during the
// SMTP dialogue. The result travels to the primary as an X-Spam-Status header.

import { request } from "node:http";
import type { AntispamPolicy } from "../config/relay-domain.ts";
import { antispamPolicy } from "#api";
import { RSPAMD_TIMEOUT_MS } from "../deliver/delivery-timing.ts";
import type { FilterModule, MessageFilter, MessageUnderScan, Verdict } from "./filter.ts";

interface RspamdReply {
  score: number;
  required_score?: number;
  action: string;
}

function isRspamdReply(value: unknown): value is RspamdReply {
  return typeof value === "object" && value !== null && typeof (value as RspamdReply).score === "number" && typeof (value as RspamdReply).action === "string";
}

export class RspamdFilter implements MessageFilter {
  readonly name = "antispam";
  readonly stage = "data" as const;
  readonly bypassedByAllowList = true;
  private readonly url: URL;
  private readonly timeoutMs: number;
  private readonly policyFor: (domain: string) => AntispamPolicy | undefined;

  constructor(url: URL, timeoutMs: number, policyFor: (domain: string) => AntispamPolicy | undefined) {
    this.url = new URL("/checkv2", url);
    this.timeoutMs = timeoutMs;
    this.policyFor = policyFor;
  }

  async check(message: MessageUnderScan): Promise<Verdict> {
    const policies = message.domains.map(this.policyFor).filter((p): p is AntispamPolicy => p?.enabled === true);
    if (policies.length === 0) return { action: "continue" };
    let reply: RspamdReply;
    try {
      reply = await this.ask(message);
    } catch (err) {
      if (policies.some((p) => p.onError === "tempfail")) {
        const problem = err instanceof Error ? err.message : String(err);
        return {
          action: "tempfail",
          unavailable: true,
          reason: `rspamd failed: ${problem}`,
          reply: { code: 451, enhanced: "4.7.1", text: "Content filter unavailable, try again later" },
        };
      }
      return { action: "continue", headers: [["X-Spam-Status", "Unknown, content filter unavailable"]] };
    }
    const score = Math.round(reply.score * 100) / 100;
    // A domain's own thresholds replace rspamd's actions; the strictest domain of the message wins.
    const rejects = policies.some((p) => (p.rejectScore !== undefined ? score >= p.rejectScore : reply.action === "reject"));
    if (rejects) {
      return { action: "reject", reason: `spam score ${score} (${reply.action})`, reply: { code: 554, enhanced: "5.7.1", text: "Message rejected as spam" } };
    }
    if (reply.action === "soft reject") {
      return {
        action: "tempfail",
        reason: `rspamd soft reject, score ${score}`,
        reply: { code: 451, enhanced: "4.7.1", text: "Message deferred by the content filter, try again later" },
      };
    }
    const marked = policies.some((p) =>
      p.addHeaderScore !== undefined ? score >= p.addHeaderScore : reply.action === "add header" || reply.action === "rewrite subject",
    );
    return {
      action: "continue",
      headers: [["X-Spam-Status", `${marked ? "Yes" : "No"}, score=${score} action=${reply.action}`]],
    };
  }

  private ask(message: MessageUnderScan): Promise<RspamdReply> {
    return new Promise((resolve, reject) => {
      const req = request(
        this.url,
        {
          method: "POST",
          timeout: this.timeoutMs,
          headers: {
            "Content-Length": String(message.size),
            IP: message.clientAddress,
            Helo: message.heloName || "unknown",
            From: message.sender,
            Rcpt: [...message.recipients],
            "Queue-Id": message.queueId,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            if (res.statusCode !== 200) return reject(new Error(`rspamd answered HTTP ${res.statusCode ?? "?"}`));
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              return reject(new Error("rspamd answered something other than JSON"));
            }
            if (!isRspamdReply(parsed)) return reject(new Error("rspamd reply lacks score or action"));
            resolve(parsed);
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`rspamd did not answer within ${this.timeoutMs} ms`)));
      req.on("error", reject);
      const body = message.open();
      body.on("error", (err) => req.destroy(err));
      body.pipe(req);
    });
  }
}

export const antispamFilter: FilterModule = {
  name: "antispam",
  stage: "data",
  spec: { field: "antispam", schema: antispamPolicy },
  create: ({ config, policyFor }) => (config.rspamd ? new RspamdFilter(config.rspamd, RSPAMD_TIMEOUT_MS, (domain) => policyFor(domain)?.antispam) : undefined),
};
