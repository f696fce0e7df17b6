import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { receivedHeader, receivedTls, type ReceivedInfo } from "../../relay/src/receive/received-header.ts";
import { rfc5322Date } from "../../relay/src/smtp/index.ts";

const date = new Date(Date.UTC(2026, 10, 22, 23, 9, 7));

function info(overrides: Partial<ReceivedInfo> = {}): ReceivedInfo {
  return {
    heloName: "mail.sender.example",
    clientHostname: "mail.sender.example",
    clientAddress: "192.0.2.10",
    byHostname: "mx2.example.com",
    protocol: "ESMTP",
    queueId: "01JQ7Z8X9Y",
    recipients: ["alice@example.com"],
    date,
    ...overrides,
  };
}

/** The header must be one field: CRLF only ever followed by folding whitespace, and one at the end. */
function assertSingleHeaderField(header: string): void {
  assert.ok(header.startsWith("Received: "), header);
  assert.ok(header.endsWith("\r\n"), "ends with CRLF");
  const body = header.slice(0, -2);
  assert.doesNotMatch(body, /\r(?!\n[ \t])/, "no CR except in a fold");
  assert.doesNotMatch(body, /(?<!\r)\n/, "no bare LF");
  assert.doesNotMatch(body, /\r\n(?![ \t])/, "every line break is a fold");
  assert.doesNotMatch(header, /\r\n\r\n/, "no blank line");
}

describe("receivedHeader", () => {
  it("formats from/by/with/id/for/date", () => {
    const header = receivedHeader(info());
    assert.equal(
      header,
      "Received: from mail.sender.example (mail.sender.example [192.0.2.10])\r\n" +
        "\tby mx2.example.com (mxwarden) with ESMTP id 01JQ7Z8X9Y\r\n" +
        "\tfor <alice@example.com>;\r\n" +
        "\tSun, 22 Nov 2026 23:09:07 +0000\r\n",
    );
    assertSingleHeaderField(header);
  });

  it("writes 'for' only for exactly one recipient", () => {
    const many = receivedHeader(info({ recipients: ["alice@example.com", "bob@example.com"] }));
    assert.doesNotMatch(many, /\bfor\b/);
    assert.doesNotMatch(many, /alice|bob/);
    assert.match(many, /id 01JQ7Z8X9Y;\r\n\tSun, 22 Nov 2026 23:09:07 \+0000\r\n$/);
    assertSingleHeaderField(many);

    const none = receivedHeader(info({ recipients: [] }));
    assert.doesNotMatch(none, /\bfor\b/);
    assertSingleHeaderField(none);
  });

  it("uses 'unknown' for an empty HELO or client host name", () => {
    const header = receivedHeader(info({ heloName: "", clientHostname: "" }));
    assert.match(header, /^Received: from unknown \(unknown \[192\.0\.2\.10\]\)\r\n/);
  });

  it("a hostile HELO with CRLF and spaces cannot inject a header line", () => {
    const heloName = "evil.example\r\nX-Injected: yes\r\n\r\nbody? hello world";
    const header = receivedHeader(info({ heloName, clientHostname: "ptr.example\r\nX-Also: 1" }));
    assertSingleHeaderField(header);
    assert.doesNotMatch(header, /^X-Injected:/m);
    assert.doesNotMatch(header, /^X-Also:/m);
    assert.doesNotMatch(header, /\r\n\r\n/);
    // The HELO is one token: no whitespace inside it, so it cannot fake later clauses either.
    const firstLine = header.split("\r\n")[0] ?? "";
    assert.match(firstLine, /^Received: from (\S+) \((\S+) \[192\.0\.2\.10\]\)$/);
    assert.equal(firstLine, "Received: from evil.example??X-Injected:?yes????body??hello?world (ptr.example??X-Also:?1 [192.0.2.10])");
  });

  it("a HELO pretending to be other clauses stays inside the from clause", () => {
    const header = receivedHeader(info({ heloName: "x by trusted.example with ESMTPS id 1;" }));
    assert.match(header, /^Received: from x\?by\?trusted\.example\?with\?ESMTPS\?id\?1; \(/);
    assertSingleHeaderField(header);
  });

  it("replaces tabs, NUL, DEL and non-ASCII in every client-supplied value", () => {
    const header = receivedHeader(
      info({
        heloName: "a\tb\u0000c\u007fd",
        clientHostname: "bücher.example",
        clientAddress: "192.0.2.10\r\n",
        recipients: ["al ice\r\n@example.com"],
      }),
    );
    assert.match(header, /from a\?b\?c\?d \(b\?cher\.example \[192\.0\.2\.10\?\?\]\)/);
    assert.match(header, /\tfor <al\?ice\?\?@example\.com>;/);
    assert.doesNotMatch(header, /[^\x20-\x7e\r\n\t]/, "only printable ASCII and folds");
    assertSingleHeaderField(header);
  });

  it("limits overlong values to 255 characters", () => {
    const header = receivedHeader(info({ heloName: "h".repeat(1000) }));
    assert.match(header, /^Received: from h{255} \(/);
  });

  it("ESMTPS with a tls clause", () => {
    const header = receivedHeader(info({ protocol: "ESMTPS", tls: { protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" } }));
    assert.equal(
      header,
      "Received: from mail.sender.example (mail.sender.example [192.0.2.10])\r\n" +
        "\tby mx2.example.com (mxwarden) with ESMTPS id 01JQ7Z8X9Y\r\n" +
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n" +
        "\tfor <alice@example.com>;\r\n" +
        "\tSun, 22 Nov 2026 23:09:07 +0000\r\n",
    );
    assertSingleHeaderField(header);
  });

  it("names the protocol version, then the cipher, of what node:tls reports", () => {
    // What TLSSocket#getCipher() returns for a TLS 1.3 and a TLS 1.2 session.
    const tls13 = receivedHeader(
      info({ protocol: "ESMTPS", tls: receivedTls({ name: "TLS_AES_256_GCM_SHA384", standardName: "TLS_AES_256_GCM_SHA384", version: "TLSv1.3" }) }),
    );
    assert.match(tls13, /\r\n\t\(using TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384\)\r\n/);
    const tls12 = receivedHeader(
      info({
        protocol: "ESMTPS",
        tls: receivedTls({ name: "ECDHE-RSA-AES256-GCM-SHA384", standardName: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", version: "TLSv1.2" }),
      }),
    );
    assert.match(tls12, /\r\n\t\(using TLSv1\.2 with cipher ECDHE-RSA-AES256-GCM-SHA384\)\r\n/);
  });

  it("no tls clause without TLS", () => {
    assert.doesNotMatch(receivedHeader(info()), /using/);
  });

  it("tls values are sanitised too", () => {
    const header = receivedHeader(info({ protocol: "ESMTPS", tls: { protocol: "TLSv1.3\r\nX-Bad: 1", cipher: "A B" } }));
    assert.match(header, /\(using TLSv1\.3\?\?X-Bad:\?1 with cipher A\?B\)/);
    assertSingleHeaderField(header);
  });
});

describe("rfc5322Date", () => {
  it("formats UTC with a numeric zone", () => {
    assert.equal(rfc5322Date(date), "Sun, 22 Nov 2026 23:09:07 +0000");
    assert.equal(rfc5322Date(new Date(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
  });
});
