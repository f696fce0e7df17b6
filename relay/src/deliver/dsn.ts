// Builds the bounce message itself: an RFC 3464 delivery status notification inside an RFC 6522
// multipart/report, as a complete RFC 5322 message with CRLF line endings. Everything placed in it
// that came from outside (addresses, remote replies, the original headers) is treated as hostile:
// no control characters in header fields, no line longer than RFC 5322 allows.

import { randomBytes } from "node:crypto";
import { rfc5322Date } from "../receive/received-header.ts";

export interface FailedRecipient {
  address: string;
  /** Enhanced status code (RFC 3463), such as "5.1.1" or "4.4.7". */
  status: string;
  /** The remote server's reply, such as "550 5.1.1 no such user". */
  diagnostic?: string | undefined;
  remoteMta?: string | undefined;
  lastAttempt?: Date | undefined;
}

export interface DsnInput {
  reportingMta: string;
  originalSender: string;
  queueId: string;
  arrivalDate: Date;
  failed: FailedRecipient[];
  reason: "rejected" | "expired";
  /** Header section of the original message including its final CRLF; may be empty. */
  originalHeaders: Buffer;
  now: Date;
}

export interface Dsn {
  /** Bounces are sent from the null sender, so that they never bounce themselves. */
  envelopeSender: "";
  recipient: string;
  message: Buffer;
  messageId: string;
}

const MAX_DIAGNOSTIC = 900;
const MAX_ORIGINAL_HEADERS = 64 * 1024;
const MAX_LINE = 998;

/** One header-safe line: no CR, LF or other control characters, bounded length. */
function oneLine(value: string, limit = 900): string {
  return value.replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, limit);
}

/** RFC 6533 utf-8-addr-xtext: non-ASCII, "+", "\" and "=" escaped as \x{HEX}, so the part stays 7-bit. */
function addressForReport(address: string): { type: "rfc822" | "utf-8"; value: string } {
  const clean = oneLine(address, 400);
  if (/^[\x20-\x7e]*$/.test(clean)) return { type: "rfc822", value: clean };
  let out = "";
  for (const char of clean) {
    const code = char.codePointAt(0) ?? 0;
    out += code > 0x7e || char === "\\" || char === "+" || char === "=" ? `\\x{${code.toString(16).toUpperCase()}}` : char;
  }
  return { type: "utf-8", value: out };
}

/** Fold a field at spaces to keep lines under the RFC 5322 limit; hard-cut what cannot fold. */
function field(name: string, value: string): string {
  const lines: string[] = [];
  let current = `${name}: `;
  for (const word of value.split(" ")) {
    if (current.length + word.length + 1 > 76 && current.trim().length > name.length + 1) {
      lines.push(current.trimEnd());
      current = " ";
    }
    current += `${word} `;
  }
  lines.push(current.trimEnd());
  return lines.flatMap((line) => {
    const pieces: string[] = [];
    for (let i = 0; i < line.length; i += MAX_LINE - 1) pieces.push((i === 0 ? "" : " ") + line.slice(i, i + MAX_LINE - 1));
    return pieces;
  }).join("\r\n") + "\r\n";
}

/** The original header section, cut at a line end below the limit, with long lines made safe. */
function originalHeaderPart(headers: Buffer): Buffer {
  let part = headers;
  if (part.length > MAX_ORIGINAL_HEADERS) {
    const cut = part.lastIndexOf("\r\n", MAX_ORIGINAL_HEADERS);
    part = part.subarray(0, cut === -1 ? 0 : cut + 2);
  }
  const text = part.toString("latin1").replace(/\r?\n/g, "\r\n");
  const safe = text.split("\r\n").map((line) => line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line).join("\r\n");
  return Buffer.from(safe.endsWith("\r\n") ? safe : `${safe}\r\n`, "latin1");
}

function explanation(input: DsnInput, reportingMta: string): string {
  const lines = [
    `This is the mail system at host ${reportingMta}.`,
    "",
    input.reason === "expired"
      ? "Your message could not be delivered to the recipients below before the queue lifetime ran out. The relay has given up."
      : "Your message could not be delivered to the recipients below: the receiving server refused them permanently.",
    "",
    `Queue ID: ${input.queueId}`,
    "",
  ];
  for (const recipient of input.failed) {
    const diagnostic = recipient.diagnostic ? `: ${oneLine(recipient.diagnostic, MAX_DIAGNOSTIC)}` : "";
    lines.push(`<${addressForReport(recipient.address).value}> (status ${oneLine(recipient.status, 16)})${diagnostic}`);
  }
  lines.push("");
  return lines.map(wrapText).join("");
}

/** A body line wrapped at spaces near 76 columns, continuation lines indented. */
function wrapText(line: string): string {
  const out: string[] = [];
  let current = "";
  for (const word of line.split(" ")) {
    if (current.length > 0 && current.length + word.length + 1 > 76) {
      out.push(current);
      current = "  ";
    }
    current += (current.trim().length > 0 ? " " : "") + word;
  }
  out.push(current);
  return out.flatMap((l) => l.match(/.{1,990}/g) ?? [""]).join("\r\n") + "\r\n";
}

export function buildDsn(input: DsnInput): Dsn {
  const reportingMta = oneLine(input.reportingMta, 253);
  const messageId = `<${input.queueId}.dsn.${randomBytes(6).toString("hex")}@${reportingMta}>`;
  const boundary = `mxw-dsn-${randomBytes(12).toString("hex")}`;
  const subject = input.reason === "expired"
    ? "Undelivered Mail Returned to Sender (queue lifetime expired)"
    : "Undelivered Mail Returned to Sender";

  let status = field("Reporting-MTA", `dns; ${reportingMta}`) + field("Arrival-Date", rfc5322Date(input.arrivalDate));
  for (const recipient of input.failed) {
    const address = addressForReport(recipient.address);
    status += "\r\n";
    status += field("Final-Recipient", `${address.type}; ${address.value}`);
    status += field("Action", "failed");
    status += field("Status", /^[245]\.\d{1,3}\.\d{1,3}$/.test(recipient.status) ? recipient.status : "5.0.0");
    if (recipient.remoteMta) status += field("Remote-MTA", `dns; ${oneLine(recipient.remoteMta, 253)}`);
    if (recipient.diagnostic) status += field("Diagnostic-Code", `smtp; ${oneLine(recipient.diagnostic, MAX_DIAGNOSTIC)}`);
    if (recipient.lastAttempt) status += field("Last-Attempt-Date", rfc5322Date(recipient.lastAttempt));
  }

  const head =
    field("From", `Mail Delivery System <MAILER-DAEMON@${reportingMta}>`) +
    field("To", `<${oneLine(input.originalSender, 400)}>`) +
    field("Subject", subject) +
    field("Date", rfc5322Date(input.now)) +
    field("Message-ID", messageId) +
    field("Auto-Submitted", "auto-replied") +
    field("MIME-Version", "1.0") +
    field("Content-Type", `multipart/report; report-type=delivery-status; boundary="${boundary}"`);

  const parts: Buffer[] = [
    Buffer.from(`${head}\r\nThis is a MIME-encapsulated message.\r\n\r\n`, "utf8"),
    Buffer.from(`--${boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n${explanation(input, reportingMta)}\r\n`, "latin1"),
    Buffer.from(`--${boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n${status}\r\n`, "latin1"),
  ];
  if (input.originalHeaders.length > 0) {
    const original = originalHeaderPart(input.originalHeaders);
    const eightBit = original.some((byte) => byte > 0x7f);
    parts.push(Buffer.from(`--${boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n${eightBit ? "Content-Transfer-Encoding: 8bit\r\n" : ""}\r\n`, "latin1"));
    parts.push(original);
    parts.push(Buffer.from("\r\n", "latin1"));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`, "latin1"));
  return { envelopeSender: "", recipient: input.originalSender, message: Buffer.concat(parts), messageId };
}
