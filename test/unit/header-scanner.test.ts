import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { HeaderScanner } from "../../relay/src/receive/header-scanner.ts";

const MAX_HEADER_BYTES = 256 * 1024;

function feed(chunks: string[]): HeaderScanner {
  const scanner = new HeaderScanner();
  for (const c of chunks) scanner.push(Buffer.from(c, "latin1"));
  return scanner;
}

/** Every way of cutting `text` into two chunks. */
function* twoWaySplits(text: string): Generator<[string, string]> {
  for (let cut = 0; cut <= text.length; cut++) yield [text.slice(0, cut), text.slice(cut)];
}

describe("HeaderScanner", () => {
  const message = "Received: from a\r\nReceived: from b\r\nSubject: hi\r\n\r\nbody line\r\nReceived: not a header\r\n";
  const headerSection = "Received: from a\r\nReceived: from b\r\nSubject: hi\r\n";

  it("finds the end of the header section in one chunk", () => {
    const s = feed([message]);
    assert.equal(s.complete, true);
    assert.equal(s.header.toString("latin1"), headerSection);
    assert.equal(s.receivedCount(), 2);
  });

  it("finds the end of the header section wherever the chunk boundary falls", () => {
    for (const [a, b] of twoWaySplits(message)) {
      const s = feed([a, b]);
      assert.equal(s.complete, true, `cut after ${JSON.stringify(a)}`);
      assert.equal(s.header.toString("latin1"), headerSection, `cut after ${JSON.stringify(a)}`);
      assert.equal(s.receivedCount(), 2, `cut after ${JSON.stringify(a)}`);
    }
  });

  it("finds the end of the header section fed one byte at a time", () => {
    const s = feed([...message]);
    assert.equal(s.complete, true);
    assert.equal(s.header.toString("latin1"), headerSection);
  });

  it("is not complete while the blank line has not arrived", () => {
    const s = feed(["Subject: hi\r\n", "From: a@b.example\r\n"]);
    assert.equal(s.complete, false);
    s.push(Buffer.from("\r\nbody"));
    assert.equal(s.complete, true);
    assert.equal(s.header.toString("latin1"), "Subject: hi\r\nFrom: a@b.example\r\n");
  });

  it("ignores everything pushed after the header section", () => {
    const s = feed(["Subject: x\r\n\r\n"]);
    s.push(Buffer.from("Received: late\r\n\r\n"));
    assert.equal(s.header.toString("latin1"), "Subject: x\r\n");
    assert.equal(s.receivedCount(), 0);
  });

  it("counts Received: case-insensitively, only at line starts, not X-Received or folded lines", () => {
    const s = feed([
      "received: from a\r\n" +
        "RECEIVED: from b\r\n" +
        "ReCeIvEd:from c\r\n" +
        "X-Received: from d\r\n" +
        "Subject: Received: in a value\r\n" +
        "Comments: folded\r\n Received: continuation line\r\n" +
        "Received-SPF: pass\r\n" +
        "\r\n" +
        "Received: in the body\r\n",
    ]);
    assert.equal(s.complete, true);
    assert.equal(s.receivedCount(), 3);
  });

  it("does not count Received lines in the body, even across chunks", () => {
    const s = feed(["Received: one\r\n\r", "\nReceived: two\r\nReceived: three\r\n"]);
    assert.equal(s.receivedCount(), 1);
  });

  it("message without a body: the whole message is the header section after finish()", () => {
    const s = feed(["Received: from a\r\n", "Subject: no body\r\n"]);
    assert.equal(s.complete, false);
    assert.equal(s.receivedCount(), 0, "nothing is judged before the header section is known");
    s.finish();
    assert.equal(s.header.toString("latin1"), "Received: from a\r\nSubject: no body\r\n");
    assert.equal(s.receivedCount(), 1);
    s.push(Buffer.from("Received: after finish\r\n"));
    assert.equal(s.receivedCount(), 1, "push after finish() is ignored");
  });

  it("finish() after a complete header section changes nothing", () => {
    const s = feed(["A: b\r\n\r\nbody"]);
    s.finish();
    assert.equal(s.complete, true);
    assert.equal(s.header.toString("latin1"), "A: b\r\n");
  });

  it("empty message: finish() leaves an empty header", () => {
    const s = new HeaderScanner();
    s.finish();
    assert.equal(s.header.length, 0);
    assert.equal(s.receivedCount(), 0);
  });

  it("message starting with an empty line has no headers", () => {
    const s = feed(["\r\nReceived: this is body text\r\n"]);
    assert.equal(s.complete, true);
    assert.equal(s.header.length, 0);
    assert.equal(s.receivedCount(), 0);
  });

  it("message starting with an empty line split between CR and LF has no headers", () => {
    const s = feed(["\r", "\nReceived: body\r\n\r\nReceived: body\r\n"]);
    assert.equal(s.complete, true);
    assert.equal(s.header.length, 0);
    assert.equal(s.receivedCount(), 0);
  });

  it("over-long header section: stops buffering at 256 KiB", () => {
    const s = new HeaderScanner();
    const line = "Received: from x\r\n"; // 18 bytes
    const chunk = Buffer.from(line.repeat(1000)); // 18000 bytes, no blank line
    let pushed = 0;
    while (pushed <= MAX_HEADER_BYTES) {
      assert.equal(s.header.length, 0, "nothing is kept as header while still searching");
      s.push(chunk);
      pushed += chunk.length;
    }
    assert.equal(s.complete, false, "no end of header section was seen");
    assert.equal(s.header.length, MAX_HEADER_BYTES);
    assert.deepEqual(s.header, Buffer.from(line.repeat(Math.ceil(MAX_HEADER_BYTES / line.length))).subarray(0, MAX_HEADER_BYTES));
    const counted = s.receivedCount();
    assert.equal(counted, Math.ceil(MAX_HEADER_BYTES / line.length));

    // Later data, even a blank line, is no longer looked at.
    s.push(Buffer.from("\r\n\r\nReceived: more\r\n"));
    s.finish();
    assert.equal(s.complete, false);
    assert.equal(s.header.length, MAX_HEADER_BYTES);
    assert.equal(s.receivedCount(), counted);
  });

  it("a header section of exactly 256 KiB is still searched", () => {
    const s = new HeaderScanner();
    const filler = Buffer.alloc(MAX_HEADER_BYTES - 2, "a");
    s.push(filler);
    s.push(Buffer.from("\r\n"));
    assert.equal(s.complete, false);
    s.push(Buffer.from("\r\nbody"));
    assert.equal(s.complete, true);
    assert.equal(s.header.length, MAX_HEADER_BYTES);
  });
});
