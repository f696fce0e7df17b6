import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DotStuffer } from "../../relay/src/deliver/dot-stuffing.ts";

/** What a receiving server makes of DATA (RFC 5321 §4.5.2): lines up to the lone dot, one leading dot removed. */
function unstuff(data: Buffer): string {
  const text = data.toString("latin1");
  assert.ok(text.endsWith("\r\n.\r\n") || text === ".\r\n", `DATA must end with CRLF.CRLF: ${JSON.stringify(text.slice(-8))}`);
  const lines = text.split("\r\n");
  const end = lines.indexOf(".");
  assert.equal(end, lines.length - 2, "the only lone dot is the terminator");
  return lines
    .slice(0, end)
    .map((line) => (line.startsWith(".") ? line.slice(1) : line))
    .join("\r\n");
}

function encode(chunks: string[]): Buffer {
  const stuffer = new DotStuffer();
  return Buffer.concat([...chunks.map((c) => stuffer.push(Buffer.from(c, "latin1"))), stuffer.end()]);
}

describe("DATA encoding (dot-stuffing)", () => {
  it("doubles a dot at the start of every line, the first included", () => {
    assert.equal(encode([".a\r\nb\r\n.\r\n..c\r\n"]).toString("latin1"), "..a\r\nb\r\n..\r\n...c\r\n.\r\n");
  });

  it("stuffs a dot whose line began in the previous chunk", () => {
    assert.equal(encode(["a\r\n", ".b\r\n"]).toString("latin1"), "a\r\n..b\r\n.\r\n");
    assert.equal(encode(["a\r", "\n.b"]).toString("latin1"), "a\r\n..b\r\n.\r\n");
    assert.equal(encode(["a\r\n.", "b\r\n"]).toString("latin1"), "a\r\n..b\r\n.\r\n");
  });

  it("ends an unterminated last line before the dot, and an empty body with the dot alone", () => {
    assert.equal(encode(["a\r\nb"]).toString("latin1"), "a\r\nb\r\n.\r\n");
    assert.equal(encode([]).toString("latin1"), ".\r\n");
  });

  it("turns bare LF and bare CR into CRLF, so no hop sees LF.LF (SMTP smuggling)", () => {
    const data = encode(["a\n.\nMAIL FROM:<x>\r\nb\r.\rc"]).toString("latin1");
    assert.equal(data, "a\r\n..\r\nMAIL FROM:<x>\r\nb\r\n..\r\nc\r\n.\r\n");
  });

  it("round-trips random bodies cut into random chunks", () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = ["a", ".", "\r\n", "\r\n.", "..", "x", " "];
    for (let round = 0; round < 500; round++) {
      let body = "";
      for (let i = random(60); i > 0; i--) body += alphabet[random(alphabet.length)];
      const chunks: string[] = [];
      for (let at = 0; at < body.length; ) {
        const size = 1 + random(8);
        chunks.push(body.slice(at, at + size));
        at += size;
      }
      const expected = body.endsWith("\r\n") ? body.slice(0, -2) : body;
      assert.equal(unstuff(encode(chunks)), expected, `body ${JSON.stringify(body)} in chunks ${JSON.stringify(chunks)}`);
    }
  });
});
