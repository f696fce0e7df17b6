// The date form of mail headers, for the trace header the receiver writes and the DSNs the
// delivery side writes.

/** RFC 5322 date-time, e.g. "Sun, 22 Nov 2026 23:09:07 +0000". */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "+0000");
}
