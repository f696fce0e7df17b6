// The human tables of mxwarden-queue, also printed by the kubectl plugin so that both read alike.
// One line per message in fixed columns, with its last error on an indented line below it, as
// Postfix's `postqueue -p` shows the reason in parentheses; times in UTC, to the second.

import type { QueuedMessage, TrackingRecord } from "./types.ts";

function shortTime(iso: string | undefined): string {
  return iso ? `${iso.slice(0, 19).replace("T", " ")}Z` : "-";
}

/** Control characters from a remote reply or an address must not reach a terminal. */
function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, " ");
}

function table(header: string[], rows: string[][], notes: Array<string | undefined>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const out = [line(header)];
  rows.forEach((row, i) => {
    out.push(line(row));
    const note = notes[i];
    if (note) out.push(`  ${note}`);
  });
  return `${out.join("\n")}\n`;
}

export function formatQueueTable(messages: QueuedMessage[]): string {
  if (messages.length === 0) return "No queued messages.\n";
  const rows = messages.map((m) => [
    m.queueId,
    m.state,
    shortTime(m.arrivedAt),
    String(m.size),
    String(m.attempts),
    shortTime(m.nextAttemptAt),
    printable(`${m.sender || "<>"} -> ${m.recipients.join(", ")}`),
  ]);
  const notes = messages.map((m) => (m.lastError ? `(${printable(m.lastError)})` : undefined));
  const bytes = messages.reduce((sum, m) => sum + m.size, 0);
  return `${table(["QUEUE ID", "STATE", "ARRIVED", "SIZE", "ATTEMPTS", "NEXT ATTEMPT", "SENDER -> RECIPIENTS"], rows, notes)}-- ${messages.length} message${messages.length === 1 ? "" : "s"}, ${bytes} bytes\n`;
}

export function formatTrackingTable(records: TrackingRecord[]): string {
  if (records.length === 0) return "No tracked messages.\n";
  const rows = records.map((r) => [
    r.queueId,
    shortTime(r.arrivedAt),
    r.outcome,
    shortTime(r.updatedAt),
    printable(r.messageId ?? "-"),
    printable(`${r.sender || "<>"} -> ${r.recipients.join(", ")}`),
  ]);
  const notes = records.map((r) => {
    const parts = [
      r.client ? `client ${r.client}` : undefined,
      r.site ? `site ${r.site}` : undefined,
      r.remoteReply ? `reply: ${printable(r.remoteReply)}` : undefined,
    ];
    const note = parts.filter(Boolean).join("; ");
    return note === "" ? undefined : `(${note})`;
  });
  return table(["QUEUE ID", "ARRIVED", "OUTCOME", "UPDATED", "MESSAGE-ID", "SENDER -> RECIPIENTS"], rows, notes);
}
