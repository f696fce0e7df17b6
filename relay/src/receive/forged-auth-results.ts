// RFC 8601 §5: an MTA removes Authentication-Results fields that claim its own authserv-id before
// it adds its own, or the primary, which trusts this relay's results, could be told "dmarc=pass"
// by the sender. This works on the raw header section (CRLF line endings) of one message.

/** The header section without Authentication-Results fields whose authserv-id is `authservId`. */
export function removeForgedAuthResults(header: Buffer, authservId: string): { header: Buffer; removed: number } {
  const text = header.toString("latin1");
  const ours = authservId.toLowerCase();
  // A field is a line not starting with whitespace plus its continuation lines.
  const fields = text.match(/[^\r\n \t][^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*/g) ?? [];
  if (fields.join("").length !== text.length) return { header, removed: 0 }; // not plain fields: leave it untouched
  let removed = 0;
  const kept = fields.filter((field) => {
    const match = /^authentication-results[ \t]*:\s*(?:\([^)]*\)\s*)*([^;\s(]+)/i.exec(field.replace(/\r\n[ \t]/g, " "));
    if (match?.[1]?.replace(/^"|"$/g, "").toLowerCase() === ours) {
      removed++;
      return false;
    }
    return true;
  });
  return removed === 0 ? { header, removed } : { header: Buffer.from(kept.join(""), "latin1"), removed };
}
