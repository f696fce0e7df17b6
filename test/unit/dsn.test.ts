import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { buildDsn, type DsnInput, type FailedRecipient } from "../../relay/src/deliver/dsn.ts";

const now = new Date(Date.UTC(2026, 10, 22, 10, 0, 0));
const arrival = new Date(Date.UTC(2026, 10, 21, 9, 30, 5));
const originalHeaders = Buffer.from(
  "Received: from mail.client.test by mx2.example.com\r\n" +
    "From: Sender <sender@client.test>\r\n" +
    "To: bad@example.com, gone@example.com\r\n" +
    "Subject: hello\r\n" +
    "Message-ID: <orig-1@client.test>\r\n",
  "latin1",
);

function recipients(): FailedRecipient[] {
  return [
    {
      address: "bad@example.com",
      status: "5.1.1",
      diagnostic: "550 5.1.1 <bad@example.com>: no such user",
      remoteMta: "mx1.example.com",
      lastAttempt: new Date(Date.UTC(2026, 10, 22, 9, 59, 0)),
    },
    { address: "gone@example.com", status: "5.2.1", diagnostic: "550 5.2.1 mailbox disabled", remoteMta: "mx1.example.com" },
  ];
}

function input(overrides: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: "mx2.example.com",
    originalSender: "sender@client.test",
    queueId: "01JQ7Z8X9Y",
    arrivalDate: arrival,
    failed: recipients(),
    reason: "rejected",
    originalHeaders,
    now,
    ...overrides,
  };
}

interface Part {
  headers: Map<string, string>;
  body: Buffer;
}
interface Parsed {
  headers: Map<string, string>;
  rawHead: string;
  parts: Part[];
}

/** Header section → lower-cased field name to unfolded value (last wins; enough for these tests). */
function parseHeaders(section: string): Map<string, string> {
  const headers = new Map<string, string>();
  for (const field of section.replace(/\r\n(?=[ \t])/g, "").split("\r\n")) {
    if (field === "") continue;
    const colon = field.indexOf(":");
    assert.ok(colon > 0, `not a header field: ${JSON.stringify(field)}`);
    headers.set(field.slice(0, colon).toLowerCase(), field.slice(colon + 1).trim());
  }
  return headers;
}

/** A tiny MIME splitter: top headers, then the body split on the boundary from Content-Type. */
function parse(message: Buffer): Parsed {
  const text = message.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end > 0, "header section ends with a blank line");
  const rawHead = text.slice(0, end + 2);
  const headers = parseHeaders(rawHead);
  const boundary = /boundary="([^"]+)"/.exec(headers.get("content-type") ?? "")?.[1];
  assert.ok(boundary, "Content-Type names a boundary");
  const body = text.slice(end + 4);
  const closeAt = body.indexOf(`\r\n--${boundary}--`);
  assert.ok(closeAt !== -1, "closing boundary present");
  const chunks = body.slice(0, closeAt).split(new RegExp(`(?:^|\\r\\n)--${boundary}\\r\\n`));
  chunks.shift(); // preamble
  const parts = chunks.map((chunk) => {
    const split = chunk.indexOf("\r\n\r\n");
    assert.ok(split !== -1, "part has a header section");
    return { headers: parseHeaders(chunk.slice(0, split + 2)), body: Buffer.from(chunk.slice(split + 4), "latin1") };
  });
  return { headers, rawHead, parts };
}

/** message/delivery-status body → per-message fields, then one map per recipient block. */
function statusBlocks(part: Part): Map<string, string>[] {
  const text = part.body.toString("latin1");
  return text
    .split(/\r\n\r\n/)
    .filter((block) => block.trim() !== "")
    .map((block) => parseHeaders(`${block}\r\n`));
}

function contentType(part: Part | undefined): string {
  return (part?.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

function lines(message: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let at = message.indexOf("\r\n"); at !== -1; at = message.indexOf("\r\n", start)) {
    out.push(message.subarray(start, at));
    start = at + 2;
  }
  out.push(message.subarray(start));
  return out;
}

function assertNoBareLineBreaks(message: Buffer): void {
  for (let i = 0; i < message.length; i++) {
    if (message[i] === 0x0a) assert.equal(message[i - 1], 0x0d, `bare LF at ${i}`);
    if (message[i] === 0x0d) assert.equal(message[i + 1], 0x0a, `bare CR at ${i}`);
  }
}

function assertLineLimit(message: Buffer): void {
  for (const line of lines(message)) assert.ok(line.length <= 998, `line of ${line.length} octets`);
}

describe("buildDsn", () => {
  it("builds a multipart/report with notification, delivery status and original headers", () => {
    const dsn = buildDsn(input());
    assert.equal(dsn.envelopeSender, "");
    assert.equal(dsn.recipient, "sender@client.test");
    const { headers, parts } = parse(dsn.message);
    assert.equal(headers.get("from"), "Mail Delivery System <MAILER-DAEMON@mx2.example.com>");
    assert.equal(headers.get("to"), "<sender@client.test>");
    assert.equal(headers.get("subject"), "Undelivered Mail Returned to Sender");
    assert.equal(headers.get("date"), "Sun, 22 Nov 2026 10:00:00 +0000");
    assert.equal(headers.get("auto-submitted"), "auto-replied");
    assert.equal(headers.get("mime-version"), "1.0");
    assert.equal(headers.get("message-id"), dsn.messageId);
    assert.match(dsn.messageId, /^<01JQ7Z8X9Y\.dsn\.[0-9a-f]+@mx2\.example\.com>$/);
    assert.match(headers.get("content-type") ?? "", /^multipart\/report; report-type=delivery-status; boundary="[^"]+"$/);
    assert.equal(headers.has("content-transfer-encoding"), false, "7-bit original headers need no CTE");

    assert.deepEqual(parts.map(contentType), ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    assert.match(parts[0]?.headers.get("content-type") ?? "", /charset=us-ascii/);
    const explanation = (parts[0]?.body.toString("latin1") ?? "").replace(/\r\n +/g, " ");
    assert.match(explanation, /<bad@example\.com>: status 5\.1\.1 .*550 5\.1\.1 <bad@example\.com>: no such user/);
    assert.match(explanation, /<gone@example\.com>: status 5\.2\.1 .*mailbox disabled/);
    assert.match(explanation, /Queue ID: 01JQ7Z8X9Y/);
    assert.doesNotMatch(explanation, /queue lifetime/);
    assert.equal(parts[2]?.body.toString("latin1"), originalHeaders.toString("latin1"));
  });

  it("writes per-message and per-recipient delivery-status fields", () => {
    const { parts } = parse(buildDsn(input()).message);
    const [perMessage, first, second, ...rest] = statusBlocks(parts[1] as Part);
    assert.equal(rest.length, 0, "one block per failed recipient");
    assert.equal(perMessage?.get("reporting-mta"), "dns; mx2.example.com");
    assert.equal(perMessage?.get("arrival-date"), "Sat, 21 Nov 2026 09:30:05 +0000");

    assert.equal(first?.get("final-recipient"), "rfc822; bad@example.com");
    assert.equal(first?.get("action"), "failed");
    assert.equal(first?.get("status"), "5.1.1");
    assert.equal(first?.get("remote-mta"), "dns; mx1.example.com");
    assert.equal(first?.get("diagnostic-code"), "smtp; 550 5.1.1 <bad@example.com>: no such user");
    assert.equal(first?.get("last-attempt-date"), "Sun, 22 Nov 2026 09:59:00 +0000");

    assert.equal(second?.get("final-recipient"), "rfc822; gone@example.com");
    assert.equal(second?.get("action"), "failed");
    assert.equal(second?.get("status"), "5.2.1");
    assert.equal(second?.get("remote-mta"), "dns; mx1.example.com");
    assert.equal(second?.get("diagnostic-code"), "smtp; 550 5.2.1 mailbox disabled");
    assert.equal(second?.has("last-attempt-date"), false);
  });

  it("omits Remote-MTA and Diagnostic-Code when not known", () => {
    const { parts } = parse(buildDsn(input({ failed: [{ address: "x@example.com", status: "5.0.0" }] })).message);
    const [, block] = statusBlocks(parts[1] as Part);
    assert.equal(block?.get("final-recipient"), "rfc822; x@example.com");
    assert.equal(block?.has("remote-mta"), false);
    assert.equal(block?.has("diagnostic-code"), false);
  });

  it("uses CRLF line endings only", () => {
    const dsn = buildDsn(input({ originalHeaders: Buffer.from("Subject: bare\nX-Other: cr\rFrom: a@b\n", "latin1") }));
    assertNoBareLineBreaks(dsn.message);
    assert.ok(dsn.message.toString("latin1").endsWith("--\r\n"));
    const { parts } = parse(dsn.message);
    assert.equal(parts[2]?.body.toString("latin1"), "Subject: bare\r\nX-Other: cr\r\nFrom: a@b\r\n");
  });

  it("does not let a hostile diagnostic or address inject header lines", () => {
    const dsn = buildDsn(
      input({
        originalSender: "sender@client.test>\r\nBcc: victim@x",
        failed: [
          {
            address: "bad@example.com\r\nBcc: victim@x",
            status: "5.1.1",
            diagnostic: "550 no\r\nBcc: victim@x\r\n\r\nInjected body",
            remoteMta: "mx1.example.com\r\nBcc: victim@x",
          },
          { address: "other@example.com", status: "5.1.1\nX-Evil: 1", diagnostic: "550\u2028Bcc: victim@x\x00\x1b[0m" },
        ],
      }),
    );
    assertNoBareLineBreaks(dsn.message);
    const text = dsn.message.toString("latin1");
    assert.doesNotMatch(text, /(^|\r\n)Bcc:/i);
    assert.doesNotMatch(text, /(^|\r\n)X-Evil:/i);
    assert.doesNotMatch(text, /(^|\r\n)Injected body/);
    assert.doesNotMatch(text, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/, "no control characters");
    const { headers, parts } = parse(dsn.message);
    assert.equal(headers.has("bcc"), false);
    assert.equal(parts.length, 3);
    const [, first, second] = statusBlocks(parts[1] as Part);
    assert.equal(first?.get("diagnostic-code"), "smtp; 550 no Bcc: victim@x Injected body");
    assert.equal(second?.get("status"), "5.0.0", "a malformed status is replaced");
    assert.deepEqual([...(first?.keys() ?? [])], ["final-recipient", "action", "status", "remote-mta", "diagnostic-code"]);
  });

  it("omits the third part when there are no original headers", () => {
    const { parts } = parse(buildDsn(input({ originalHeaders: Buffer.alloc(0) })).message);
    assert.deepEqual(parts.map(contentType), ["text/plain", "message/delivery-status"]);
  });

  it("says the queue lifetime expired in the subject and the text", () => {
    const dsn = buildDsn(
      input({
        reason: "expired",
        failed: [{ address: "later@example.com", status: "4.4.7", diagnostic: "451 4.3.0 try again later", lastAttempt: now }],
      }),
    );
    const { headers, parts } = parse(dsn.message);
    assert.equal(headers.get("subject"), "Undelivered Mail Returned to Sender (queue lifetime expired)");
    const explanation = (parts[0]?.body.toString("latin1") ?? "").replace(/\r\n(?=\S)/g, " ");
    assert.match(explanation, /queue lifetime expired/);
    assert.match(explanation, /given up/);
    const [, block] = statusBlocks(parts[1] as Part);
    assert.equal(block?.get("status"), "4.4.7");
    assert.equal(block?.get("action"), "failed");
  });

  it("a delay warning: Action delayed, a 4.x.x Status, the last error as Diagnostic-Code and Will-Retry-Until", () => {
    const retryUntil = new Date(Date.UTC(2026, 10, 26, 9, 30, 5));
    const dsn = buildDsn(
      input({
        reason: "delayed",
        willRetryUntil: retryUntil,
        failed: [
          { address: "later@example.com", status: "4.4.1", diagnostic: "connect ECONNREFUSED 192.0.2.1:25", lastAttempt: now },
          { address: "full@example.com", status: "4.2.2", diagnostic: "452 4.2.2 mailbox full", remoteMta: "mx1.example.com" },
          // A delay is never permanent: any other status is reported as 4.0.0.
          { address: "odd@example.com", status: "5.1.1", diagnostic: "451 odd" },
        ],
      }),
    );
    assert.equal(dsn.envelopeSender, "", "sent from the null sender, like every DSN");
    assert.equal(dsn.recipient, "sender@client.test");
    const { headers, parts } = parse(dsn.message);
    assert.equal(headers.get("subject"), "Delayed Mail (still being retried)");
    assert.match(headers.get("content-type") ?? "", /^multipart\/report; report-type=delivery-status; boundary="[^"]+"$/);
    assert.deepEqual(parts.map(contentType), ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    const explanation = (parts[0]?.body.toString("latin1") ?? "").replace(/\r\n(?=\S)/g, " ");
    assert.match(explanation, /THIS IS A WARNING ONLY\. YOU DO NOT NEED TO RESEND YOUR MESSAGE\./);
    assert.match(explanation, /until Thu, 26 Nov 2026 09:30:05 \+0000/);
    assert.doesNotMatch(explanation, /could not be delivered to one or more recipients/);
    assert.doesNotMatch(explanation, /failed/);
    const [perMessage, later, full, odd, ...rest] = statusBlocks(parts[1] as Part);
    assert.equal(rest.length, 0);
    assert.equal(perMessage?.get("arrival-date"), "Sat, 21 Nov 2026 09:30:05 +0000");
    assert.equal(later?.get("final-recipient"), "rfc822; later@example.com");
    assert.equal(later?.get("action"), "delayed");
    assert.equal(later?.get("status"), "4.4.1");
    assert.equal(later?.get("diagnostic-code"), "smtp; connect ECONNREFUSED 192.0.2.1:25");
    assert.equal(later?.get("last-attempt-date"), "Sun, 22 Nov 2026 10:00:00 +0000");
    assert.equal(later?.get("will-retry-until"), "Thu, 26 Nov 2026 09:30:05 +0000");
    assert.equal(full?.get("action"), "delayed");
    assert.equal(full?.get("status"), "4.2.2");
    assert.equal(full?.get("remote-mta"), "dns; mx1.example.com");
    assert.equal(full?.get("diagnostic-code"), "smtp; 452 4.2.2 mailbox full");
    assert.equal(odd?.get("status"), "4.0.0");
    assert.equal(parts[2]?.headers.get("content-description"), "Delayed Message Headers");
    assert.equal(parts[2]?.body.toString("latin1"), originalHeaders.toString("latin1"));
    assertNoBareLineBreaks(dsn.message);
    assertLineLimit(dsn.message);
  });

  it("a failure report has no Will-Retry-Until", () => {
    const { parts } = parse(buildDsn(input({ willRetryUntil: now })).message);
    for (const block of statusBlocks(parts[1] as Part)) assert.equal(block.has("will-retry-until"), false);
    assert.equal(parts[2]?.headers.get("content-description"), "Undelivered Message Headers");
  });

  it("keeps every line within 998 octets and truncates a 5000-character diagnostic", () => {
    const long = `550 ${"x".repeat(5000)}`;
    const spaced = `550 ${"word ".repeat(1000)}`;
    const dsn = buildDsn(
      input({
        failed: [
          { address: "bad@example.com", status: "5.1.1", diagnostic: long },
          { address: "gone@example.com", status: "5.1.1", diagnostic: spaced },
        ],
        originalHeaders: Buffer.from(`Subject: ${"y".repeat(3000)}\r\nX-Ok: 1\r\n`, "latin1"),
      }),
    );
    assertLineLimit(dsn.message);
    assertNoBareLineBreaks(dsn.message);
    const { parts } = parse(dsn.message);
    const [, first, second] = statusBlocks(parts[1] as Part);
    const diagnostic = first?.get("diagnostic-code") ?? "";
    assert.ok(diagnostic.startsWith("smtp; 550 xxx"));
    assert.ok(diagnostic.length <= 1000, `diagnostic of ${diagnostic.length} characters`);
    assert.ok((second?.get("diagnostic-code") ?? "").length <= 1000);
    assert.match(parts[2]?.body.toString("latin1") ?? "", /\r\nX-Ok: 1\r\n$/);
  });

  it("limits the original headers to 64 KiB, cut at a line end", () => {
    const line = `X-Filler: ${"z".repeat(88)}\r\n`; // 100 octets
    const dsn = buildDsn(input({ originalHeaders: Buffer.from(line.repeat(1000), "latin1") }));
    const { parts } = parse(dsn.message);
    const body = parts[2]?.body ?? Buffer.alloc(0);
    assert.ok(body.length <= 64 * 1024, `${body.length} octets`);
    assert.ok(body.length > 64 * 1024 - 100);
    assert.equal(body.length % 100, 0, "whole lines only");
  });

  it("writes a non-ASCII recipient as an RFC 6533 utf-8 address in 7-bit", () => {
    const dsn = buildDsn(
      input({
        failed: [{ address: "jösé+tag@exämple.com", status: "5.1.1", diagnostic: "550 unknown user jösé" }],
      }),
    );
    const { parts } = parse(dsn.message);
    const status = parts[1]?.body ?? Buffer.alloc(0);
    assert.ok(
      status.every((byte) => byte < 0x80),
      "delivery-status part is 7-bit",
    );
    assert.ok(
      (parts[0]?.body ?? Buffer.alloc(0)).every((byte) => byte < 0x80),
      "notification is 7-bit",
    );
    const [, block] = statusBlocks(parts[1] as Part);
    assert.equal(block?.get("final-recipient"), "utf-8; j\\x{F6}s\\x{E9}\\x{2B}tag@ex\\x{E4}mple.com");
    assert.equal(block?.get("diagnostic-code"), "smtp; 550 unknown user j?s?");
  });

  it("keeps 8-bit original headers and declares them 8bit", () => {
    const raw = Buffer.concat([Buffer.from("Subject: caf", "latin1"), Buffer.from("é\r\n", "utf8")]);
    const dsn = buildDsn(input({ originalHeaders: raw }));
    const { headers, parts } = parse(dsn.message);
    assert.equal(parts[2]?.headers.get("content-transfer-encoding"), "8bit");
    assert.equal(headers.get("content-transfer-encoding"), "8bit");
    assert.deepEqual(parts[2]?.body, raw);
    assert.ok((parts[1]?.body ?? Buffer.alloc(0)).every((byte) => byte < 0x80));
  });

  it("picks a fresh Message-ID and boundary each time that does not occur in the content", () => {
    const a = buildDsn(input());
    const b = buildDsn(input());
    assert.notEqual(a.messageId, b.messageId);
    const boundaryOf = (m: Buffer) => /boundary="([^"]+)"/.exec(m.toString("latin1"))?.[1] ?? "";
    assert.notEqual(boundaryOf(a.message), boundaryOf(b.message));
    const boundary = boundaryOf(a.message);
    const text = a.message.toString("latin1");
    // the boundary appears only in Content-Type and in the four delimiter lines
    assert.equal(text.split(boundary).length - 1, 1 + 4);
  });
});
