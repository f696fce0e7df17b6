// RelayQueueRequest decisions without a cluster or a queue: what each site is asked, how answers
// become status (caps, domain filter, unknown ids), at-most-once for actions that change the
// queue, refusal of a RelayDomain that is not this namespace's or does not serve its domain, the
// TTL, and the plugin's command line. The real path (API server, operator process, NATS, relays,
// kubectl) is test/integration/queue-requests.test.ts.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createLogger } from "../../relay/src/log.ts";
import { MAX_LISTED_IN_STATUS, type RelayDomain, type RelayQueueRequest, type RelaySite } from "#api";
import type { Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import { QueueRequestReconciler, queueActor } from "../../operator/src/controller/queue-requests.ts";
import { finishedStatus, MAX_LIST_BYTES_IN_STATUS, siteSelector, trackingQuery, ttlRemainingMs } from "../../operator/src/controller/queue-request-status.ts";
import {
  natsServersFor,
  type QueueAction,
  type QueuedMessage,
  type QueueSelector,
  type SiteQueue,
  type TrackingRecord,
} from "../../operator/src/controller/site-queue.ts";
import { parsePluginArgs, UsageError } from "../../operator/src/plugin/args.ts";
import { printResults } from "../../operator/src/plugin/output.ts";
import { FakeKubeClient } from "../harness/fake-kube-client.ts";

const log = createLogger({}, "error");
const NOW = new Date("2026-12-05T12:00:00Z");

function message(queueId: string, domain: string, arrivedAt = "2026-12-05T10:00:00.000Z"): QueuedMessage {
  return { queueId, domain, sender: "a@sender.test", recipients: [`u@${domain}`], state: "deferred", arrivedAt, size: 100, attempts: 1 };
}

function qid(n: number): string {
  return `LZ3X0A1B2C3D4E5F6A7B${String(n).padStart(5, "0")}`;
}

/** A site's queue in memory: what it holds, and every call made to it. */
class MemoryQueue implements SiteQueue {
  readonly calls: Array<{ op: string; selector?: QueueSelector; action?: QueueAction }> = [];
  closed = false;
  readonly messages: QueuedMessage[];
  readonly records: TrackingRecord[];
  constructor(messages: QueuedMessage[], records: TrackingRecord[] = []) {
    this.messages = messages;
    this.records = records;
  }
  async list(selector: QueueSelector): Promise<QueuedMessage[]> {
    this.calls.push({ op: "list", selector });
    // Deliberately ignores the domain: the controller must filter by it anyway.
    return this.messages.filter((m) => !selector.queueIds || selector.queueIds.includes(m.queueId));
  }
  async act(action: QueueAction, selector: QueueSelector) {
    this.calls.push({ op: "act", action, selector });
    const ids = selector.queueIds ?? [];
    return { action, matched: ids.length, done: ids.slice(1), skipped: ids.slice(0, 1).map((queueId) => ({ queueId, reason: "being delivered" })) };
  }
  async find(): Promise<TrackingRecord[]> {
    this.calls.push({ op: "find" });
    return this.records;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

interface World {
  client: FakeKubeClient;
  reconciler: QueueRequestReconciler;
  queues: Record<string, MemoryQueue>;
  connected: string[];
}

function world(queues: Record<string, MemoryQueue>, now = () => NOW): World {
  const client = new FakeKubeClient(now);
  const connected: string[] = [];
  for (const name of Object.keys(queues)) {
    client.seed<RelaySite & Unstructured>(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name },
      spec: { hostname: `${name}.backup.test`, nats: { url: "nats://nats.mxwarden:4222" } },
    });
  }
  const domain = (namespace: string, name: string, mailDomain: string, created: string): void => {
    client.seed<RelayDomain & Unstructured>(Resources.RelayDomain, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayDomain",
      metadata: { name, namespace, creationTimestamp: created },
      spec: { domain: mailDomain },
    });
  };
  domain("team-a", "example", "example.test", "2026-12-01T00:00:00Z");
  domain("team-b", "other", "other.test", "2026-12-01T00:00:00Z");
  // A later claim on team-a's mail domain, from another namespace: it serves nothing.
  domain("team-b", "grab", "example.test", "2026-12-02T00:00:00Z");
  const reconciler = new QueueRequestReconciler({
    client,
    requests: client.cache(Resources.RelayQueueRequest),
    domains: client.cache(Resources.RelayDomain),
    sites: client.cache(Resources.RelaySite),
    connect: async (site, actor) => {
      connected.push(`${site.metadata.name} as ${actor}`);
      const queue = queues[site.metadata.name];
      if (!queue) throw new Error("nats: connection refused");
      return queue;
    },
    log,
    now,
  });
  return { client, reconciler, queues, connected };
}

function request(w: World, namespace: string, name: string, spec: Partial<RelayQueueRequest["spec"]>, created = "2026-12-05T11:59:00Z"): string {
  w.client.seed<RelayQueueRequest & Unstructured>(Resources.RelayQueueRequest, {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayQueueRequest",
    metadata: { name, namespace, creationTimestamp: created },
    spec: { domainRef: "example", action: "list", requestedBy: "alice", ...spec },
  });
  return `${namespace}/${name}`;
}

function stored(w: World, key: string): RelayQueueRequest | undefined {
  const [namespace, name] = key.split("/") as [string, string];
  return w.client.peek<RelayQueueRequest>(Resources.RelayQueueRequest, namespace, name);
}

describe("RelayQueueRequest: what sites are asked", () => {
  it("always narrows the selector to the referenced domain, and converts durations", () => {
    const selector = siteSelector(
      { domainRef: "x", action: "retry", requestedBy: "a", selector: { all: true, sender: "s@x.test", olderThan: "2h", state: "deferred" } },
      "example.test",
    );
    assert.deepEqual(selector, { domain: "example.test", sender: "s@x.test", olderThanMs: 7_200_000, state: "deferred" });
    assert.deepEqual(trackingQuery({ domainRef: "x", action: "find", requestedBy: "a", selector: { messageId: "<m@x>", since: "2d" } }), {
      messageId: "<m@x>",
      sinceMs: 172_800_000,
    });
  });

  it("dials spec.nats.operatorUrl when set, else spec.nats.url, each URL of a list", () => {
    const site = (nats: RelaySite["spec"]["nats"]): RelaySite => ({
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "s" },
      spec: { hostname: "mx.test", nats },
    });
    assert.deepEqual(natsServersFor(site({ url: "nats://in-cluster:4222" })), ["nats://in-cluster:4222"]);
    assert.deepEqual(natsServersFor(site({ url: "nats://in-cluster:4222", operatorUrl: "tls://a.test:4222, tls://b.test:4222" })), [
      "tls://a.test:4222",
      "tls://b.test:4222",
    ]);
  });
});

describe("RelayQueueRequest: status", () => {
  it("keeps at most 200 messages, oldest first, and counts the rest as truncated", () => {
    const many = Array.from({ length: 250 }, (_, i) => message(qid(i), "example.test", `2026-12-05T10:${String(59 - (i % 60)).padStart(2, "0")}:00.000Z`));
    const status = finishedStatus(
      { domainRef: "example", action: "list", requestedBy: "a" },
      "example.test",
      [{ site: "a", matched: 250, messages: many }],
      undefined,
      1,
      NOW,
    );
    assert.equal(status.messages?.length, MAX_LISTED_IN_STATUS);
    assert.equal(status.truncated, 50);
    assert.equal(status.phase, "Succeeded");
    assert.deepEqual(status.results, [{ site: "a", matched: 250, done: 250, skipped: 0 }]);
    const arrived = status.messages?.map((m) => m.arrivedAt) ?? [];
    assert.deepEqual(arrived, [...arrived].sort());
  });

  it("keeps a list within a byte budget, so a status always fits in etcd", () => {
    const long = (i: number): QueuedMessage => ({
      ...message(qid(i), "example.test"),
      recipients: Array.from({ length: 100 }, (_, r) => `${"r".repeat(200)}${r}@example.test`),
    });
    const status = finishedStatus(
      { domainRef: "example", action: "list", requestedBy: "a" },
      "example.test",
      [{ site: "a", matched: 200, messages: Array.from({ length: 200 }, (_, i) => long(i)) }],
      undefined,
      1,
      NOW,
    );
    const bytes = Buffer.byteLength(JSON.stringify(status));
    assert.ok(bytes <= MAX_LIST_BYTES_IN_STATUS + 4096, `${bytes} bytes`);
    assert.ok((status.messages?.length ?? 0) > 0);
    assert.equal((status.messages?.length ?? 0) + (status.truncated ?? 0), 200);
  });

  it("reports a named queue id that no site holds, unless a site failed and might hold it", () => {
    const spec = { domainRef: "example", action: "delete" as const, requestedBy: "a", selector: { queueIds: [qid(1), qid(2)] } };
    const ok = finishedStatus(spec, "example.test", [{ site: "a", matched: 1, done: [qid(1)], skipped: [] }], undefined, 1, NOW);
    assert.deepEqual(ok.skippedMessages, [{ queueId: qid(2), reason: "not queued for example.test at any site" }]);
    assert.deepEqual(ok.queueIds, [{ site: "a", queueId: qid(1) }]);
    const failed = finishedStatus(
      spec,
      "example.test",
      [
        { site: "a", matched: 1, done: [qid(1)], skipped: [] },
        { site: "b", matched: 0, error: "timeout" },
      ],
      undefined,
      1,
      NOW,
    );
    assert.deepEqual(failed.skippedMessages, []);
    assert.equal(failed.phase, "Failed");
    assert.match(failed.conditions?.find((c) => c.type === "Failed")?.message ?? "", /^b: timeout$/);
  });

  it("counts the TTL from completedAt", () => {
    const spec = { domainRef: "x", action: "list" as const, requestedBy: "a", ttlSecondsAfterFinished: 60 };
    assert.equal(ttlRemainingMs(spec, { phase: "Running" }, NOW.getTime()), undefined);
    assert.equal(ttlRemainingMs(spec, { phase: "Succeeded", completedAt: "2026-12-05T11:59:30.000Z" }, NOW.getTime()), 30_000);
    assert.equal(
      ttlRemainingMs({ ...spec, ttlSecondsAfterFinished: undefined }, { phase: "Failed", completedAt: NOW.toISOString() }, NOW.getTime()),
      3_600_000,
    );
  });
});

describe("RelayQueueRequest: the reconciler", () => {
  it("lists at every site serving the domain, keeping only the domain's mail whatever a site answers", async () => {
    const w = world({
      "site-a": new MemoryQueue([message(qid(1), "example.test"), message(qid(2), "other.test")]),
      "site-b": new MemoryQueue([message(qid(3), "example.test", "2026-12-05T09:00:00.000Z")]),
    });
    const key = request(w, "team-a", "list-1", { action: "list" });
    const outcome = await w.reconciler.reconcile(key);
    const status = stored(w, key)?.status;
    assert.equal(status?.phase, "Succeeded");
    assert.equal(status?.domain, "example.test");
    assert.deepEqual(
      status?.messages?.map((m) => `${m.site}:${m.queueId}`),
      [`site-b:${qid(3)}`, `site-a:${qid(1)}`],
    );
    assert.deepEqual(w.connected.sort(), [`site-a as ${queueActor("team-a", "alice")}`, `site-b as k8s:team-a/alice`]);
    assert.equal(w.queues["site-a"]?.calls[0]?.selector?.domain, "example.test");
    assert.ok(w.queues["site-a"]?.closed && w.queues["site-b"]?.closed, "every connection closed");
    assert.equal(outcome.requeueAfterMs, 3_600_000, "back when the TTL is due");
  });

  it("acts once, on exactly the listed messages of the domain, and never again for the same request", async () => {
    const queue = new MemoryQueue([message(qid(1), "example.test"), message(qid(2), "example.test"), message(qid(3), "other.test")]);
    const w = world({ "site-a": queue });
    const key = request(w, "team-a", "retry-1", { action: "retry", selector: { all: true } });
    await w.reconciler.reconcile(key);
    const acts = queue.calls.filter((c) => c.op === "act");
    assert.deepEqual(acts, [{ op: "act", action: "retry", selector: { domain: "example.test", queueIds: [qid(1), qid(2)] } }]);
    const status = stored(w, key)?.status;
    assert.equal(status?.phase, "Succeeded");
    assert.deepEqual(status?.results, [{ site: "site-a", matched: 2, done: 1, skipped: 1 }]);
    assert.deepEqual(status?.skippedMessages, [{ site: "site-a", queueId: qid(1), reason: "being delivered" }]);
    await w.reconciler.reconcile(key);
    assert.equal(queue.calls.filter((c) => c.op === "act").length, 1, "a finished request is not carried out again");
  });

  it("takes its own Running claim, seen late in the cache, for neither an interruption nor new work", async () => {
    const queue = new MemoryQueue([message(qid(1), "example.test"), message(qid(2), "example.test")]);
    const w = world({ "site-a": queue });
    const key = request(w, "team-a", "retry-2", { action: "retry", selector: { all: true } });
    const claim = { phase: "Running", domain: "example.test", startedAt: NOW.toISOString() };
    // What the informer shows for a moment after the reconcile: the claim, not yet the result.
    const staleCache = {
      get: (k: string) => {
        const found = w.client.cache<RelayQueueRequest & Unstructured>(Resources.RelayQueueRequest).get(k);
        return found && queue.calls.some((c) => c.op === "act") ? { ...found, status: claim as RelayQueueRequest["status"] } : found;
      },
      list: () => [],
    };
    const reconciler = new QueueRequestReconciler({
      client: w.client,
      requests: staleCache,
      domains: w.client.cache(Resources.RelayDomain),
      sites: w.client.cache(Resources.RelaySite),
      connect: async () => queue,
      log,
      now: () => NOW,
    });
    await reconciler.reconcile(key);
    assert.equal(stored(w, key)?.status?.phase, "Succeeded");
    await reconciler.reconcile(key);
    assert.equal(stored(w, key)?.status?.phase, "Succeeded", "not overwritten as Interrupted");
    assert.equal(queue.calls.filter((c) => c.op === "act").length, 1);
  });

  it("fails a mutating request found Running (the operator stopped mid-way) instead of repeating it", async () => {
    const queue = new MemoryQueue([message(qid(1), "example.test")]);
    const w = world({ "site-a": queue });
    const key = request(w, "team-a", "bounce-1", { action: "bounce", selector: { all: true } });
    await w.client.apply(
      Resources.RelayQueueRequest,
      { metadata: { name: "bounce-1", namespace: "team-a" }, status: { phase: "Running", startedAt: NOW.toISOString(), domain: "example.test" } },
      { subresource: "status" },
    );
    await w.reconciler.reconcile(key);
    const status = stored(w, key)?.status;
    assert.equal(status?.phase, "Failed");
    assert.equal(status?.conditions?.find((c) => c.type === "Failed")?.reason, "Interrupted");
    assert.deepEqual(w.connected, [], "no site asked");
  });

  it("resolves domainRef in the request's namespace only, and refuses a RelayDomain that does not serve its domain", async () => {
    const queue = new MemoryQueue([message(qid(1), "example.test")]);
    const w = world({ "site-a": queue });
    // team-b has no RelayDomain "example": team-a's is out of its reach. A request just created
    // waits a moment for a RelayDomain applied with it to reach the cache, then fails.
    const fresh = request(w, "team-b", "list-1", { domainRef: "example" }, NOW.toISOString());
    assert.equal((await w.reconciler.reconcile(fresh)).requeueAfterMs, 3000);
    assert.equal(stored(w, fresh)?.status, undefined);
    const foreign = request(w, "team-b", "list-2", { domainRef: "example" });
    await w.reconciler.reconcile(foreign);
    assert.equal(stored(w, foreign)?.status?.conditions?.find((c) => c.type === "Failed")?.reason, "DomainNotFound");
    // team-b's own RelayDomain for example.test came later than team-a's: it serves nothing.
    const grab = request(w, "team-b", "list-3", { domainRef: "grab" });
    await w.reconciler.reconcile(grab);
    const failed = stored(w, grab)?.status?.conditions?.find((c) => c.type === "Failed");
    assert.equal(failed?.reason, "DomainNotServed");
    assert.match(failed?.message ?? "", /team-a\/example serves example\.test/);
    assert.deepEqual(w.connected, [], "no site asked");
  });

  it("fails the sites it cannot reach and says why, while the others answer", async () => {
    const w = world({ "site-a": new MemoryQueue([message(qid(1), "example.test")]) });
    w.client.seed<RelaySite & Unstructured>(Resources.RelaySite, {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelaySite",
      metadata: { name: "site-z" },
      spec: { hostname: "z.backup.test", nats: { url: "nats://nats.mxwarden:4222" } },
    });
    const key = request(w, "team-a", "list-4", {});
    await w.reconciler.reconcile(key);
    const status = stored(w, key)?.status;
    assert.equal(status?.phase, "Failed");
    assert.deepEqual(status?.results, [
      { site: "site-a", matched: 1, done: 1, skipped: 0 },
      { site: "site-z", matched: 0, done: 0, skipped: 0, error: "nats: connection refused" },
    ]);
    assert.equal(status?.messages?.length, 1, "what the reachable site answered is kept");
  });

  it("filters tracking records by domain: find never shows another domain's mail", async () => {
    const record = (queueId: string, domain: string): TrackingRecord => ({
      queueId,
      sender: "s@sender.test",
      recipients: [`u@${domain}`],
      domain,
      arrivedAt: "2026-12-05T10:00:00.000Z",
      outcome: "delivered",
      updatedAt: "2026-12-05T10:00:01.000Z",
    });
    const w = world({ "site-a": new MemoryQueue([], [record(qid(1), "example.test"), record(qid(2), "other.test")]) });
    const key = request(w, "team-a", "find-1", { action: "find", selector: { sender: "s@sender.test" } });
    await w.reconciler.reconcile(key);
    assert.deepEqual(
      stored(w, key)?.status?.records?.map((r) => r.queueId),
      [qid(1)],
    );
  });

  it("deletes a finished request once its TTL has passed", async () => {
    let now = NOW;
    const w = world({ "site-a": new MemoryQueue([]) }, () => now);
    const key = request(w, "team-a", "list-5", { ttlSecondsAfterFinished: 10 });
    assert.equal((await w.reconciler.reconcile(key)).requeueAfterMs, 10_000);
    now = new Date(NOW.getTime() + 5_000);
    assert.equal((await w.reconciler.reconcile(key)).requeueAfterMs, 5_000);
    now = new Date(NOW.getTime() + 10_000);
    await w.reconciler.reconcile(key);
    assert.equal(stored(w, key), undefined);
  });
});

describe("kubectl-mxwarden: command line", () => {
  it("builds the request of each form, passing kubectl's flags through", () => {
    const list = parsePluginArgs(["queue", "list", "-n", "team-a", "example", "--older-than", "2h", "--kubeconfig=/k", "--context", "mgmt"]);
    assert.ok(list !== "help");
    assert.equal(list.action, "list");
    assert.equal(list.domainRef, "example");
    assert.deepEqual(list.selector, { olderThan: "2h" });
    assert.deepEqual(list.kubectlFlags, ["--kubeconfig=/k", "--context=mgmt", "--namespace=team-a"]);
    const retry = parsePluginArgs(["queue", "retry", "example", qid(1), qid(1), qid(2), "-o", "json"]);
    assert.ok(retry !== "help");
    assert.deepEqual(retry.selector, { queueIds: [qid(1), qid(2)] });
    assert.equal(retry.output, "json");
    const all = parsePluginArgs(["queue", "hold", "example", "--all", "--sender", "x@y.test"]);
    assert.ok(all !== "help");
    assert.deepEqual(all.selector, { sender: "x@y.test", all: true });
    const find = parsePluginArgs(["find", "--message-id", "<m@x>", "--since", "2d"]);
    assert.ok(find !== "help");
    assert.equal(find.domainRef, undefined);
    assert.deepEqual(find.selector, { messageId: "<m@x>", since: "2d" });
  });

  it("refuses what the CRD would refuse, with a usage error", () => {
    for (const argv of [
      [],
      ["queue", "purge", "example"],
      ["queue", "retry", "example"],
      ["queue", "retry", "example", "--all", qid(1)],
      ["queue", "list"],
      ["queue", "list", "example", "--all"],
      ["queue", "list", "example", "--older-than", "soon"],
      ["queue", "list", "example", "--state", "stuck"],
      ["find"],
      ["find", "--sender", "x@y.test", "--all"],
      ["queue", "list", "example", "-o", "yaml"],
      ["queue", "list", "example", "--bogus"],
    ]) {
      assert.throws(() => parsePluginArgs(argv), UsageError, argv.join(" "));
    }
  });
});

describe("kubectl-mxwarden: output", () => {
  const finished = (status: RelayQueueRequest["status"], action: RelayQueueRequest["spec"]["action"] = "retry"): RelayQueueRequest => ({
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayQueueRequest",
    metadata: { name: "r-1", namespace: "team-a" },
    spec: { domainRef: "example", action, requestedBy: "alice" },
    status,
  });

  it("prints an action as mxwarden-queue does, failing on a queue id that is not queued", () => {
    const printed = printResults(
      [
        finished({
          phase: "Succeeded",
          results: [{ site: "a", matched: 2, done: 1, skipped: 1 }],
          queueIds: [{ site: "a", queueId: qid(1) }],
          skippedMessages: [
            { site: "a", queueId: qid(2), reason: "being delivered" },
            { queueId: qid(3), reason: "not queued for example.test at any site" },
          ],
        }),
      ],
      "table",
    );
    assert.equal(
      printed.stdout,
      `retry: 1 of 2 matched messages\n  ${qid(1)}  done\n  ${qid(2)}  skipped: being delivered (a)\n  ${qid(3)}  skipped: not queued for example.test at any site\n`,
    );
    assert.equal(printed.ok, false);
  });

  it("lists the messages of every request with their site in JSON, and says why a request failed", () => {
    const printed = printResults(
      [
        finished(
          {
            phase: "Failed",
            messages: [{ site: "a", ...message(qid(1), "example.test") }],
            truncated: 3,
            conditions: [{ type: "Failed", status: "True", reason: "SiteErrors", message: "b: timeout", lastTransitionTime: NOW.toISOString() }],
          },
          "list",
        ),
      ],
      "json",
    );
    assert.deepEqual(JSON.parse(printed.stdout), [{ site: "a", ...message(qid(1), "example.test") }]);
    assert.equal(printed.ok, false);
    assert.match(printed.stderr, /request team-a\/r-1 failed: b: timeout/);
    assert.match(printed.stderr, /3 more not shown/);
    const late = printResults([finished({ phase: "Running" }, "list")], "table");
    assert.equal(late.ok, false);
    assert.match(late.stderr, /request team-a\/r-1 did not finish in time; it goes on: kubectl get relayqueuerequest -n team-a r-1 -o yaml/);
  });
});
