// Every filter of the relay, in the order it runs: the one list to change when a filter is added
// (docs/architecture.md, "Adding a filter"). RCPT-stage filters run one after the other and the
// first refusal wins; DATA-stage filters read the stored message at the same time, and their
// verdicts are taken in this order.

import { accessFilter } from "./access.ts";
import { antispamFilter } from "./antispam.ts";
import { antivirusFilter } from "./antivirus.ts";
import { clientChecksFilter } from "./client-checks.ts";
import { dnsblFilter } from "./dnsbl.ts";
import type { AnyFilter, FilterContext, FilterModule } from "./filter.ts";
import { greylistFilter } from "./greylist.ts";
import { monitoringModeFilter } from "./monitoring-mode.ts";
import { rateLimitFilter } from "./rate-limit.ts";
import { recipientVerifyFilter } from "./recipient-verify.ts";
import { senderAuthFilter } from "./sender-auth.ts";

export const FILTERS: readonly FilterModule[] = [
  // The domain's own block list refuses before anything is asked; its allow list must be known
  // before the filters it lets mail past.
  accessFilter,
  // Monitoring mode sends senders to the primary before anyone asks it about recipients.
  monitoringModeFilter,
  // Unknown recipients are refused before greylisting makes their sender retry in vain.
  recipientVerifyFilter,
  clientChecksFilter,
  dnsblFilter,
  rateLimitFilter,
  // Greylisting costs the sender a retry, not us a scan: it comes last at RCPT.
  greylistFilter,
  // Authentication first (its headers feed the score), then a virus, then the score.
  senderAuthFilter,
  antivirusFilter,
  antispamFilter,
];

/** The filters this relay runs, in order: those whose engines it was started with. */
export async function createFilters(context: FilterContext, modules: readonly FilterModule[] = FILTERS): Promise<AnyFilter[]> {
  const filters: AnyFilter[] = [];
  for (const module of modules) {
    const filter = await module.create(context);
    if (!filter) continue;
    if (filter.name !== module.name || filter.stage !== module.stage) throw new Error(`filter module ${module.name} built ${filter.name} (${filter.stage})`);
    filters.push(filter);
  }
  return filters;
}
