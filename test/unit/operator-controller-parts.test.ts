import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue } from "../../operator/src/kube/work-queue.ts";
import { DomainClaims } from "../../operator/src/controller/domain-claims.ts";
import { ControllerRunner } from "../../operator/src/controller/controller-runner.ts";
import { OperatorMetrics } from "../../operator/src/metrics.ts";
import { createLogger } from "../../relay/src/log.ts";
import { setCondition } from "#api";
import { judgeMxRecords } from "../../operator/src/controller/dns-check.ts";
import { parseOperatorArgs, UsageError } from "../../operator/src/cli.ts";
import { resourcePath } from "../../operator/src/kube/resources.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import { primaryAtSite, readSiteReports } from "../../operator/src/controller/relay-reports.ts";
import { primaryEvent, primaryReachableCondition } from "../../operator/src/controller/primary-condition.ts";
import { holdView } from "../../operator/src/controller/hold-status.ts";
import { heldUntil } from "../../relay/src/deliver/maintenance-hold.ts";
import type { DeliveryJob } from "../../relay/src/queue/delivery-job.ts";

describe("DomainClaims", () => {
  const relayDomain = (domain: string) => ({ spec: { domain } }) as Parameters<DomainClaims["update"]>[1];

  it("answers which RelayDomains claim a mail domain, and what a change touched", () => {
    const claims = new DomainClaims();
    assert.deepEqual(claims.update("a/one", relayDomain("Example.COM")), ["example.com"]);
    claims.update("b/two", relayDomain("example.com"));
    claims.update("c/three", relayDomain("other.net"));
    assert.deepEqual(claims.of("example.com"), ["a/one", "b/two"]);
    assert.deepEqual(claims.update("b/two", relayDomain("other.net")), ["example.com", "other.net"], "the mail domain it had and has");
    assert.deepEqual(claims.of("example.com"), ["a/one"]);
    assert.deepEqual(claims.of("other.net"), ["c/three", "b/two"]);
    assert.deepEqual(claims.update("a/one", undefined), ["example.com"], "gone");
    assert.deepEqual(claims.of("example.com"), []);
  });
});

describe("ControllerRunner", () => {
  it("runs its workers' reconciles at once, never two of one key", async () => {
    const running = new Set<string>();
    let most = 0;
    let twice = false;
    const seen: string[] = [];
    const runner = new ControllerRunner(
      "test",
      async (key) => {
        twice ||= running.has(key);
        running.add(key);
        most = Math.max(most, running.size);
        seen.push(key);
        await new Promise((resolve) => setTimeout(resolve, 50));
        running.delete(key);
        return {};
      },
      new OperatorMetrics(),
      createLogger({}, "error"),
      3,
    );
    for (const key of ["a", "b", "c", "d"]) runner.enqueue(key);
    runner.start();
    await new Promise((resolve) => setTimeout(resolve, 10));
    runner.enqueue("a");
    await new Promise((resolve) => setTimeout(resolve, 300));
    await runner.stop();
    assert.equal(most, 3);
    assert.equal(twice, false);
    assert.deepEqual(seen.sort(), ["a", "a", "b", "c", "d"], "a again after its first reconcile, not beside it");
  });
});

describe("WorkQueue", () => {
  it("holds a key once however often it is added", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert.equal(queue.depth, 2);
    assert.equal(await queue.get(), "a");
    assert.equal(await queue.get(), "b");
  });

  it("never hands out a key being processed; a change meanwhile brings it back once after done", async () => {
    const queue = new WorkQueue();
    queue.add("a");
    const key = await queue.get();
    queue.add("a");
    queue.add("a");
    assert.equal(queue.depth, 0);
    queue.done(key as string);
    assert.equal(queue.depth, 1);
  });

  it("brings a key added for later back at the soonest time asked", async () => {
    const queue = new WorkQueue();
    queue.addAfter("a", 60_000);
    queue.addAfter("a", 20);
    queue.addAfter("a", 30_000);
    const started = Date.now();
    assert.equal(await queue.get(), "a");
    assert.ok(Date.now() - started < 1000, "the 20 ms request, not the minute");
    queue.shutDown();
  });

  it("backs off failures per key exponentially and forgets on success", async () => {
    const queue = new WorkQueue({ baseDelayMs: 20 });
    queue.addRateLimited("a");
    assert.equal(queue.depth, 0, "not immediately");
    const started = Date.now();
    assert.equal(await queue.get(), "a");
    assert.ok(Date.now() - started >= 15);
    queue.done("a");
    queue.addRateLimited("a");
    assert.equal(queue.retries("a"), 2);
    queue.forget("a");
    assert.equal(queue.retries("a"), 0);
    queue.shutDown();
  });

  it("rate-limits all keys together beyond the burst", () => {
    const queue = new WorkQueue({ baseDelayMs: 0, ratePerSecond: 1, burst: 2 });
    for (const key of ["a", "b", "c"]) queue.addRateLimited(key);
    // a and b fit the burst (due at once, next tick); c waits about a second.
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        assert.equal(queue.depth, 2);
        queue.shutDown();
        resolve();
      }, 100),
    );
  });

  it("returns undefined to waiting workers after shutDown", async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.shutDown();
    assert.equal(await waiting, undefined);
  });
});

describe("setCondition", () => {
  const t0 = new Date("2026-11-23T10:00:00Z");
  const t1 = new Date("2026-11-23T11:00:00Z");
  it("moves lastTransitionTime only when status changes", () => {
    const first = setCondition([], { type: "Ready", status: "False", reason: "A", message: "" }, t0);
    const same = setCondition(first, { type: "Ready", status: "False", reason: "B", message: "x" }, t1);
    assert.equal(same[0]?.lastTransitionTime, t0.toISOString());
    assert.equal(same[0]?.reason, "B");
    const flipped = setCondition(same, { type: "Ready", status: "True", reason: "C", message: "" }, t1);
    assert.equal(flipped[0]?.lastTransitionTime, t1.toISOString());
    assert.equal(flipped.length, 1);
  });
});

describe("judgeMxRecords (DNSConfigured)", () => {
  const ours = ["mx-a.backup.example", "mx-b.backup.example"];
  it("is True when our sites are listed below the primary", () => {
    const verdict = judgeMxRecords(
      [
        { exchange: "mail.example.com", priority: 10 },
        { exchange: "MX-A.backup.example.", priority: 20 },
        { exchange: "mx-b.backup.example", priority: 30 },
      ],
      ours,
    );
    assert.equal(verdict.status, "True");
  });
  it("is False when a site is missing, preferred over the primary, or there is no primary", () => {
    assert.equal(
      judgeMxRecords(
        [
          { exchange: "mail.example.com", priority: 10 },
          { exchange: "mx-a.backup.example", priority: 20 },
        ],
        ours,
      ).reason,
      "SitesNotInMX",
    );
    assert.equal(
      judgeMxRecords(
        [
          { exchange: "mail.example.com", priority: 10 },
          { exchange: "mx-a.backup.example", priority: 5 },
          { exchange: "mx-b.backup.example", priority: 20 },
        ],
        ours,
      ).reason,
      "BackupPreferredOverPrimary",
    );
    assert.equal(
      judgeMxRecords(
        [
          { exchange: "mail.example.com", priority: 10 },
          { exchange: "mx-a.backup.example", priority: 10 },
          { exchange: "mx-b.backup.example", priority: 20 },
        ],
        ours,
      ).reason,
      "BackupPreferredOverPrimary",
    );
    assert.equal(
      judgeMxRecords(
        [
          { exchange: "mx-a.backup.example", priority: 10 },
          { exchange: "mx-b.backup.example", priority: 20 },
        ],
        ours,
      ).reason,
      "NoPrimaryMX",
    );
  });
});

describe("operator command line", () => {
  it("takes the namespace from POD_NAMESPACE and the identity from POD_NAME", () => {
    const config = parseOperatorArgs([], { POD_NAMESPACE: "mxwarden-system", POD_NAME: "op-1" });
    assert.ok(config !== "help");
    assert.equal(config.namespace, "mxwarden-system");
    assert.equal(config.identity, "op-1");
    assert.equal(config.leaderElection, true);
    assert.deepEqual(config.metrics, { host: "0.0.0.0", port: 8080 });
  });
  it("refuses bad values with a usage error naming the flag", () => {
    assert.throws(() => parseOperatorArgs([], {}), /--namespace/);
    assert.throws(() => parseOperatorArgs(["--namespace=x", "--leader-election=maybe"], {}), UsageError);
    assert.throws(() => parseOperatorArgs(["--namespace=x", "--poll-interval=soon"], {}), /--poll-interval/);
    assert.throws(() => parseOperatorArgs(["--namespace=x", "--bogus"], {}), UsageError);
    const off = parseOperatorArgs(["--namespace=x", "--dns-servers=off"], {});
    assert.ok(off !== "help" && off.dnsServers === null);
  });
});

describe("resourcePath", () => {
  it("builds core, grouped, namespaced and cluster-scoped paths", () => {
    assert.equal(resourcePath(Resources.ConfigMap, "ns", "cm"), "/api/v1/namespaces/ns/configmaps/cm");
    assert.equal(resourcePath(Resources.RelaySite, undefined, "a"), "/apis/mxwarden.io/v1alpha1/relaysites/a");
    assert.equal(resourcePath(Resources.RelayDomain), "/apis/mxwarden.io/v1alpha1/relaydomains");
  });
});

describe("readSiteReports (one report per relay)", () => {
  const now = new Date("2026-12-05T12:00:00Z");
  const report = (ageMs: number, intervalMs?: number): string =>
    JSON.stringify({ updatedAt: new Date(now.getTime() - ageMs).toISOString(), reporter: "r", ...(intervalMs ? { intervalMs } : {}), domains: {} });
  it("keeps reports younger than three report intervals plus clock skew, newest first, and gives up the rest", () => {
    const reports = readSiteReports(
      {
        "report.a.json": report(20_000, 10_000),
        "report.b.json": report(5_000, 10_000),
        "report.slow.json": report(100_000, 60_000),
        "report.gone.json": report(61_000, 10_000),
        // A relay from before per-relay reports: no interval, 10 s assumed.
        "report.json": report(70_000),
        "report.garbage.json": "{",
      },
      now,
    );
    assert.deepEqual(
      reports.live.map((r) => r.key),
      ["report.b.json", "report.a.json", "report.slow.json"],
    );
    assert.deepEqual(reports.gone.sort(), ["report.garbage.json", "report.gone.json", "report.json"]);
  });
});

describe("PrimaryReachable (sites combined)", () => {
  const report = (reporter: string, figures: Record<string, unknown>) => ({
    key: reporter,
    report: {
      updatedAt: new Date().toISOString(),
      reporter,
      domains: { "a.example": { generation: 1, retiring: false, queued: 0, oldestQueuedSeconds: 0, ...figures } },
    },
  });

  it("takes, within a site, the relay whose outage began first, and ignores relays that know nothing", () => {
    const reports = {
      live: [
        report("r0", { primaryReachable: true }),
        report("r1", { primaryReachable: false, primaryError: "later", primaryDownSince: "2026-12-05T10:05:00Z" }),
        report("r2", { primaryReachable: false, primaryError: "first", primaryDownSince: "2026-12-05T10:00:00Z" }),
        report("r3", {}),
      ],
      gone: [],
    };
    assert.deepEqual(primaryAtSite(reports, "a.example"), { reachable: false, error: "first", since: "2026-12-05T10:00:00Z" });
    assert.deepEqual(primaryAtSite({ live: [report("r0", { primaryReachable: true }), report("r3", {})], gone: [] }, "a.example"), { reachable: true });
    assert.equal(primaryAtSite({ live: [report("r3", {})], gone: [] }, "a.example"), undefined);
  });

  it("is False when any site cannot reach the primary, naming only those sites; True when one reaches it and none fails; else Unknown", () => {
    const mixed = primaryReachableCondition([
      { site: "site-a", primary: { reachable: false, error: "connect ETIMEDOUT", since: "2026-12-05T10:00:00Z" } },
      { site: "site-b", primary: { reachable: true } },
    ]);
    assert.equal(mixed.status, "False");
    assert.equal(mixed.reason, "PrimaryUnreachable");
    assert.match(mixed.message, /site-a: connect ETIMEDOUT since 2026-12-05T10:00:00Z/);
    assert.doesNotMatch(mixed.message, /site-b/);
    const up = primaryReachableCondition([
      { site: "site-a", primary: undefined },
      { site: "site-b", primary: { reachable: true } },
    ]);
    assert.deepEqual([up.status, up.reason], ["True", "PrimaryAnswers"]);
    assert.deepEqual(primaryReachableCondition([{ site: "site-a", primary: undefined }]).reason, "NotObserved");
    assert.deepEqual(primaryReachableCondition([]).reason, "NoReachableSites");
  });

  it("records an Event when the status turns True or False, not into Unknown and not when unchanged", () => {
    const down = primaryReachableCondition([{ site: "site-a", primary: { reachable: false, error: "x" } }]);
    const up = primaryReachableCondition([{ site: "site-a", primary: { reachable: true } }]);
    const unknown = primaryReachableCondition([]);
    assert.equal(primaryEvent("True", down, "a.example")?.type, "Warning");
    assert.equal(primaryEvent(undefined, down, "a.example")?.reason, "PrimaryUnreachable");
    assert.equal(primaryEvent("False", down, "a.example"), undefined);
    assert.equal(primaryEvent("False", up, "a.example")?.type, "Normal");
    assert.equal(primaryEvent("Unknown", up, "a.example")?.reason, "PrimaryReachable");
    assert.equal(primaryEvent("False", unknown, "a.example"), undefined);
  });
});

describe("holdView: the maintenance hold as a RelayDomain's status shows it", () => {
  const HOUR = 3_600_000;
  const now = Date.parse("2026-12-05T10:00:00Z");
  const spec = (until: string, lifetime?: string) => ({ domain: "example.com", hold: { until }, ...(lifetime ? { queue: { lifetime } } : {}) });

  it("is capped exactly when the relay would release mail accepted now before until, and says when that stops", () => {
    // lifetime 1h: at most 48m. until 48m away is not capped; a millisecond more is.
    const edge = new Date(now + 48 * 60_000).toISOString();
    assert.deepEqual(holdView(spec(edge, "1h"), now)?.status, { until: edge, maxHold: "48m", capped: false });
    assert.equal(holdView(spec(edge, "1h"), now)?.changesAtMs, now + 48 * 60_000, "looked at again when the hold ends");
    const past = new Date(now + 48 * 60_000 + 1).toISOString();
    const capped = holdView(spec(past, "1h"), now);
    assert.equal(capped?.status.capped, true);
    assert.equal(capped?.condition.reason, "HoldCapped");
    assert.equal(capped?.changesAtMs, now + 1, "from then on new mail is held in full");
    // The relay's own decision for a message accepted now agrees.
    const policy = { domain: "example.com", hold: { untilMs: Date.parse(past) }, retiring: false } as unknown as Parameters<typeof heldUntil>[0];
    const job = { kind: "relay", acceptedAt: now, expiresAt: now + HOUR } as DeliveryJob;
    assert.equal(
      heldUntil(policy, job, now, () => 0),
      now + 48 * 60_000,
      "released after 48m, before until",
    );
  });

  it("uses the default lifetime of 5d and writes until in UTC", () => {
    const view = holdView(spec("2026-12-12T12:00:00+02:00"), now);
    assert.deepEqual(view?.status, { until: "2026-12-12T10:00:00.000Z", maxHold: "4d", capped: true });
    assert.deepEqual(holdView(spec("2026-12-08T10:00:00Z"), now)?.condition, {
      type: "Held",
      status: "True",
      reason: "Holding",
      message: "mail is queued and nothing is delivered before 2026-12-08T10:00:00.000Z",
    });
  });

  it("is nothing without a hold, at or after until, or for a time that does not parse", () => {
    assert.equal(holdView({ domain: "example.com" }, now), undefined);
    assert.equal(holdView(spec("2026-12-05T10:00:00Z"), now), undefined);
    assert.equal(holdView(spec("2026-12-05T09:00:00Z"), now), undefined);
    assert.equal(holdView(spec("not a time"), now), undefined);
  });
});
