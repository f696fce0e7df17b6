// Builds the bounce message itself: an RFC 3464 delivery status notification inside an RFC 6522
// multipart/report, as a complete RFC 5322 message with CRLF line endings. Everything placed in it
// that came from outside (addresses, remote replies, the original headers) is treated as hostile:
// no control characters in header or delivery-status fields, only 7-bit text in the first two
// parts, no line longer than RFC 5322 allows.

import { randomBytes } from "node:crypto";
import { rfc5322Date } from "../smtp/index.ts";

export type DsnReason = "rejected" | "expired" | "delayed";

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
  /** The recipients the report is about: failed, or for "delayed" still being retried. */
  failed: FailedRecipient[];
  /** rejected and expired report a failure (Action: failed); delayed is the one warning that delivery is still being retried (Action: delayed). */
  reason: DsnReason;
  /** For "delayed": when the relay gives up (the job's expiry), as Will-Retry-Until. */
  willRetryUntil?: Date | undefined;
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
const MAX_ADDRESS = 320;
const MAX_REPORT_ADDRESS = 900;
const MAX_HOST = 253;
const MAX_ORIGINAL_HEADERS = 64 * 1024;
/** RFC 5322 2.1.1: at most 998 octets per line, excluding the CRLF. */
const MAX_LINE = 998;
/** Header fields and text are folded or wrapped near here (RFC 5322's recommended 78). */
const FOLD_AT = 78;
/** Longest run without a space placed on one header line; leaves room for any field name. */
const MAX_WORD = 900;

/** C0 and C1 controls, DEL and the Unicode line and paragraph separators. */
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/g;

/** One line: controls become spaces, runs of whitespace one space, trimmed, at most `limit` characters. */
function oneLine(value: string, limit: number): string {
  return value.replace(CONTROLS, " ").replace(/\s+/g, " ").trim().slice(0, limit);
}

/** One line of printable US-ASCII: as `oneLine`, with every other character replaced by "?". */
function asciiLine(value: string, limit: number): string {
  return oneLine(value, Number.MAX_SAFE_INTEGER)
    .replace(/[^\x20-\x7e]/gu, "?")
    .slice(0, limit);
}

/** A host name for "dns;" fields, the From address and the Message-ID: no spaces or specials. */
function hostName(value: string): string {
  return asciiLine(value, MAX_HOST).replace(/[^A-Za-z0-9.\-_:[\]]/g, "") || "localhost";
}

/**
 * The address for Final-Recipient. Printable ASCII stays an "rfc822" address; anything else is
 * an RFC 6533 "utf-8" address in utf-8-addr-xtext form, where non-ASCII, space, "+", "=" and "\"
 * are written \x{HEX}, so that the delivery-status part stays 7-bit.
 */
function addressForReport(address: string): { type: "rfc822" | "utf-8"; value: string } {
  const clean = oneLine(address, MAX_ADDRESS);
  if (/^[\x20-\x7e]*$/.test(clean)) return { type: "rfc822", value: clean };
  let out = "";
  for (const char of clean) {
    const code = char.codePointAt(0) ?? 0;
    const piece =
      code > 0x7e || code <= 0x20 || char === "\\" || char === "+" || char === "=" ? `\\x{${code.toString(16).toUpperCase().padStart(2, "0")}}` : char;
    if (out.length + piece.length > MAX_REPORT_ADDRESS) break;
    out += piece;
  }
  return { type: "utf-8", value: out };
}

function octets(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Split a word with no spaces into pieces of at most `limit` UTF-8 octets, never inside a character. */
function splitOctets(word: string, limit: number): string[] {
  const pieces: string[] = [];
  let current = "";
  for (const char of word) {
    if (current !== "" && octets(current) + octets(char) > limit) {
      pieces.push(current);
      current = "";
    }
    current += char;
  }
  if (current !== "") pieces.push(current);
  return pieces;
}

/**
 * A header (or delivery-status) field, folded at spaces near 78 octets. `value` must already be a
 * single line. A longer run without spaces stays on its own line, hard-split beyond MAX_WORD octets,
 * so that no line exceeds MAX_LINE. Returns the field with its final CRLF.
 */
function field(name: string, value: string): string {
  const lines: string[] = [];
  let current = `${name}:`;
  let hasWord = false;
  for (const word of value.split(" ")) {
    if (word === "") continue;
    for (const piece of splitOctets(word, MAX_WORD)) {
      if (hasWord && octets(current) + 1 + octets(piece) > FOLD_AT) {
        lines.push(current);
        current = "";
      }
      current += ` ${piece}`;
      hasWord = true;
    }
  }
  lines.push(current);
  return `${lines.join("\r\n")}\r\n`;
}

/** A line of body text wrapped at spaces near 78 columns, continuation lines indented. ASCII only. */
function wrapText(line: string, indent = ""): string {
  const out: string[] = [];
  let current = "";
  for (const word of line.split(" ")) {
    if (current.trim() !== "" && current.length + 1 + word.length > FOLD_AT) {
      out.push(current);
      current = indent;
    }
    current += (current.trim() !== "" ? " " : "") + word;
  }
  out.push(current);
  return `${out.flatMap((l) => l.match(/.{1,990}/g) ?? [""]).join("\r\n")}\r\n`;
}

/**
 * The original header section as the body of a text/rfc822-headers part: every line ending CRLF,
 * no NUL, no line over MAX_LINE octets, at most MAX_ORIGINAL_HEADERS octets cut at a line end.
 */
function originalHeaderPart(headers: Buffer): Buffer {
  // latin1 maps bytes to characters one to one, so lengths below are octets and 8-bit bytes survive.
  const lines = headers
    .toString("latin1")
    .replace(/\x00/g, "")
    .split(/\r\n|\r|\n/);
  if (lines.at(-1) === "") lines.pop();
  let text = "";
  for (const line of lines) {
    const safe = line.length > MAX_LINE ? line.slice(0, MAX_LINE) : line;
    if (text.length + safe.length + 2 > MAX_ORIGINAL_HEADERS) break;
    text += `${safe}\r\n`;
  }
  return Buffer.from(text, "latin1");
}

function validDate(date: Date | undefined): date is Date {
  return date instanceof Date && !Number.isNaN(date.getTime());
}

function statusCode(status: string, reason: DsnReason): string {
  const clean = asciiLine(status, 16);
  // A delay is transient by definition (RFC 3464 2.3.4): only a 4.x.x status goes with it.
  if (reason === "delayed") return /^4\.\d{1,3}\.\d{1,3}$/.test(clean) ? clean : "4.0.0";
  if (/^[245]\.\d{1,3}\.\d{1,3}$/.test(clean)) return clean;
  return reason === "expired" ? "4.4.7" : "5.0.0";
}

function summary(input: DsnInput): string[] {
  switch (input.reason) {
    case "delayed":
      return [
        "####################################################################",
        "# THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
        "####################################################################",
        "",
        "Your message could not be delivered yet to one or more recipients. The relay keeps " +
          "retrying" +
          (validDate(input.willRetryUntil) ? ` until ${rfc5322Date(input.willRetryUntil)}` : "") +
          ", and you will be told again only if it gives up.",
      ];
    case "expired":
      return [
        "I'm sorry to have to inform you that your message could not be delivered to one or more " +
          "recipients. The relay kept retrying until the queue lifetime expired and has now given up.",
      ];
    default:
      return [
        "I'm sorry to have to inform you that your message could not be delivered to one or more " +
          "recipients: the receiving server refused them permanently.",
      ];
  }
}

function explanation(input: DsnInput, reportingMta: string, queueId: string): string {
  const lines = [
    `This is the mail system at host ${reportingMta}.`,
    "",
    ...summary(input),
    "",
    `Queue ID: ${queueId}`,
    "",
    input.reason === "delayed" ? "Delivery is delayed to the following recipients:" : "The following recipients failed:",
    "",
  ];
  const recipientLines: string[] = [];
  for (const recipient of input.failed) {
    const address = addressForReport(recipient.address).value;
    const status = statusCode(recipient.status, input.reason);
    const diagnostic = recipient.diagnostic ? asciiLine(recipient.diagnostic, MAX_DIAGNOSTIC) : "";
    const remote = recipient.remoteMta ? ` (host ${hostName(recipient.remoteMta)})` : "";
    recipientLines.push(`<${address}>: status ${status}${remote}${diagnostic ? `: ${diagnostic}` : ""}`);
  }
  return `${lines.map((line) => wrapText(line)).join("") + recipientLines.map((line) => wrapText(line, "    ")).join("")}\r\n`;
}

function deliveryStatus(input: DsnInput, reportingMta: string): string {
  let status = field("Reporting-MTA", `dns; ${reportingMta}`);
  if (validDate(input.arrivalDate)) status += field("Arrival-Date", rfc5322Date(input.arrivalDate));
  for (const recipient of input.failed) {
    const address = addressForReport(recipient.address);
    status += "\r\n";
    status += field("Final-Recipient", `${address.type}; ${address.value}`);
    status += field("Action", input.reason === "delayed" ? "delayed" : "failed");
    status += field("Status", statusCode(recipient.status, input.reason));
    if (recipient.remoteMta) status += field("Remote-MTA", `dns; ${hostName(recipient.remoteMta)}`);
    const diagnostic = recipient.diagnostic ? asciiLine(recipient.diagnostic, MAX_DIAGNOSTIC) : "";
    if (diagnostic) status += field("Diagnostic-Code", `smtp; ${diagnostic}`);
    if (validDate(recipient.lastAttempt)) status += field("Last-Attempt-Date", rfc5322Date(recipient.lastAttempt));
    if (input.reason === "delayed" && validDate(input.willRetryUntil)) status += field("Will-Retry-Until", rfc5322Date(input.willRetryUntil));
  }
  return status;
}

export function buildDsn(input: DsnInput): Dsn {
  const reportingMta = hostName(input.reportingMta);
  const queueId = asciiLine(input.queueId, 64).replace(/[^A-Za-z0-9._-]/g, "") || "unknown";
  const messageId = `<${queueId}.dsn.${randomBytes(6).toString("hex")}@${reportingMta}>`;
  const subject =
    input.reason === "delayed"
      ? "Delayed Mail (still being retried)"
      : input.reason === "expired"
        ? "Undelivered Mail Returned to Sender (queue lifetime expired)"
        : "Undelivered Mail Returned to Sender";

  const text = Buffer.from(explanation(input, reportingMta, queueId), "latin1");
  const status = Buffer.from(deliveryStatus(input, reportingMta), "latin1");
  const headerPart = originalHeaderPart(input.originalHeaders);
  const original = headerPart.length > 0 ? headerPart : null;
  const eightBit = original?.some((byte) => byte > 0x7f);

  // A fresh random boundary practically never collides; check anyway, the content is not ours.
  let boundary: string;
  do {
    boundary = `mxw-dsn-${randomBytes(12).toString("hex")}`;
  } while ([text, status, original].some((part) => part?.includes(boundary)));

  const head =
    field("From", `Mail Delivery System <MAILER-DAEMON@${reportingMta}>`) +
    field("To", `<${oneLine(input.originalSender, MAX_ADDRESS)}>`) +
    field("Subject", subject) +
    field("Date", rfc5322Date(validDate(input.now) ? input.now : new Date())) +
    field("Message-ID", messageId) +
    field("Auto-Submitted", "auto-replied") +
    field("MIME-Version", "1.0") +
    field("Content-Type", `multipart/report; report-type=delivery-status; boundary="${boundary}"`) +
    // RFC 2045 6.4: a multipart entity is 8bit when any of its parts is.
    (eightBit ? field("Content-Transfer-Encoding", "8bit") : "");

  const parts: Buffer[] = [
    // The envelope sender may be an internationalised (SMTPUTF8) address, hence UTF-8 here.
    Buffer.from(`${head}\r\nThis is a MIME-encapsulated message.\r\n\r\n`, "utf8"),
    Buffer.from(`--${boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`, "latin1"),
    text,
    Buffer.from(`\r\n--${boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n`, "latin1"),
    status,
  ];
  if (original !== null) {
    parts.push(
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Description: ${input.reason === "delayed" ? "Delayed" : "Undelivered"} Message Headers\r\nContent-Type: text/rfc822-headers\r\n` +
          `${eightBit ? "Content-Transfer-Encoding: 8bit\r\n" : ""}\r\n`,
        "latin1",
      ),
    );
    parts.push(original);
  }
  parts.push(Buffer.from(`\r\n--${boundary}--\r\n`, "latin1"));
  return { envelopeSender: "", recipient: input.originalSender, message: Buffer.concat(parts), messageId };
}
