// Postfix as a filtering backup MX, the setup a team would run for the filters mxwarden has at the
// door (scenario 6): the plain backup MX of postfix.ts, plus rspamd as a milter (its proxy worker,
// self-scanning) with its antivirus module on clamd, SPF, DKIM, DMARC and ARC, and an RBL rule on
// the bench's DNS list (filter-engines.ts configures rspamd); Postfix's own HELO checks and
// per-client rate limit (anvil). rspamd's verdict comes back over milter during the dialogue: a
// reject is a 5xx to the end of DATA, not a bounce.

import type { FilterEngines } from "../filter-engines.ts";
import type { BackupMx, BackupMxOptions } from "./backup-mx.ts";
import { PostfixBackupMx } from "./postfix.ts";

export const FILTERING_POSTFIX = "Postfix+rspamd";

/** main.cf for the filters, given the milter's port; mxwarden's scenario 6 policy in parentheses. */
export function filteringSettings(milterPort: number): Record<string, string> {
  return {
    smtpd_milters: `inet:127.0.0.1:${milterPort}`,
    milter_protocol: "6",
    // rspamd's documented macros for Postfix: the queue id, the authenticated user, the client.
    milter_mail_macros: "i {mail_addr} {client_addr} {client_name} {auth_authen}",
    // rspamd down or too slow: try again later, as the relay's filters fail closed (onError tempfail).
    milter_default_action: "tempfail",
    // (clientChecks.rejectInvalidHelo)
    smtpd_helo_required: "yes",
    smtpd_helo_restrictions: "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
    // (rateLimits.perClient: 1000000/1h, recipients per client address). Postfix exempts
    // mynetworks (here all of the load, from 127.0.0.1) from anvil's limits by default: no
    // exceptions, so anvil counts every recipient as the relay's limit does.
    smtpd_client_event_limit_exceptions: "",
    anvil_rate_time_unit: "3600s",
    smtpd_client_recipient_rate_limit: "1000000",
  };
}

/** Starts the filtering Postfix on `engines` (started with a milter); the engines' CPU counts as its own. */
export function startFilteringPostfix(options: BackupMxOptions, engines: FilterEngines): Promise<BackupMx> {
  if (engines.milterPort === undefined) throw new Error("the filter engines were started without rspamd's milter");
  return PostfixBackupMx.start(options, { name: FILTERING_POSTFIX, settings: filteringSettings(engines.milterPort), helpers: engines.pids });
}
