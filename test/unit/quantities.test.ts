import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseByteSize, parseDuration } from "#api";

describe("parseDuration", () => {
  const valid: Array<[string, number]> = [
    ["250ms", 250],
    ["90s", 90_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["5d", 5 * 86_400_000],
    ["1h30m", 5_400_000],
    ["1d12h", 36 * 3_600_000],
    ["2m30s500ms", 150_500],
    ["1m1ms", 60_001],
    ["0s", 0],
    ["007s", 7000],
  ];
  for (const [text, ms] of valid) {
    it(`parses ${JSON.stringify(text)} as ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }

  const invalid = ["5", "h", "-1s", "1.5h", "", " 1h", "1h ", "1 h", "1H", "1w", "1y", "1hh", "h1", "1s-", "+1s", "1e3s", "１s", "1h\n"];
  for (const text of invalid) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.equal(parseDuration(text), undefined);
    });
  }
});

describe("parseByteSize", () => {
  const valid: Array<[number | string, number]> = [
    ["50Mi", 50 * 1024 * 1024],
    ["20M", 20_000_000],
    ["1Ki", 1024],
    ["3k", 3000],
    ["2Gi", 2 * 1024 ** 3],
    ["1G", 1e9],
    ["52428800", 52_428_800],
    [1024, 1024],
    [0, 0],
    ["0", 0],
  ];
  for (const [value, bytes] of valid) {
    it(`parses ${JSON.stringify(value)} as ${bytes} bytes`, () => {
      assert.equal(parseByteSize(value), bytes);
    });
  }

  const invalid: Array<number | string> = [
    -1,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    2 ** 53,
    "1Ti",
    "",
    "Mi",
    "-1",
    "1.5Mi",
    "50mi",
    "50 Mi",
    "50MB",
    "1K",
    "1e6",
    " 1",
    "0x10",
    "50Mi\n",
  ];
  for (const value of invalid) {
    it(`refuses ${typeof value === "number" ? String(value) : JSON.stringify(value)}`, () => {
      assert.equal(parseByteSize(value), undefined);
    });
  }
});
