import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeJob, decodeJobRecord, encodeJob, InvalidJobError, type DeliveryJob } from "../../relay/src/queue/delivery-job.ts";

const job: DeliveryJob = {
  v: 1,
  queueId: "0MWSIQ00000000000000000001",
  kind: "relay",
  domain: "example.com",
  sender: "s@client.test",
  recipients: ["a@example.com"],
  size: 100,
  eightBit: false,
  smtpUtf8: false,
  acceptedAt: 1,
  expiresAt: 2,
  attempts: 0,
};

describe("delivery jobs", () => {
  it("round-trip, filter headers included", () => {
    const withHeaders = { ...job, headers: "X-Spam-Status: No, score=0.1 action=no action\r\n" };
    assert.deepEqual(decodeJob(encodeJob(withHeaders)), withHeaders);
  });

  it("refuse malformed jobs", () => {
    assert.throws(() => decodeJob(new TextEncoder().encode("{")), InvalidJobError);
    assert.throws(() => decodeJob(encodeJob({ ...job, v: 2 } as unknown as DeliveryJob)), InvalidJobError);
  });

  it("keep the time the delay warning was sent through a re-publish, and refuse one that is not a time", () => {
    const warned = { ...job, delayWarnedAt: 1_700_000_014_400 };
    assert.deepEqual(decodeJobRecord(encodeJob(warned)).job, warned);
    assert.throws(() => decodeJob(encodeJob({ ...job, delayWarnedAt: "yes" } as unknown as DeliveryJob)), InvalidJobError);
  });

  it("refuse header text that would not be header lines (no injected body or bare LF)", () => {
    for (const headers of ["X-A: 1\r\n\r\nbody", "X-A: 1\n", "no colon\r\n", "X-A: 1"]) {
      assert.throws(() => decodeJob(encodeJob({ ...job, headers })), InvalidJobError, JSON.stringify(headers));
    }
  });

  it("carry an inline body after the job, byte for byte (line feeds, CR LF and 8-bit included)", () => {
    const body = Buffer.concat([Buffer.from("Subject: x\r\n\r\nline\nbare LF, \u00e9t\u00e9\r\n.\r\n", "utf8"), Buffer.from([0, 0x0a, 0xff])]);
    const inline: DeliveryJob = { ...job, size: body.length, inline: true };
    const record = decodeJobRecord(encodeJob(inline, body));
    assert.deepEqual(record.job, inline);
    assert.ok(record.body);
    assert.equal(Buffer.compare(record.body, body), 0);
    // A job that is not inline has no body, and its record is the bare JSON of before.
    assert.deepEqual(decodeJobRecord(encodeJob(job)), { job });
    assert.equal(new TextDecoder().decode(encodeJob(job)), JSON.stringify(job));
  });

  it("refuse inline records whose body is missing, of the wrong size, or attached to a spooled job", () => {
    const inline: DeliveryJob = { ...job, size: 3, inline: true };
    assert.throws(() => encodeJob(inline), InvalidJobError);
    assert.throws(() => encodeJob(job, Buffer.from("abc")), InvalidJobError);
    assert.throws(() => decodeJobRecord(new TextEncoder().encode(JSON.stringify(inline))), /without its body/);
    assert.throws(() => decodeJobRecord(encodeJob({ ...inline, size: 4 }, Buffer.from("abc"))), /3 octets, the job says 4/);
    const trailing = Buffer.concat([Buffer.from(JSON.stringify(job)), Buffer.from("\nabc")]);
    assert.throws(() => decodeJobRecord(trailing), /trailing data/);
  });
});
