// planSettlement (relay/src/deliver/settlement.ts): what a delivery's per-recipient outcomes make
// of its job, as a table of outcomes and the whole plan each must give.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RecipientOutcome, RecipientResult } from "../../relay/src/deliver/outbound-smtp.ts";
import { delayWarningDueAt, planDeferral, planSettlement, type SettlementInput, type SettlementPlan } from "../../relay/src/deliver/settlement.ts";
import type { DeliveryJob } from "../../relay/src/queue/delivery-job.ts";

const acceptedAt = 1_700_000_000_000;
const now = acceptedAt + 90_000;
const job: DeliveryJob = {
  v: 1,
  queueId: "0000000000000abcdef012345",
  kind: "relay",
  domain: "example.com",
  sender: "s@client.test",
  recipients: ["a@example.com", "b@example.com", "c@example.com"],
  size: 1234,
  eightBit: false,
  smtpUtf8: false,
  acceptedAt,
  expiresAt: acceptedAt + 5 * 86_400_000,
  attempts: 2,
  lastError: "451 4.3.0 earlier",
  lastRemoteMta: "old.example.com",
};

const replies: Record<RecipientResult, { reply: string; status: string }> = {
  delivered: { reply: "250 2.0.0 Ok: queued as 1A2B", status: "2.0.0" },
  temporary: { reply: "451 4.3.2 try again later", status: "4.3.2" },
  permanent: { reply: "550 5.1.1 user unknown", status: "5.1.1" },
};

/** Outcomes for a, b and c in the order given. */
function outcomes(...results: RecipientResult[]): RecipientOutcome[] {
  return results.map((result, i) => ({ recipient: job.recipients[i] ?? "", result, ...replies[result] }));
}

function delivered(recipients: number, remoteMta: string | undefined): SettlementPlan["delivered"] {
  return { recipients, reply: replies.delivered.reply, remoteMta, latencyMs: 90_000, attempt: 3 };
}

function bounce(addresses: string[], remoteMta: string | undefined): SettlementPlan["bounce"] {
  return addresses.map((address) => ({ address, status: "5.1.1", diagnostic: replies.permanent.reply, remoteMta, lastAttempt: new Date(now) }));
}

function defer(recipients: string[], lastError: string, lastRemoteMta: string | undefined, destinationDown = false): SettlementPlan["next"] {
  return { kind: "defer", job: { ...job, recipients, attempts: 3, lastError, lastRemoteMta }, destinationDown, failedAt: now };
}

const primary = "mx1.example.com [192.0.2.1]";
const connectionError = "connect ECONNREFUSED 192.0.2.1:25";

const cases: Array<{ name: string; input: Omit<SettlementInput, "job" | "now">; plan: SettlementPlan }> = [
  {
    name: "every recipient accepted: finish",
    input: { outcomes: outcomes("delivered", "delivered", "delivered"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "delivered", delivered: delivered(3, primary), bounce: undefined, delayWarning: undefined, next: { kind: "finish" } },
  },
  {
    name: "every recipient refused: one bounce for all, finish",
    input: { outcomes: outcomes("permanent", "permanent", "permanent"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "bounced", delivered: undefined, bounce: bounce(job.recipients, primary), delayWarning: undefined, next: { kind: "finish" } },
  },
  {
    name: "every recipient to try again at a primary that answered: defer all",
    input: { outcomes: outcomes("temporary", "temporary", "temporary"), remoteMta: primary, destinationDown: false },
    plan: {
      attemptResult: "deferred",
      delivered: undefined,
      bounce: undefined,
      delayWarning: undefined,
      next: defer(job.recipients, replies.temporary.reply, primary),
    },
  },
  {
    name: "no hop reached: connection failed, the previous remote MTA kept, the outage passed on",
    input: {
      outcomes: job.recipients.map((recipient) => ({ recipient, result: "temporary", reply: connectionError, status: "4.4.1" })),
      remoteMta: undefined,
      destinationDown: true,
    },
    plan: {
      attemptResult: "connection_failed",
      delivered: undefined,
      bounce: undefined,
      delayWarning: undefined,
      next: defer(job.recipients, connectionError, "old.example.com", true),
    },
  },
  {
    name: "some accepted, some to try again: defer only those",
    input: { outcomes: outcomes("delivered", "temporary", "delivered"), remoteMta: primary, destinationDown: false },
    plan: {
      attemptResult: "deferred",
      delivered: delivered(2, primary),
      bounce: undefined,
      delayWarning: undefined,
      next: defer(["b@example.com"], replies.temporary.reply, primary),
    },
  },
  {
    name: "some accepted, some refused: bounce those, finish",
    input: { outcomes: outcomes("permanent", "delivered", "delivered"), remoteMta: primary, destinationDown: false },
    plan: {
      attemptResult: "bounced",
      delivered: delivered(2, primary),
      bounce: bounce(["a@example.com"], primary),
      delayWarning: undefined,
      next: { kind: "finish" },
    },
  },
  {
    name: "refused and to try again without a remote MTA: deferred, not a connection failure",
    input: { outcomes: outcomes("permanent", "temporary", "temporary"), remoteMta: undefined, destinationDown: false },
    plan: {
      attemptResult: "deferred",
      delivered: undefined,
      bounce: bounce(["a@example.com"], undefined),
      delayWarning: undefined,
      next: defer(["b@example.com", "c@example.com"], replies.temporary.reply, "old.example.com"),
    },
  },
  {
    name: "one of each: bounce one, defer one",
    input: { outcomes: outcomes("temporary", "permanent", "delivered"), remoteMta: primary, destinationDown: false },
    plan: {
      attemptResult: "deferred",
      delivered: delivered(1, primary),
      bounce: bounce(["b@example.com"], primary),
      delayWarning: undefined,
      next: defer(["a@example.com"], replies.temporary.reply, primary),
    },
  },
  {
    name: "no outcomes at all: counted as delivered, finish",
    input: { outcomes: [], remoteMta: undefined, destinationDown: false },
    plan: { attemptResult: "delivered", delivered: undefined, bounce: undefined, delayWarning: undefined, next: { kind: "finish" } },
  },
];

describe("planSettlement", () => {
  for (const { name, input, plan } of cases) {
    it(name, () => {
      assert.deepEqual(planSettlement({ ...input, job, now }), plan);
    });
  }

  it("the deferred job carries the first temporary reply, in the recipients' order", () => {
    const mixed: RecipientOutcome[] = [
      { recipient: "a@example.com", result: "temporary", reply: "452 4.2.2 mailbox full", status: "4.2.2" },
      { recipient: "b@example.com", result: "temporary", reply: "451 4.3.2 try again later", status: "4.3.2" },
    ];
    const { next } = planSettlement({ job, outcomes: mixed, remoteMta: primary, destinationDown: false, now });
    assert.equal(next.kind === "defer" ? next.job.lastError : undefined, "452 4.2.2 mailbox full");
  });

  it("leaves its input alone", () => {
    const before = structuredClone(job);
    const input = outcomes("temporary", "permanent", "delivered");
    const copy = structuredClone(input);
    planSettlement({ job, outcomes: input, remoteMta: primary, destinationDown: false, now });
    assert.deepEqual(job, before);
    assert.deepEqual(input, copy);
  });
});

describe("delay warning (spec.queue.delayWarning)", () => {
  const fourHours = 4 * 3_600_000;
  const late = acceptedAt + fourHours;
  const allTemporary = () => outcomes("temporary", "temporary", "temporary");
  const plan = (overrides: Partial<SettlementInput>) =>
    planSettlement({ job, outcomes: allTemporary(), remoteMta: primary, destinationDown: false, delayWarningMs: fourHours, now: late, ...overrides });

  it("warns once when a deferral comes at or after the duration: a delayed DSN for the recipients left, recorded in the deferred job", () => {
    const { delayWarning, next } = plan({ outcomes: outcomes("delivered", "temporary", "permanent") });
    assert.deepEqual(delayWarning, [
      { address: "b@example.com", status: "4.3.2", diagnostic: replies.temporary.reply, remoteMta: primary, lastAttempt: new Date(late) },
    ]);
    assert.equal(next.kind, "defer");
    assert.equal(next.kind === "defer" ? next.job.delayWarnedAt : undefined, late);
  });

  it("not before the duration, and the job still owes it", () => {
    const { delayWarning, next } = plan({ now: late - 1 });
    assert.equal(delayWarning, undefined);
    assert.equal(next.kind === "defer" ? next.job.delayWarnedAt : "finished", undefined);
    assert.equal(delayWarningDueAt(job, fourHours), late);
  });

  it("not twice: a job that records its warning never gets another", () => {
    const first = plan({});
    assert.ok(first.delayWarning);
    assert.equal(first.next.kind, "defer");
    if (first.next.kind !== "defer") return;
    const warned = first.next.job;
    const second = plan({ job: warned, outcomes: outcomes("temporary"), now: late + 3_600_000 });
    assert.equal(second.delayWarning, undefined);
    assert.equal(second.next.kind === "defer" ? second.next.job.delayWarnedAt : undefined, late, "the first warning's time is kept");
    assert.equal(delayWarningDueAt(warned, fourHours), undefined);
  });

  it("never for the null sender", () => {
    const fromNull = { ...job, sender: "" };
    assert.equal(plan({ job: fromNull }).delayWarning, undefined);
    assert.equal(delayWarningDueAt(fromNull, fourHours), undefined);
  });

  it("never about a DSN", () => {
    const dsn = { ...job, kind: "dsn" as const, sender: "" };
    assert.equal(plan({ job: dsn }).delayWarning, undefined);
    assert.equal(plan({ job: { ...job, kind: "dsn" } }).delayWarning, undefined);
    assert.equal(delayWarningDueAt({ ...job, kind: "dsn" }, fourHours), undefined);
  });

  it("never when off, nor when the delivery finishes", () => {
    assert.equal(plan({ delayWarningMs: undefined }).delayWarning, undefined);
    assert.equal(plan({ outcomes: outcomes("delivered", "delivered", "permanent") }).delayWarning, undefined);
    assert.equal(delayWarningDueAt(job, undefined), undefined);
  });

  it("a deferral without an attempt (destination known down) warns with the last error's status, else the fallback", () => {
    const down = { ...job, lastError: "connect ECONNREFUSED 192.0.2.1:25" };
    const { job: deferred, delayWarning } = planDeferral(down, fourHours, late, { fallbackStatus: "4.4.1" });
    assert.equal(deferred.delayWarnedAt, late);
    assert.deepEqual(
      delayWarning?.map((w) => [w.address, w.status, w.diagnostic, w.lastAttempt]),
      job.recipients.map((address) => [address, "4.4.1", down.lastError, undefined]),
    );
    assert.equal(planDeferral(job, fourHours, late).delayWarning?.[0]?.status, "4.3.0", "from the last error, 451 4.3.0 earlier");
    assert.equal(planDeferral(job, fourHours, late - 1).delayWarning, undefined);
    assert.equal(planDeferral({ ...job, delayWarnedAt: late }, fourHours, late + 1).delayWarning, undefined);
  });
});
