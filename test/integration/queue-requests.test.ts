// Queue operations from Kubernetes, end to end: a real kube-apiserver with the chart's RBAC and
// admission policy, the operator as a process with the chart's rights, two sites each with its own
// nats-server and a real relay holding deferred mail (the primary is down), and the teams' users
// running `kubectl mxwarden` as a subprocess with operator/bin and .tools/bin on PATH, exactly as a
// user would. What the plugin prints is compared with what mxwarden-queue (the CLI, run against
// each site's NATS) prints.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { OperatorProcess } from "../harness/operator-process.ts";
import { RelayProcess, writeDomains, type RelayDomainSpec } from "../harness/relay-process.ts";
import { TestNatsServer } from "../harness/nats-server.ts";
import { TestPrimary } from "../harness/test-primary.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import { CHART_DIR, helmTemplate, KUBECTL } from "../harness/helm.ts";
import { eventually, freePort, repoRoot, tempDir } from "../harness/workspace.ts";
import { ApiClient, isNotFound } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import type { ListedMessage, ListedRecord, RelayQueueRequest } from "#api";
import type { QueuedMessage, TrackingRecord } from "#relay";

const OPERATOR_NS = "mxwarden-system";
const SA = "mxwarden-operator";
const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NS}:${SA}`;
const SITES = ["site-a", "site-b"] as const;
const PATH = `${join(repoRoot, "operator/bin")}:${join(repoRoot, ".tools/bin")}:${process.env.PATH ?? ""}`;

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function runWith(command: string, args: string[], env: Record<string, string>, input?: string): Run {
  const result = spawnSync(command, args, { encoding: "utf8", input, env: { ...process.env, PATH, ...env }, timeout: 120_000 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Rows of a table as mxwarden-queue prints it, without the header and the summary line. */
function tableRows(text: string): string[] {
  return text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("QUEUE ID") && !line.startsWith("-- "))
    .sort();
}

function withoutSite<T extends { site?: string }>(items: T[]): Omit<T, "site">[] {
  return items.map(({ site: _site, ...rest }) => rest);
}

describe("queue operations from Kubernetes: RelayQueueRequest and kubectl mxwarden", () => {
  const work = tempDir("queue-requests");
  let plane: TestControlPlane;
  let admin: ApiClient;
  let operator: OperatorProcess | undefined;
  let primary: TestPrimary | undefined;
  let primaryPort: number;
  const nats: Record<string, TestNatsServer> = {};
  const relays: Record<string, RelayProcess> = {};
  const kubeconfigs: Record<string, string> = {};
  /** Queue ids of the mail accepted for example.test and other.test, by site. */
  const accepted: Record<string, { example: string[]; other: string[] }> = {};

  /** `kubectl mxwarden ...` as `user` would type it. */
  function plugin(user: string, args: string[]): Run {
    return runWith("kubectl", ["mxwarden", ...args], { KUBECONFIG: kubeconfigs[user] as string });
  }

  function kubectlAs(user: string, args: string[], input?: string): Run {
    return runWith(KUBECTL, args, { KUBECONFIG: kubeconfigs[user] as string }, input);
  }

  /** mxwarden-queue against one site's NATS. */
  function cli(site: string, args: string[]): Run {
    return runWith(join(repoRoot, "relay/bin/mxwarden-queue"), ["--nats", nats[site]?.url as string, "--actor", "test", ...args], {});
  }

  function cliList(site: string, domain: string): QueuedMessage[] {
    const result = cli(site, ["list", "--domain", domain, "--json"]);
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as QueuedMessage[];
  }

  async function request(namespace: string, name: string): Promise<RelayQueueRequest | undefined> {
    try {
      return await admin.get<RelayQueueRequest>(Resources.RelayQueueRequest, namespace, name);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async function accept(site: string, to: string, n: number): Promise<string> {
    const result = await sendMail(relays[site]?.smtpPort as number, {
      from: "sender@client.test",
      to: [to],
      body: simpleMessage(`message ${n}`, `m${n}-${site}`),
    });
    assert.equal(result.data?.code, 250, result.data?.text);
    const queueId = /queued as ([0-9A-Z]{25})/.exec(result.data?.text ?? "")?.[1];
    assert.ok(queueId, `no queue id in ${result.data?.text}`);
    return queueId;
  }

  before(async () => {
    plane = await TestControlPlane.start({ name: "queue-requests" });
    admin = new ApiClient(plane.kubeConfig());
    await plane.installCrds(["relaydomains", "relaysites", "relayqueuerequests"].map((name) => join(CHART_DIR, `crds/${name}.mxwarden.io.yaml`)));
    for (const ns of [OPERATOR_NS, "team-a", "team-b"])
      await admin.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });

    // The chart's RBAC and admission policy, as helm would install them.
    const rendered = helmTemplate(OPERATOR_NS, ["--no-hooks"]).filter((o) =>
      ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"].includes(
        o.kind ?? "",
      ),
    );
    const applied = runWith(KUBECTL, ["--kubeconfig", plane.kubeconfigPath, "apply", "-f", "-"], {}, rendered.map((o) => JSON.stringify(o)).join("\n"));
    assert.equal(applied.status, 0, applied.stderr);

    // Teams: alice in team-a, bob in team-b, each bound to the chart's role in their namespace
    // only (no kube-controller-manager here aggregates it into edit, so it is bound directly).
    for (const [user, namespace] of [
      ["alice", "team-a"],
      ["bob", "team-b"],
    ] as const) {
      const bound = kubectlAs("admin", [
        "--kubeconfig",
        plane.kubeconfigPath,
        "create",
        "rolebinding",
        `${user}-queue`,
        "-n",
        namespace,
        "--clusterrole=mxwarden-queue-operator",
        `--user=${user}`,
      ]);
      assert.equal(bound.status, 0, bound.stderr);
      kubeconfigs[user] = join(work.path, `${user}.kubeconfig`);
      writeFileSync(kubeconfigs[user], plane.kubeconfigYamlFor(user, ["team"]));
    }
    kubeconfigs.admin = plane.kubeconfigPath;

    // Two sites, each its own NATS (JetStream domain) and a relay; the primary is down, so mail waits.
    primaryPort = await freePort();
    // other.test's primary never answers: its mail stays queued whatever example.test's primary does
    // (a primary that comes back has its held mail flushed by the relays' probe, which would race the
    // assertion that the retry left other.test alone).
    const silentPort = await freePort();
    const domains: RelayDomainSpec[] = [
      { name: "example", domain: "example.test", primary: { hosts: [{ host: "127.0.0.1", port: primaryPort }] }, queue: { retry: { initialBackoff: "1h" } } },
      { name: "other", domain: "other.test", primary: { hosts: [{ host: "127.0.0.1", port: silentPort }] }, queue: { retry: { initialBackoff: "1h" } } },
    ];
    for (const site of SITES) {
      const dir = join(work.path, site);
      mkdirSync(dir, { recursive: true });
      nats[site] = await TestNatsServer.start(join(dir, "nats"), { domain: site });
      const domainsPath = join(dir, "domains.yaml");
      writeDomains(domainsPath, domains);
      relays[site] = await RelayProcess.start({ dir, domainsPath, nats: nats[site].url, hostname: `mx-${site}.backup.test`, args: ["--site", site] });
      await relays[site].ready();
    }
    let n = 0;
    accepted["site-a"] = {
      example: [await accept("site-a", "one@example.test", ++n), await accept("site-a", "two@example.test", ++n)],
      other: [await accept("site-a", "three@other.test", ++n)],
    };
    accepted["site-b"] = { example: [await accept("site-b", "four@example.test", ++n)], other: [] };
    for (const site of SITES) {
      await eventually(`${site}: every message deferred`, () => {
        const listed = [...cliList(site, "example.test"), ...cliList(site, "other.test")];
        return listed.length === (accepted[site]?.example.length ?? 0) + (accepted[site]?.other.length ?? 0) && listed.every((m) => m.state === "deferred");
      });
    }

    for (const site of SITES) {
      await admin.create(Resources.RelaySite, {
        apiVersion: "mxwarden.io/v1alpha1",
        kind: "RelaySite",
        metadata: { name: site },
        spec: {
          namespace: `mxwarden-${site}`,
          hostname: `mx-${site}.backup.test`,
          replicas: 1,
          // The relays' in-cluster address; the operator, outside, dials operatorUrl.
          nats: { url: "nats://nats.mxwarden:4222", operatorUrl: nats[site]?.url as string, domain: site, streamReplicas: 1 },
        },
      });
    }
    for (const [namespace, name, domain] of [
      ["team-a", "example", "example.test"],
      ["team-b", "other", "other.test"],
    ] as const) {
      await admin.create(Resources.RelayDomain, {
        apiVersion: "mxwarden.io/v1alpha1",
        kind: "RelayDomain",
        metadata: { name, namespace },
        spec: { domain, primary: { hosts: [{ host: "127.0.0.1", port: primaryPort }] } },
      });
    }

    // The operator with the identity and rights the chart gives it, nothing more.
    const operatorKubeconfig = join(work.path, "operator.kubeconfig");
    writeFileSync(
      operatorKubeconfig,
      plane.kubeconfigYamlFor(OPERATOR_USER, ["system:serviceaccounts", `system:serviceaccounts:${OPERATOR_NS}`, "system:authenticated"]),
    );
    operator = await OperatorProcess.start({
      dir: work.path,
      kubeconfigPath: operatorKubeconfig,
      namespace: OPERATOR_NS,
      identity: "operator-queue",
      args: ["--dns-servers=off", "--leader-election=false"],
    });
  });

  after(async () => {
    await operator?.stop();
    await Promise.all(Object.values(relays).map((relay) => relay.stop()));
    await Promise.all(Object.values(nats).map((server) => server.stop()));
    await primary?.close();
    await plane?.stop();
  });

  it("lists a team's queue at every site: the same rows as mxwarden-queue, as a table and as JSON", async () => {
    const fromCli = SITES.flatMap((site) => cliList(site, "example.test"));
    assert.equal(fromCli.length, 3);
    const json = plugin("alice", ["queue", "list", "-n", "team-a", "example", "-o", "json"]);
    assert.equal(json.status, 0, json.stderr);
    const listed = JSON.parse(json.stdout) as ListedMessage[];
    assert.deepEqual(
      listed.map((m) => `${m.site}:${m.queueId}`).sort(),
      SITES.flatMap((site) => (accepted[site]?.example ?? []).map((id) => `${site}:${id}`)).sort(),
    );
    const byId = (a: { queueId: string }, b: { queueId: string }): number => a.queueId.localeCompare(b.queueId);
    assert.deepEqual(withoutSite(listed).sort(byId), [...fromCli].sort(byId), "the CLI's JSON objects, plus site");

    const table = plugin("alice", ["queue", "list", "-n", "team-a", "example"]);
    assert.equal(table.status, 0, table.stderr);
    const cliTables = SITES.map((site) => cli(site, ["list", "--domain", "example.test"]).stdout);
    assert.deepEqual(tableRows(table.stdout), cliTables.flatMap(tableRows).sort());
    assert.match(table.stdout, /-- 3 messages, \d+ bytes/);
    assert.doesNotMatch(table.stdout, /other\.test/, "only the team's own domain");
  });

  it("holds and releases one message through the plugin, and logs who did it", async () => {
    const [target] = accepted["site-a"]?.example ?? [];
    assert.ok(target);
    const hold = plugin("alice", ["queue", "hold", "-n", "team-a", "example", target]);
    assert.equal(hold.status, 0, hold.stderr);
    assert.equal(hold.stdout, `hold: 1 of 1 matched message\n  ${target}  done\n`, "as mxwarden-queue prints it");
    assert.equal(cliList("site-a", "example.test").find((m) => m.queueId === target)?.state, "held");
    const logged = await operator?.process.waitForLine(/"msg":"queue request carried out at site".*"action":"hold"/);
    const record = JSON.parse(logged ?? "{}") as Record<string, unknown>;
    assert.equal(record.requestedBy, "alice");
    assert.equal(record.actor, "k8s:team-a/alice");
    assert.deepEqual(record.queueIds, [target]);
    assert.equal(record.namespace, "team-a");
    assert.ok(record.uid, "the request's uid");

    // kubectl's own flags reach every kubectl the plugin runs: bob's environment, alice's --kubeconfig.
    const release = runWith("kubectl", ["mxwarden", "queue", "release", "-n", "team-a", "example", target, "-o", "json", `--kubeconfig=${kubeconfigs.alice}`], {
      KUBECONFIG: kubeconfigs.bob as string,
    });
    assert.equal(release.status, 0, release.stderr);
    assert.deepEqual((JSON.parse(release.stdout) as { done: string[] }).done, [target]);
    assert.notEqual(cliList("site-a", "example.test").find((m) => m.queueId === target)?.state, "held");
  });

  it("keeps a team to its own namespace: Forbidden elsewhere, and another team's RelayDomain does not exist from its view", async () => {
    const forbidden = plugin("alice", ["queue", "list", "-n", "team-b", "other"]);
    assert.equal(forbidden.status, 1);
    assert.match(forbidden.stderr, /forbidden/i);
    assert.match(forbidden.stderr, /alice/);

    const before = cliList("site-a", "other.test");
    const foreign = plugin("alice", ["queue", "retry", "-n", "team-a", "other", "--all"]);
    assert.equal(foreign.status, 1);
    assert.match(foreign.stderr, /no RelayDomain "other" in namespace team-a/);
    assert.deepEqual(cliList("site-a", "other.test"), before, "team-b's mail untouched");
  });

  it("refuses a request whose requestedBy is not its creator (admission policy)", () => {
    const spoofed = {
      apiVersion: "mxwarden.io/v1alpha1",
      kind: "RelayQueueRequest",
      metadata: { generateName: "list-", namespace: "team-a" },
      spec: { domainRef: "example", action: "list", requestedBy: "bob" },
    };
    const result = kubectlAs("alice", ["create", "-f", "-"], JSON.stringify(spoofed));
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /mxwarden-queue-request-requester.*denied request: spec\.requestedBy must be the name you are authenticated as: alice/);
    const honest = kubectlAs("alice", ["create", "-f", "-", "-o", "name"], JSON.stringify({ ...spoofed, spec: { ...spoofed.spec, requestedBy: "alice" } }));
    assert.equal(honest.status, 0, honest.stderr);
  });

  it("refuses invalid requests in the schema, before the operator sees them", () => {
    const base = { apiVersion: "mxwarden.io/v1alpha1", kind: "RelayQueueRequest", metadata: { generateName: "bad-", namespace: "team-a" } };
    for (const [spec, message] of [
      [{ domainRef: "example", action: "retry", requestedBy: "alice" }, /need either queueIds or all: true/],
      [
        { domainRef: "example", action: "delete", requestedBy: "alice", selector: { all: true, queueIds: ["LZ3X0A1B2C3D4E5F6A7B8C9D0"] } },
        /need either queueIds or all: true/,
      ],
      [{ domainRef: "example", action: "find", requestedBy: "alice", selector: { since: "2d" } }, /find needs messageId, sender or recipient/],
      [{ domainRef: "example", action: "list", requestedBy: "alice", selector: { queueIds: ["nope"] } }, /queueIds\[0\]/],
      [{ domainRef: "example", action: "purge", requestedBy: "alice" }, /spec\.action/],
    ] as const) {
      const result = kubectlAs("alice", ["create", "-f", "-"], JSON.stringify({ ...base, spec }));
      assert.notEqual(result.status, 0, JSON.stringify(spec));
      assert.match(result.stderr, message);
    }
  });

  it("retries the team's mail now at every site, leaving other domains alone", async () => {
    primary = await TestPrimary.start(primaryPort);
    const otherBefore = cliList("site-a", "other.test");
    const retry = plugin("alice", ["queue", "retry", "-n", "team-a", "example", "--all"]);
    assert.equal(retry.status, 0, retry.stderr);
    assert.match(retry.stdout, /^retry: 3 of 3 matched messages\n/);
    const delivered = await primary.waitForMessages(3);
    assert.deepEqual(delivered.flatMap((m) => m.to).sort(), ["four@example.test", "one@example.test", "two@example.test"]);
    await eventually("example.test queues empty", () => SITES.every((site) => cliList(site, "example.test").length === 0));
    assert.deepEqual(
      cliList("site-a", "other.test").map((m) => m.queueId),
      otherBefore.map((m) => m.queueId),
      "other.test still queued",
    );
  });

  it("finds the team's delivered mail by sender, and only the team's", async () => {
    // Relays write their outcomes to the tracking log in batches, every 250 ms.
    const records = await eventually("the three outcomes in the tracking log", () => {
      const found = plugin("alice", ["find", "-n", "team-a", "--sender", "sender@client.test", "-o", "json"]);
      assert.equal(found.status, 0, found.stderr);
      const listed = JSON.parse(found.stdout) as ListedRecord[];
      return listed.length === 3 && listed.every((r) => r.outcome === "delivered") && listed;
    });
    assert.deepEqual(records.map((r) => r.domain).sort(), ["example.test", "example.test", "example.test"]);
    assert.ok(records.every((r) => r.outcome === "delivered"));
    const fromCli = SITES.flatMap((site) => JSON.parse(cli(site, ["find", "--sender", "sender@client.test", "--json"]).stdout) as TrackingRecord[]);
    assert.equal(fromCli.filter((r) => r.domain === "other.test").length, 1, "the CLI, with the site's rights, sees other.test too");
  });

  it("deletes a finished request after ttlSecondsAfterFinished", async () => {
    const created = kubectlAs(
      "alice",
      ["create", "-f", "-", "-o", "jsonpath={.metadata.name}"],
      JSON.stringify({
        apiVersion: "mxwarden.io/v1alpha1",
        kind: "RelayQueueRequest",
        metadata: { generateName: "list-", namespace: "team-a" },
        spec: { domainRef: "example", action: "list", requestedBy: "alice", ttlSecondsAfterFinished: 2 },
      }),
    );
    assert.equal(created.status, 0, created.stderr);
    const name = created.stdout.trim();
    const finished = await eventually("request finished", async () => {
      const found = await request("team-a", name);
      return found?.status?.phase === "Succeeded" && found;
    });
    assert.ok(finished.status?.completedAt);
    await eventually("request deleted by its TTL", async () => (await request("team-a", name)) === undefined, 30_000);
  });
});
