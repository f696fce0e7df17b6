// Which RelayDomains claim each mail domain, kept up to date from the RelayDomain events. Two
// questions need it: which RelayDomains a change can put in or out of conflict (those claiming
// the same mail domain, before or after the change), and which RelayDomains a site's changed
// figures concern. Answering both from the whole list made one change cost O(N) reconciles and
// each reconcile O(N) validations: with 10,000 RelayDomains the operator managed 8 reconciles a
// second and a single change waited minutes for Ready (bench/cluster-scale.ts).

import { domainKey, type RelayDomain } from "#api";

export class DomainClaims {
  /** Object key (namespace/name) → the mail domain it claims. */
  private readonly claimed = new Map<string, string>();
  /** Mail domain → object keys claiming it. */
  private readonly claimants = new Map<string, Set<string>>();

  /** Records what the RelayDomain `key` claims now (undefined: it is gone); returns the mail domains it claimed before and claims now. */
  update(key: string, domain: RelayDomain | undefined): string[] {
    const before = this.claimed.get(key);
    const now = domain ? domainKey(domain.spec.domain) : undefined;
    if (before !== now) {
      if (before !== undefined) {
        const keys = this.claimants.get(before);
        keys?.delete(key);
        if (keys?.size === 0) this.claimants.delete(before);
      }
      if (now === undefined) this.claimed.delete(key);
      else {
        this.claimed.set(key, now);
        let keys = this.claimants.get(now);
        if (!keys) this.claimants.set(now, (keys = new Set()));
        keys.add(key);
      }
    }
    return [...new Set([before, now].filter((d): d is string => d !== undefined))];
  }

  /** The object keys of the RelayDomains that claim `mailDomain`. */
  of(mailDomain: string): string[] {
    return [...(this.claimants.get(mailDomain) ?? [])];
  }
}
