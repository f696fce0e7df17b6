import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatReply, SmtpReplyError, SmtpReplyReader, type SmtpReply, type SmtpReplyErrorKind } from "../../relay/src/smtp/index.ts";

interface Case {
  name: string;
  /** What the server sends, in these chunks. */
  chunks: string[];
  /** The replies read, in order, before the reader waits for more (or fails). */
  replies: SmtpReply[];
  /** How reading ends after those replies: it waits for more text, or fails with this kind. */
  then?: SmtpReplyErrorKind;
  maxLength?: number;
}

const cases: Case[] = [
  {
    name: "one line with an enhanced code",
    chunks: ["550 5.1.1 <a@b.example>: user unknown\r\n"],
    replies: [{ code: 550, enhanced: "5.1.1", text: "<a@b.example>: user unknown" }],
  },
  { name: "one line without an enhanced code", chunks: ["220 mx.example ESMTP\r\n"], replies: [{ code: 220, text: "mx.example ESMTP" }] },
  { name: "a code alone", chunks: ["250\r\n"], replies: [{ code: 250, text: "" }] },
  { name: "a code and an enhanced code alone", chunks: ["250 2.0.0\r\n"], replies: [{ code: 250, enhanced: "2.0.0", text: "" }] },
  {
    name: "multi-line, the enhanced code on every line taken off",
    chunks: ["550-5.7.1 The message was refused\r\n550-5.7.1 see https://help.example\r\n550 5.7.1 for details\r\n"],
    replies: [{ code: 550, enhanced: "5.7.1", text: "The message was refused\nsee https://help.example\nfor details" }],
  },
  {
    name: "multi-line EHLO: keywords are text, not codes",
    chunks: ["250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10240000\r\n"],
    replies: [{ code: 250, text: "mx.example\nPIPELINING\n8BITMIME\nSIZE 10240000" }],
  },
  {
    name: "multi-line with the enhanced code on the first line only",
    chunks: ["451-4.3.0 busy\r\n451 try later\r\n"],
    replies: [{ code: 451, enhanced: "4.3.0", text: "busy\ntry later" }],
  },
  {
    name: "a reply split anywhere across chunks, and pipelined replies in one chunk",
    chunks: ["250-first\r", "\n25", "0 second\r\n250 2.1.0 Ok\r\n354 go ahead\r\n"],
    replies: [
      { code: 250, text: "first\nsecond" },
      { code: 250, enhanced: "2.1.0", text: "Ok" },
      { code: 354, text: "go ahead" },
    ],
  },
  { name: "bare LF line ends", chunks: ["250-a\n250 b\n"], replies: [{ code: 250, text: "a\nb" }] },
  { name: "an incomplete reply waits for more", chunks: ["250-a\r\n250 b"], replies: [] },
  { name: "a continuation line ending the text waits for the last line", chunks: ["250-a\r\n"], replies: [] },
  {
    name: "something like an enhanced code that is not one stays text",
    chunks: ["550 5.1.1x no\r\n550 6.1.1 no\r\n250 2.0.0.1 no\r\n"],
    replies: [
      { code: 550, text: "5.1.1x no" },
      { code: 550, text: "6.1.1 no" },
      { code: 250, text: "2.0.0.1 no" },
    ],
  },
  { name: "malformed: not a reply code", chunks: ["250 Ok\r\n+OK POP3 ready\r\n"], replies: [{ code: 250, text: "Ok" }], then: "malformed" },
  { name: "malformed: a code outside RFC 5321's grammar", chunks: ["650 what\r\n"], replies: [], then: "malformed" },
  { name: "malformed: no separator after the code", chunks: ["250Ok\r\n"], replies: [], then: "malformed" },
  { name: "malformed: the code changes within a multi-line reply", chunks: ["250-a\r\n550 b\r\n"], replies: [], then: "malformed" },
  { name: "malformed: an empty line", chunks: ["\r\n"], replies: [], then: "malformed" },
  { name: "oversized: one endless line", chunks: ["250 ", "x".repeat(100)], replies: [], then: "too-long", maxLength: 64 },
  { name: "oversized: a complete line over the limit", chunks: [`250 ${"x".repeat(100)}\r\n`], replies: [], then: "too-long", maxLength: 64 },
  {
    name: "oversized: a multi-line reply whose lines fit but whose whole does not",
    chunks: [Array.from({ length: 10 }, () => "250-xxxxxxxxxx\r\n").join("")],
    replies: [],
    then: "too-long",
    maxLength: 64,
  },
  {
    name: "a reply exactly at the limit is read",
    chunks: [`250 ${"x".repeat(58)}\r\n`],
    replies: [{ code: 250, text: "x".repeat(58) }],
    maxLength: 64,
  },
  {
    name: "the limit is per reply: many small replies are fine",
    chunks: [Array.from({ length: 10 }, () => "250 2.1.5 Ok\r\n").join("")],
    replies: Array.from({ length: 10 }, () => ({ code: 250, enhanced: "2.1.5", text: "Ok" })),
    maxLength: 64,
  },
];

/** Every reply the reader gives for the chunks, and how it ended: waiting (undefined) or an error kind. */
function read(chunks: string[], maxLength?: number): { replies: SmtpReply[]; then: SmtpReplyErrorKind | undefined } {
  const reader = new SmtpReplyReader(maxLength);
  const replies: SmtpReply[] = [];
  try {
    for (const chunk of chunks) {
      reader.push(chunk);
      for (let reply = reader.next(); reply; reply = reader.next()) replies.push(reply);
    }
  } catch (err) {
    assert.ok(err instanceof SmtpReplyError, `unexpected ${String(err)}`);
    return { replies, then: err.kind };
  }
  return { replies, then: undefined };
}

describe("SMTP reply reader (RFC 5321 §4.2, RFC 3463 enhanced codes)", () => {
  for (const c of cases) {
    it(c.name, () => {
      const got = read(c.chunks, c.maxLength);
      assert.deepEqual(got.replies, c.replies);
      assert.equal(got.then, c.then);
    });
  }

  it("reads the same replies whatever the chunking, one character at a time included", () => {
    const text = "220-mx.example\r\n220 ESMTP\r\n250-mx.example\r\n250 PIPELINING\r\n550 5.1.1 unknown\r\n";
    assert.deepEqual(read([...text]), read([text]));
    assert.equal(read([text]).replies.length, 3);
  });
});

describe("formatReply", () => {
  it("gives back the reply as the server wrote it", () => {
    for (const wire of [
      "550 5.1.1 <a@b.example>: user unknown",
      "250-mx.example\n250-PIPELINING\n250 SIZE 100",
      "451-4.3.0 a\n451-4.3.0\n451 4.3.0 b",
      "250",
      "250 2.0.0",
      "250-a\n250",
    ]) {
      const [reply] = read([`${wire.replace(/\n/g, "\r\n")}\r\n`]).replies;
      assert.ok(reply, wire);
      assert.equal(formatReply(reply), wire);
    }
  });
});
