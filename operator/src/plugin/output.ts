// What kubectl-mxwarden prints for finished RelayQueueRequests: the tables and JSON of
// mxwarden-queue (formatQueueTable and formatTrackingTable from the queue-admin library), over the
// answers of every site, with each entry's site added.

import type { ListedMessage, ListedRecord, RelayQueueRequest } from "#api";
import { formatQueueTable, formatTrackingTable } from "#relay";

export interface Printed {
  stdout: string;
  /** Problems: failed sites, truncated lists, a failed request. */
  stderr: string;
  ok: boolean;
}

function problems(requests: RelayQueueRequest[]): { lines: string[]; ok: boolean } {
  const lines: string[] = [];
  let ok = true;
  for (const request of requests) {
    const where = `${request.metadata.namespace ?? ""}/${request.metadata.name}`;
    if (request.status?.phase !== "Succeeded") {
      ok = false;
      const failed = request.status?.conditions?.find((c) => c.type === "Failed");
      lines.push(
        request.status?.phase === "Failed"
          ? `request ${where} failed${failed ? `: ${failed.message}` : ""}`
          : `request ${where} did not finish in time; it goes on: kubectl get relayqueuerequest -n ${request.metadata.namespace ?? ""} ${request.metadata.name} -o yaml`,
      );
    }
    if (request.status?.truncated)
      lines.push(`request ${where}: ${request.status.truncated} more not shown (a request lists at most 200, and at most 512 KiB)`);
  }
  return { lines, ok };
}

export function printResults(requests: RelayQueueRequest[], output: "table" | "json"): Printed {
  const action = requests[0]?.spec.action ?? "list";
  const { lines, ok } = problems(requests);
  const stderr = lines.map((line) => `kubectl-mxwarden: ${line}\n`).join("");
  if (action === "list") {
    const messages: ListedMessage[] = requests.flatMap((r) => r.status?.messages ?? []);
    return { stdout: output === "json" ? `${JSON.stringify(messages, null, 2)}\n` : formatQueueTable(messages), stderr, ok };
  }
  if (action === "find") {
    const records: ListedRecord[] = requests.flatMap((r) => r.status?.records ?? []);
    return { stdout: output === "json" ? `${JSON.stringify(records, null, 2)}\n` : formatTrackingTable(records), stderr, ok };
  }
  const results = requests.flatMap((r) => r.status?.results ?? []);
  const summary = {
    action,
    matched: results.reduce((sum, r) => sum + r.matched, 0),
    done: requests.flatMap((r) => r.status?.queueIds ?? []).map((d) => d.queueId),
    skipped: requests.flatMap((r) => r.status?.skippedMessages ?? []),
    sites: results,
  };
  // As mxwarden-queue: a named queue id that is not queued makes the command fail.
  const unknown = summary.skipped.some((s) => s.reason.startsWith("not queued"));
  if (output === "json") return { stdout: `${JSON.stringify(summary, null, 2)}\n`, stderr, ok: ok && !unknown };
  const text = [
    `${action}: ${summary.done.length} of ${summary.matched} matched message${summary.matched === 1 ? "" : "s"}`,
    ...summary.done.map((queueId) => `  ${queueId}  done`),
    ...summary.skipped.map((s) => `  ${s.queueId}  skipped: ${s.reason}${s.site ? ` (${s.site})` : ""}`),
  ];
  return { stdout: `${text.join("\n")}\n`, stderr, ok: ok && !unknown };
}
