// planSettlement (relay/src/deliver/settlement.ts): what a delivery's per-recipient outcomes make
// of its job, as a table of outcomes and the whole plan each must give.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RecipientOutcome, RecipientResult } from "../../relay/src/deliver/outbound-smtp.ts";
import { planSettlement, type SettlementInput, type SettlementPlan } from "../../relay/src/deliver/settlement.ts";
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
    plan: { attemptResult: "delivered", delivered: delivered(3, primary), bounce: undefined, next: { kind: "finish" } },
  },
  {
    name: "every recipient refused: one bounce for all, finish",
    input: { outcomes: outcomes("permanent", "permanent", "permanent"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "bounced", delivered: undefined, bounce: bounce(job.recipients, primary), next: { kind: "finish" } },
  },
  {
    name: "every recipient to try again at a primary that answered: defer all",
    input: { outcomes: outcomes("temporary", "temporary", "temporary"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "deferred", delivered: undefined, bounce: undefined, next: defer(job.recipients, replies.temporary.reply, primary) },
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
      next: defer(job.recipients, connectionError, "old.example.com", true),
    },
  },
  {
    name: "some accepted, some to try again: defer only those",
    input: { outcomes: outcomes("delivered", "temporary", "delivered"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "deferred", delivered: delivered(2, primary), bounce: undefined, next: defer(["b@example.com"], replies.temporary.reply, primary) },
  },
  {
    name: "some accepted, some refused: bounce those, finish",
    input: { outcomes: outcomes("permanent", "delivered", "delivered"), remoteMta: primary, destinationDown: false },
    plan: { attemptResult: "bounced", delivered: delivered(2, primary), bounce: bounce(["a@example.com"], primary), next: { kind: "finish" } },
  },
  {
    name: "refused and to try again without a remote MTA: deferred, not a connection failure",
    input: { outcomes: outcomes("permanent", "temporary", "temporary"), remoteMta: undefined, destinationDown: false },
    plan: {
      attemptResult: "deferred",
      delivered: undefined,
      bounce: bounce(["a@example.com"], undefined),
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
      next: defer(["a@example.com"], replies.temporary.reply, primary),
    },
  },
  {
    name: "no outcomes at all: counted as delivered, finish",
    input: { outcomes: [], remoteMta: undefined, destinationDown: false },
    plan: { attemptResult: "delivered", delivered: undefined, bounce: undefined, next: { kind: "finish" } },
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
