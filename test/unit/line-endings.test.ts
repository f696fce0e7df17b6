import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { LineEndingNormaliser } from "../../relay/src/smtp/index.ts";

const CR = 0x0d;
const LF = 0x0a;

function run(chunks: Buffer[]): { out: Buffer; bare: number } {
  const n = new LineEndingNormaliser();
  const parts = chunks.map((c) => Buffer.from(n.push(c)));
  parts.push(Buffer.from(n.end()));
  return { out: Buffer.concat(parts), bare: n.bareCount };
}

/** Reference model over the whole input: every CR or LF not part of a CRLF pair becomes CRLF. */
function reference(input: Buffer): { out: Buffer; bare: number } {
  const out: number[] = [];
  let bare = 0;
  for (let i = 0; i < input.length; i++) {
    const b = input[i] as number;
    if (b === CR && input[i + 1] === LF) {
      out.push(CR, LF);
      i++;
    } else if (b === CR || b === LF) {
      bare++;
      out.push(CR, LF);
    } else {
      out.push(b);
    }
  }
  return { out: Buffer.from(out), bare };
}

function assertNoBareNewline(buf: Buffer): void {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === CR) assert.equal(buf[i + 1], LF, `bare CR at ${i} in ${JSON.stringify(buf.toString("latin1"))}`);
    if (buf[i] === LF) assert.equal(buf[i - 1], CR, `bare LF at ${i} in ${JSON.stringify(buf.toString("latin1"))}`);
  }
}

/** Small deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("LineEndingNormaliser", () => {
  it("returns a clean CRLF chunk untouched (the same Buffer)", () => {
    const n = new LineEndingNormaliser();
    const chunk = Buffer.from("Subject: hi\r\n\r\nbody\r\n.\r\n");
    assert.equal(n.push(chunk), chunk);
    assert.equal(n.bareCount, 0);
    assert.equal(n.end().length, 0);
  });

  it("returns a clean chunk without any line ending untouched", () => {
    const n = new LineEndingNormaliser();
    const chunk = Buffer.from("just text");
    assert.equal(n.push(chunk), chunk);
    assert.equal(n.bareCount, 0);
  });

  it("rewrites bare LF to CRLF", () => {
    const { out, bare } = run([Buffer.from("a\nb\r\nc\n")]);
    assert.equal(out.toString("latin1"), "a\r\nb\r\nc\r\n");
    assert.equal(bare, 2);
  });

  it("rewrites a leading bare LF", () => {
    const { out, bare } = run([Buffer.from("\nx")]);
    assert.equal(out.toString("latin1"), "\r\nx");
    assert.equal(bare, 1);
  });

  it("rewrites bare CR to CRLF", () => {
    const { out, bare } = run([Buffer.from("a\rb\r\r\n")]);
    assert.equal(out.toString("latin1"), "a\r\nb\r\n\r\n");
    assert.equal(bare, 2);
  });

  it("treats LF\\r as two bare newlines, not a pair", () => {
    const { out, bare } = run([Buffer.from("a\n\rb")]);
    assert.equal(out.toString("latin1"), "a\r\n\r\nb");
    assert.equal(bare, 2);
  });

  it("smuggling sequence <LF>.<LF> becomes an ordinary CRLF.CRLF line", () => {
    const { out, bare } = run([Buffer.from("text\n.\nMAIL FROM:<x@y>\r\n")]);
    assert.equal(out.toString("latin1"), "text\r\n.\r\nMAIL FROM:<x@y>\r\n");
    assert.equal(bare, 2);
  });

  it("joins a CR at the end of one chunk and an LF at the start of the next into one CRLF", () => {
    const n = new LineEndingNormaliser();
    const a = Buffer.from("line one\r");
    const b = Buffer.from("\nline two\r\n");
    const outA = n.push(a);
    const outB = n.push(b);
    assert.equal(Buffer.concat([outA, outB, n.end()]).toString("latin1"), "line one\r\nline two\r\n");
    assert.equal(n.bareCount, 0);
  });

  it("joins a split CRLF even when the second chunk needs rewriting", () => {
    const n = new LineEndingNormaliser();
    const out = Buffer.concat([n.push(Buffer.from("a\r")), n.push(Buffer.from("\nb\nc")), n.end()]);
    assert.equal(out.toString("latin1"), "a\r\nb\r\nc");
    assert.equal(n.bareCount, 1);
  });

  it("finishes a CR at a chunk end followed by another byte as a bare CR", () => {
    const n = new LineEndingNormaliser();
    const out = Buffer.concat([n.push(Buffer.from("a\r")), n.push(Buffer.from("b")), n.end()]);
    assert.equal(out.toString("latin1"), "a\r\nb");
    assert.equal(n.bareCount, 1);
  });

  it("handles a CR chunk followed by another CR chunk", () => {
    const n = new LineEndingNormaliser();
    const out = Buffer.concat([n.push(Buffer.from("\r")), n.push(Buffer.from("\r")), n.push(Buffer.from("\n")), n.end()]);
    assert.equal(out.toString("latin1"), "\r\n\r\n");
    assert.equal(n.bareCount, 1);
  });

  it("keeps a pending CR across an empty chunk", () => {
    const n = new LineEndingNormaliser();
    const empty = Buffer.alloc(0);
    const out = Buffer.concat([n.push(Buffer.from("a\r")), n.push(empty), n.push(Buffer.from("\nb")), n.end()]);
    assert.equal(out.toString("latin1"), "a\r\nb");
    assert.equal(n.bareCount, 0);
  });

  it("end() completes a CR left pending at the end of data", () => {
    const n = new LineEndingNormaliser();
    const first = n.push(Buffer.from("last line\r"));
    assert.equal(n.bareCount, 0, "a trailing CR is not judged until the next byte or end()");
    const tail = n.end();
    assert.deepEqual([...tail], [LF]);
    assert.equal(Buffer.concat([first, tail]).toString("latin1"), "last line\r\n");
    assert.equal(n.bareCount, 1);
    assert.equal(n.end().length, 0, "end() is idempotent");
    assert.equal(n.bareCount, 1);
  });

  it("end() without a pending CR adds nothing", () => {
    const n = new LineEndingNormaliser();
    n.push(Buffer.from("x\r\n"));
    assert.equal(n.end().length, 0);
    assert.equal(n.bareCount, 0);
  });

  it("property: any split of random CR/LF/'a' data gives the one-chunk result, with no bare CR or LF", () => {
    const alphabet = [CR, LF, 0x61];
    for (let seed = 1; seed <= 2000; seed++) {
      const random = prng(seed);
      const length = Math.floor(random() * 40);
      const input = Buffer.from(Array.from({ length }, () => alphabet[Math.floor(random() * 3)] as number));
      const whole = run([input]);
      const expected = reference(input);
      assert.deepEqual(whole.out, expected.out, `seed ${seed}: one chunk differs from the reference`);
      assert.equal(whole.bare, expected.bare, `seed ${seed}: bare count (one chunk)`);

      // Split at random points, including empty and single-byte chunks.
      const chunks: Buffer[] = [];
      let at = 0;
      while (at < input.length) {
        const size = Math.floor(random() * 5);
        chunks.push(input.subarray(at, at + size));
        at += size;
      }
      const split = run(chunks);
      assert.deepEqual(split.out, whole.out, `seed ${seed}: split ${JSON.stringify(chunks.map((c) => c.toString("latin1")))}`);
      assert.equal(split.bare, whole.bare, `seed ${seed}: bare count (split)`);
      assertNoBareNewline(split.out);
    }
  });

  it("property: every possible single split point of a tricky input agrees", () => {
    const input = Buffer.from("\r\r\n\n\r\na\r\nb\n\r");
    const whole = run([input]);
    assert.equal(whole.bare, reference(input).bare);
    for (let cut = 0; cut <= input.length; cut++) {
      const split = run([input.subarray(0, cut), input.subarray(cut)]);
      assert.deepEqual(split.out, whole.out, `cut at ${cut}`);
      assert.equal(split.bare, whole.bare, `cut at ${cut}`);
      assertNoBareNewline(split.out);
    }
  });
});
