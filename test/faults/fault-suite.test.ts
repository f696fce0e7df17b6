// The fault suite (issue 16, item 4): real Postfix sends through DNS MX records to a primary and
// two backup sites, each with three nats-servers (R3, its own JetStream domain) and two relays,
// in network namespaces this test creates and removes (test/harness/fault-topology.ts). Each
// scenario breaks something during load and counts, from the primary's own record of what it
// received and from Postfix's maillog: sent, accepted, delivered, bounced, duplicates, lost.
//
// Pass criteria: lost = 0 always; duplicates under 0.1% of the messages outside scenario 5,
// not counting those SMTP itself makes (Postfix gave up after the final dot without a reply and
// logged "message may be sent more than once", RFC 1047); in scenario 5, bounded by the lag.
//
// Needs root. `make test-faults` (MXWARDEN_FAULT_SUITE=full) runs all six scenarios; without the
// variable (`make test`) scenarios 1, 3 and 4 run, in about three minutes.

import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { type Counts, FaultTopology, type TopologyOptions } from "../harness/fault-topology.ts";
import { netnsUnavailable } from "../harness/netns.ts";
import { eventually, tempDir } from "../harness/workspace.ts";

const FULL = process.env.MXWARDEN_FAULT_SUITE === "full";
/** MXWARDEN_FAULT_SCENARIOS=2,5 runs only those (for working on one). */
const ONLY = process.env.MXWARDEN_FAULT_SCENARIOS?.split(",").map(Number);
/** Messages per scenario: enough to hit each fault mid-load, few enough for 2 cores in minutes. */
const MESSAGES = Number(process.env.MXWARDEN_FAULT_MESSAGES ?? 200);
/** The relays' --takeover-after in scenario 5. */
const TAKEOVER_AFTER_S = 20;

/** Duplicates the relays may add: under 0.1% of the messages, beyond SMTP's own ambiguous attempts. */
function assertCounts(
  counts: Counts & { unsettled?: string; lostMessages?: string[]; duplicateTrail?: string[] },
  options: { duplicateBound?: number } = {},
): void {
  assert.equal(counts.lost, 0, `lost (neither delivered nor bounced):\n${(counts.lostMessages ?? []).join("\n")}`);
  assert.equal(counts.unsettled, undefined, "every queue empties");
  assert.equal(counts.bounced, 0, "bounced");
  assert.equal(counts.delivered, counts.sent, "delivered");
  assert.equal(counts.accepted, counts.sent, "accepted (Postfix logged a 250 for every message)");
  const bound = options.duplicateBound ?? counts.ambiguous + Math.floor((counts.sent - 1) / 1000);
  assert.ok(counts.duplicates <= bound, `duplicates ${counts.duplicates} above ${bound}:\n${(counts.duplicateTrail ?? []).join("\n")}`);
}

function report(t: TestContext, name: string, counts: Counts, extra = ""): void {
  const line = FaultTopology.format(name, counts, extra);
  t.diagnostic(line);
  console.log(line);
}

/** Build the world, run the scenario, always tear it down; the scratch directory stays on failure. */
async function withTopology(name: string, options: TopologyOptions, scenario: (topology: FaultTopology) => Promise<void>): Promise<void> {
  const unavailable = netnsUnavailable();
  if (unavailable) throw new Error(unavailable);
  const dir = tempDir(`faults-${name}`);
  const topology = await FaultTopology.start(dir.path, options);
  let passed = false;
  try {
    await scenario(topology);
    passed = true;
  } finally {
    await topology.stop();
    if (passed) dir.remove();
  }
}

const lagText = (maxLag: Record<"a" | "b", number>): string => `shadow lag under load at most ${maxLag.a} (at a), ${maxLag.b} (at b) messages`;

const seconds = (from: number): string => `${((Date.now() - from) / 1000).toFixed(1)}s`;

/** Until Postfix has handed every message to some MX (its queue is empty). */
function allAccepted(topology: FaultTopology, timeoutMs = 120_000): Promise<unknown> {
  return eventually(
    "Postfix to hand every message over",
    async () => topology.counts().accepted === topology.counts().sent && (await topology.sender.queued()) === 0,
    timeoutMs,
    500,
  );
}

interface Scenario {
  id: number;
  title: string;
  reduced: boolean;
  options?: TopologyOptions;
  run(t: TestContext, topology: FaultTopology): Promise<void>;
}

const scenarios: Scenario[] = [
  {
    id: 1,
    title: "primary down, both sites up, then primary up",
    reduced: true,
    async run(t, topology) {
      await topology.primaryDown();
      const { maxLag } = await topology.sampleLag(topology.send(MESSAGES).then(() => allAccepted(topology)));
      const held = topology.counts();
      assert.equal(held.acceptedByPrimary, 0);
      assert.ok(held.acceptedBySite.a > 0 && held.acceptedBySite.b > 0, "both sites took mail");
      assert.equal(held.delivered, 0);
      const upAt = Date.now();
      await topology.primaryUp();
      const counts = await topology.settle(120_000);
      report(t, "1 primary down, then up", counts, `drained in ${seconds(upAt)} after the primary came back; ${lagText(maxLag)}`);
      assertCounts(counts);
    },
  },
  {
    id: 2,
    title: "site A cut off from everything during load, while site B keeps accepting",
    reduced: false,
    async run(t, topology) {
      await topology.blockSenderToPrimary();
      const sending = topology.send(MESSAGES);
      await eventually("site A to take some of the load", () => topology.counts().acceptedBySite.a >= MESSAGES / 10, 60_000, 200);
      const cutAt = Date.now();
      await topology.cutOff("a");
      const atCut = topology.counts();
      await sending;
      await allAccepted(topology);
      const whileCut = topology.counts();
      // Everything sent after the cut went to site B.
      assert.equal(whileCut.acceptedBySite.a, atCut.acceptedBySite.a, "no 250 from site A while it is cut off");
      const backAt = Date.now();
      await topology.reconnect("a");
      const counts = await topology.settle(120_000);
      report(
        t,
        "2 site A cut off",
        counts,
        `cut for ${((backAt - cutAt) / 1000).toFixed(1)}s, B took ${whileCut.acceptedBySite.b - atCut.acceptedBySite.b} meanwhile; A's backlog delivered ${seconds(backAt)} after reconnecting`,
      );
      assertCounts(counts);
    },
  },
  {
    id: 3,
    title: "the A-B link cut while both sites serve, then healed",
    reduced: true,
    async run(t, topology) {
      await topology.blockSenderToPrimary();
      const sending = topology.sampleLag(topology.send(MESSAGES));
      await eventually("a third of the load", () => topology.counts().accepted >= MESSAGES / 3, 60_000, 200);
      await topology.siteLink.cut();
      const cutAt = Date.now();
      await eventually("two thirds of the load", () => topology.counts().accepted >= (2 * MESSAGES) / 3, 60_000, 200);
      const during = topology.counts();
      assert.ok(during.delivered > MESSAGES / 3, "both sites keep delivering while the link is cut");
      await topology.siteLink.heal();
      const healedAt = Date.now();
      const { maxLag } = await sending;
      const counts = await topology.settle(120_000);
      report(
        t,
        "3 A-B link cut, then healed",
        counts,
        `cut for ${((healedAt - cutAt) / 1000).toFixed(1)}s; settled ${seconds(healedAt)} after healing; ${lagText(maxLag)}`,
      );
      assertCounts(counts);
    },
  },
  {
    id: 4,
    title: "kill -9 of relays and of one nats-server per site during load",
    reduced: true,
    async run(t, topology) {
      await topology.blockSenderToPrimary();
      const sending = topology.send(MESSAGES);
      await eventually("a quarter of the load", () => topology.counts().accepted >= MESSAGES / 4, 60_000, 200);
      const killedAt = Date.now();
      await Promise.all([topology.killRelay("a", 1), topology.killRelay("b", 2), topology.killNats("a", 2), topology.killNats("b", 3)]);
      const killsDoneAt = Date.now();
      await eventually("half of the load", () => topology.counts().accepted >= MESSAGES / 2, 60_000, 200);
      await Promise.all([topology.restartNats("a", 2), topology.restartNats("b", 3)]);
      await Promise.all([topology.restartRelay("a", 1), topology.restartRelay("b", 2)]);
      const restartedAt = Date.now();
      await sending;
      const counts = await topology.settle(120_000);
      // Every relay: a1 and b2 were killed, and each site lost a nats-server.
      const killedMidDelivery = topology.duplicatesFromKilled(["a1", "a2", "b1", "b2"], killedAt, killsDoneAt);
      report(
        t,
        "4 kill -9 of relays a1, b2 and nats a2, b3",
        counts,
        `killed at ${killedAt - topology.startedAt} ms, down for ${((restartedAt - killedAt) / 1000).toFixed(1)}s; settled ${seconds(restartedAt)} after the restarts; ` +
          `${killedMidDelivery} duplicates from deliveries the kill cut between the primary's 250 and the job's acknowledgement`,
      );
      // A relay killed after the primary's 250 and before its job is acknowledged leaves the job to
      // be delivered again (docs/architecture.md, "Crash safety"), and so does a killed nats-server
      // that confirmed an acknowledgement it had not replicated: those duplicates are the kills'
      // own, like Postfix's ambiguous attempts; any other duplicate counts against the 0.1%.
      assertCounts(counts, { duplicateBound: counts.ambiguous + killedMidDelivery + Math.floor((counts.sent - 1) / 1000) });
    },
  },
  {
    id: 5,
    title: "site A destroyed with a full queue: site B takes over and delivers A's mail",
    reduced: false,
    options: { takeoverAfter: `${TAKEOVER_AFTER_S}s` },
    async run(t, topology) {
      await topology.primaryDown();
      const { maxLag } = await topology.sampleLag(topology.send(MESSAGES).then(() => allAccepted(topology)));
      const queued = topology.counts();
      assert.ok(queued.acceptedBySite.a > 0, "site A holds mail");
      // The recovery point when A is lost: A's copies site B does not hold yet.
      const lagAtLoss = await eventually("site B's lag reading", () => topology.relayMetric("b", 1, "mxwarden_peer_shadow_lag_messages"));
      await topology.destroySite("a");
      const destroyedAt = Date.now();
      await topology.primaryUp();
      const counts = await topology.settle(TAKEOVER_AFTER_S * 1000 + 150_000);
      const taken = await topology.relayMetric("b", 1, "mxwarden_takeover_messages_total");
      const takenBy2 = await topology.relayMetric("b", 2, "mxwarden_takeover_messages_total");
      report(
        t,
        "5 site A destroyed, B takes over",
        counts,
        `A held ${queued.acceptedBySite.a}, B took over ${(taken ?? 0) + (takenBy2 ?? 0)}; all delivered ${seconds(destroyedAt)} after the loss; lag at the loss ${lagAtLoss}; ${lagText(maxLag)}`,
      );
      // Copies that had not reached B when A was lost would be lost with it: the lag at the loss
      // must be zero here (A's queue was full and idle), and so must what went missing.
      assert.equal(lagAtLoss, 0, "site B held every copy of A's queue");
      // Site A delivered nothing before it was lost (the primary was down): B can only duplicate
      // what A delivered and had not retired within the lag, so the bound is the lag itself.
      assertCounts(counts, { duplicateBound: counts.ambiguous + lagAtLoss });
    },
  },
  {
    id: 6,
    title: "5% packet loss and 200 ms delay on the primary link",
    reduced: false,
    // 200 ms on each data exchange, from the delaying forwarder: this kernel has no netem (see delay-proxy.ts).
    options: { primaryDelayMs: 200 },
    async run(t, topology) {
      await topology.primaryLink.loss(0.05);
      const started = Date.now();
      const { maxLag } = await topology.sampleLag(topology.send(MESSAGES));
      const counts = await topology.settle(240_000);
      report(t, "6 5% loss, 200 ms delay to the primary", counts, `settled in ${seconds(started)}; ${lagText(maxLag)}`);
      assertCounts(counts);
    },
  },
];

describe(`fault suite: two sites in network namespaces (${FULL ? "full" : "reduced: set MXWARDEN_FAULT_SUITE=full for all six"})`, {
  concurrency: 1,
}, () => {
  for (const scenario of scenarios.filter((s) => (ONLY ? ONLY.includes(s.id) : FULL || s.reduced))) {
    it(`${scenario.id}: ${scenario.title}`, { timeout: 600_000 }, (t) =>
      withTopology(`s${scenario.id}`, scenario.options ?? {}, (topology) => scenario.run(t, topology)),
    );
  }
});
