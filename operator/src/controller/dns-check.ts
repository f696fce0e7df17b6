// The DNSConfigured condition: does the domain's published MX set send mail to our sites as
// backups? Our hosts must be listed, and at a larger preference value (lower priority) than the
// primary's lowest one; otherwise senders would either never reach us or prefer us over the primary.

import { Resolver } from "node:dns/promises";

export interface DnsVerdict {
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
}

export function judgeMxRecords(records: { exchange: string; priority: number }[], ourHosts: string[]): DnsVerdict {
  const ours = new Set(ourHosts.map((h) => h.toLowerCase().replace(/\.$/, "")));
  const normalised = records.map((r) => ({ host: r.exchange.toLowerCase().replace(/\.$/, ""), priority: r.priority }));
  const primaries = normalised.filter((r) => !ours.has(r.host));
  const backups = normalised.filter((r) => ours.has(r.host));
  if (primaries.length === 0) return { status: "False", reason: "NoPrimaryMX", message: "the MX records list no primary besides our sites" };
  const missing = [...ours].filter((host) => !backups.some((b) => b.host === host));
  if (missing.length > 0) return { status: "False", reason: "SitesNotInMX", message: `MX records do not list ${missing.join(", ")}` };
  const best = Math.min(...primaries.map((p) => p.priority));
  const tooHigh = backups.filter((b) => b.priority <= best);
  if (tooHigh.length > 0) {
    return {
      status: "False",
      reason: "BackupPreferredOverPrimary",
      message: `${tooHigh.map((b) => `${b.host} (${b.priority})`).join(", ")} must have a larger preference than the primary's ${best}`,
    };
  }
  return { status: "True", reason: "MXListsSites", message: `primary preference ${best}; our sites at ${backups.map((b) => b.priority).join(", ")}` };
}

export class DnsChecker {
  private readonly resolver = new Resolver({ timeout: 3000, tries: 2 });
  private readonly cache = new Map<string, { at: number; verdict: DnsVerdict }>();
  private readonly ttlMs: number;

  constructor(servers: string[] | undefined, ttlMs: number) {
    if (servers && servers.length > 0) this.resolver.setServers(servers);
    this.ttlMs = ttlMs;
  }

  async check(domain: string, ourHosts: string[]): Promise<DnsVerdict> {
    const key = `${domain}|${[...ourHosts].sort().join(",")}`;
    const cached = this.cache.get(key);
    if (cached && Date.now() - cached.at < this.ttlMs) return cached.verdict;
    let verdict: DnsVerdict;
    try {
      verdict = judgeMxRecords(await this.resolver.resolveMx(domain), ourHosts);
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      verdict =
        code === "ENOTFOUND" || code === "ENODATA"
          ? { status: "False", reason: "NoMXRecords", message: `${domain} publishes no MX records` }
          : { status: "Unknown", reason: "LookupFailed", message: `MX lookup failed: ${code || String(err)}` };
    }
    this.cache.set(key, { at: Date.now(), verdict });
    return verdict;
  }
}
