// Greylisting at RCPT time: the first attempt of an unknown (client network, sender, recipient)
// triplet gets 451 4.7.1; a retry after the domain's delay passes, and then the client network and
// sender domain pass without delay for a while. The triplets live in a NATS KV bucket, so every
// relay of a site shares them (and, with --site/--peer-sites, every site): the retry may reach any relay.

import { createHash } from "node:crypto";
import { BlockList, isIPv6 } from "node:net";
import type { GreylistPolicy } from "../config/relay-domain.ts";
import type { Logger } from "../log.ts";
import type { QueueConnection } from "../queue/index.ts";
import { ipv6Groups, plainAddress } from "./client-address.ts";
import { greylistingPolicy } from "#api";
import type { FilterModule, RecipientFilter, RecipientUnderCheck, Verdict } from "./filter.ts";
import type { KvEntry } from "@nats-io/kv";
import { SharedBucket, type SiteTopology } from "./shared-bucket.ts";

export const GREYLIST_BUCKET = "mxw-greylist";
/** The bucket's own limit; each entry carries its shorter TTL. */
const BUCKET_MAX_AGE_MS = 61 * 86_400_000;

/** The /24 (IPv4) or /64 (IPv6) a client address belongs to: senders retry from pools. */
export function clientNetwork(address: string): string {
  const plain = plainAddress(address);
  if (isIPv6(plain)) {
    return `${ipv6Groups(plain)
      .slice(0, 4)
      .map((g) => Number.parseInt(g, 16).toString(16))
      .join(":")}::/64`;
  }
  return `${plain.split(".").slice(0, 3).join(".")}.0/24`;
}

function key(prefix: string, ...parts: string[]): string {
  return `${prefix}.${createHash("sha256").update(parts.join("\u0000").toLowerCase()).digest("hex").slice(0, 40)}`;
}

/** An entry that holds a value (an expired or purged one leaves a marker behind). */
function isLive(entry: KvEntry | null): entry is KvEntry {
  return entry !== null && entry.operation === "PUT";
}

function seconds(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

export class GreylistFilter implements RecipientFilter {
  readonly name = "greylist";
  readonly stage = "rcpt" as const;
  readonly bypassedByAllowList = true;
  private readonly store: SharedBucket;
  private readonly allowLists = new WeakMap<GreylistPolicy, BlockList>();
  private readonly policyFor: (domain: string) => GreylistPolicy | undefined;
  private readonly log: Logger;

  constructor(queue: QueueConnection, replicas: number, policyFor: (domain: string) => GreylistPolicy | undefined, log: Logger, sites?: SiteTopology) {
    this.store = new SharedBucket(queue, GREYLIST_BUCKET, replicas, BUCKET_MAX_AGE_MS, sites);
    this.policyFor = policyFor;
    this.log = log.child({ component: "greylist" });
  }

  async check(rcpt: RecipientUnderCheck): Promise<Verdict> {
    const policy = this.policyFor(rcpt.domain);
    if (!policy?.enabled || this.allowed(policy, rcpt)) return { action: "continue" };
    const network = clientNetwork(rcpt.clientAddress);
    const senderDomain = rcpt.sender.slice(rcpt.sender.lastIndexOf("@") + 1);
    try {
      const allowKey = key("a", network, senderDomain);
      if (isLive(await this.store.get(allowKey))) return { action: "continue" };
      const tripletKey = key("t", network, rcpt.sender, rcpt.recipient);
      const entry = await this.store.get(tripletKey);
      const now = Date.now();
      if (!isLive(entry)) {
        // create() fails if another relay stored the triplet a moment ago: its time counts then.
        await this.store.create(tripletKey, String(now), seconds(policy.expiryMs)).catch(() => undefined);
        return this.greylisted(policy.delayMs);
      }
      const firstSeen = Number(entry.string());
      if (now - firstSeen < policy.delayMs) return this.greylisted(policy.delayMs - (now - firstSeen));
      await this.store.create(allowKey, String(now), seconds(policy.autoAllowMs)).catch(() => undefined);
      return { action: "continue" };
    } catch (err) {
      // Greylisting only delays; without its store it steps aside rather than refuse mail.
      this.store.reset();
      this.log.warn("greylist store unavailable; passing the recipient", { error: err });
      return { action: "continue" };
    }
  }

  private greylisted(waitMs: number): Verdict {
    return {
      action: "tempfail",
      reason: "greylisted",
      reply: { code: 451, enhanced: "4.7.1", text: `Greylisted, please try again in ${Math.ceil(waitMs / 1000)} seconds` },
    };
  }

  private allowed(policy: GreylistPolicy, rcpt: RecipientUnderCheck): boolean {
    const senderDomain = rcpt.sender.slice(rcpt.sender.lastIndexOf("@") + 1).toLowerCase();
    if (senderDomain && policy.allowSenderDomains.includes(senderDomain)) return true;
    let list = this.allowLists.get(policy);
    if (!list) {
      list = new BlockList();
      for (const cidr of policy.allowClients) {
        const [address = "", bits = "32"] = cidr.split("/");
        list.addSubnet(address, Number(bits), isIPv6(address) ? "ipv6" : "ipv4");
      }
      this.allowLists.set(policy, list);
    }
    return list.check(rcpt.clientAddress, isIPv6(rcpt.clientAddress) ? "ipv6" : "ipv4");
  }
}

export const greylistFilter: FilterModule = {
  name: "greylist",
  stage: "rcpt",
  spec: { field: "greylisting", schema: greylistingPolicy },
  create: ({ config, queue, policyFor, log }) => new GreylistFilter(queue, config.replicas, (domain) => policyFor(domain)?.greylisting, log, config.sites),
};
