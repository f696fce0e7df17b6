// The RelayDomain condition PrimaryReachable, from what the relays of every site serving the domain
// report of its primary (relay-reports.ts primaryAtSite), and the Event that tells the owner when
// it changes. The sites are combined pessimistically: the primary is unreachable when any reachable
// site's relays cannot reach it, because that site is queueing the domain's mail; it is reachable
// when at least one site reaches it and none fails to; otherwise nobody has tried and it is Unknown.
// A site whose cluster the operator cannot reach is left out: its reports are as old as the outage.

import type { ConditionInput, ConditionStatus } from "#api";
import type { PrimaryAtSite } from "./relay-reports.ts";

export const PRIMARY_REACHABLE = "PrimaryReachable";

export interface SitePrimary {
  site: string;
  /** Absent when the site's relays have neither delivered to the primary nor probed it. */
  primary: PrimaryAtSite | undefined;
}

/** The condition (without observedGeneration) for the domain's primary, from the reachable sites serving it. */
export function primaryReachableCondition(sites: readonly SitePrimary[]): Omit<ConditionInput, "observedGeneration"> {
  const down = sites.filter((s) => s.primary?.reachable === false);
  if (down.length > 0) {
    const detail = down.map(({ site, primary }) => `${site}: ${primary?.error ?? "no answer"}${primary?.since ? ` since ${primary.since}` : ""}`).join("; ");
    return {
      type: PRIMARY_REACHABLE,
      status: "False",
      reason: "PrimaryUnreachable",
      message: `the relays cannot reach the primary (${detail}); they queue its mail`,
    };
  }
  const up = sites.filter((s) => s.primary?.reachable === true);
  if (up.length > 0)
    return {
      type: PRIMARY_REACHABLE,
      status: "True",
      reason: "PrimaryAnswers",
      message: `the primary answered the relays of ${up.map((s) => s.site).join(", ")}`,
    };
  if (sites.length === 0) return { type: PRIMARY_REACHABLE, status: "Unknown", reason: "NoReachableSites", message: "no reachable site serves this domain" };
  return {
    type: PRIMARY_REACHABLE,
    status: "Unknown",
    reason: "NotObserved",
    message: "no relay has delivered to or probed the primary since it started (relays learn it by delivering, or by probing with acceptWhen: primaryDown)",
  };
}

export interface PrimaryEvent {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

/**
 * The Event for a change of the condition's status to True or False. Becoming Unknown (a site
 * lost, relays restarted) is no news for the owner; what was known stays in the last Event.
 */
export function primaryEvent(
  previous: ConditionStatus | undefined,
  next: Omit<ConditionInput, "observedGeneration">,
  mailDomain: string,
): PrimaryEvent | undefined {
  if (next.status === previous || next.status === "Unknown") return undefined;
  if (next.status === "False") return { type: "Warning", reason: "PrimaryUnreachable", note: `${mailDomain}: ${next.message}` };
  return { type: "Normal", reason: "PrimaryReachable", note: `${mailDomain}: ${next.message}` };
}
