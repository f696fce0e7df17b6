// The user's path on a real single-node cluster (test/harness/kube-node.ts), with the real tools:
// helm installs the chart (CRDs from charts/mxwarden/crds), kubectl applies a RelaySite (whose
// three nats-servers the operator runs) and a RelayDomain as docs/install.md shows, the relay
// pods run the images `make images` built under the operator's security context, swaks sends mail
// to the SMTP Service's NodePort, and it reaches a primary on the host. One NATS server is deleted
// during load, then one relay pod, then a new relay image is rolled out: nothing accepted is lost or
// delivered twice. A RelayDomain change must reach the running relays without a restart.
// The figures (cluster start, helm install to the first Ready RelayDomain, spec change to the
// relays) are printed at the end.
//
// Needs root and `make deps-cluster` (binaries, Debian packages, images): run it with
// `make test-cluster`, which sets MXWARDEN_CLUSTER_TESTS=1. Without it the suite is skipped.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, nkeyAuthenticator } from "@nats-io/transport-node";
import { queueReportKey } from "#api";
import { NODE_IP } from "../harness/kube-node.ts";
import { ClusterSession, OPERATOR_NS, seconds } from "../harness/cluster-session.ts";
import { chartInstallArgs, natsImage, prepareSiteNamespace, projectImages, relayDomainManifest, relaySiteManifest } from "../harness/cluster-manifests.ts";
import { CHART_DIR, HELM } from "../harness/helm.ts";
import { type TestPrimary, headerValue } from "../harness/test-primary.ts";
import { SmtpDialogue, simpleMessage } from "../harness/smtp-dialogue.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";

const ENABLED = process.env.MXWARDEN_CLUSTER_TESTS === "1";
const SITE_NS = "mxwarden";
const TEAM_NS = "team-a";

interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { containers: Array<{ image: string; securityContext?: Record<string, unknown> }>; securityContext?: Record<string, unknown> };
  status: {
    podIP?: string;
    phase?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ restartCount: number; ready: boolean }>;
  };
}

describe("mxwarden on a real single-node cluster (helm, kubectl, swaks)", {
  skip: ENABLED ? false : "set MXWARDEN_CLUSTER_TESTS=1 (make test-cluster)",
}, () => {
  const work = tempDir("cluster-e2e");
  const cluster = new ClusterSession("cluster-e2e");
  const { node, figures } = cluster;
  let primary: TestPrimary;
  let helmInstalledAt = 0;

  const kubectl = (args: string[], input?: string): string => cluster.kubectl(args, input);
  const helm = (args: string[]): string => cluster.helm(args);
  const json = <T>(args: string[]): T => JSON.parse(kubectl([...args, "-o", "json"])) as T;
  const relayPods = (): Pod[] => json<{ items: Pod[] }>(["-n", SITE_NS, "get", "pods", "-l", "app.kubernetes.io/name=mxwarden-relay"]).items;
  const natsPods = (): Pod[] => json<{ items: Pod[] }>(["-n", SITE_NS, "get", "pods", "-l", "app.kubernetes.io/name=mxwarden-nats"]).items;
  const ready = (pod: Pod): boolean => pod.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

  async function configGeneration(pod: Pod): Promise<number> {
    const text = await (await fetch(`http://${pod.status.podIP}:9090/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const match = /^mxwarden_config_generation (\d+)/m.exec(text);
    return Number(match?.[1] ?? -1);
  }

  before(async () => {
    await cluster.start(projectImages());
    primary = cluster.primary;
  });

  after(async () => {
    await cluster.stop();
    work.remove();
  });

  it("helm install: the CRDs and two operator replicas, Ready", () => {
    helmInstalledAt = Date.now();
    // The NATS image `make images` built from the pinned nats-server, instead of the public one.
    helm(chartInstallArgs(OPERATOR_NS));
    kubectl(["-n", OPERATOR_NS, "rollout", "status", "deployment/mxwarden-operator", "--timeout=120s"]);
    figures.helmInstallToOperatorReadySeconds = seconds(Date.now() - helmInstalledAt);
    const crds = kubectl(["get", "crd", "-o", "name"]);
    assert.match(crds, /relaydomains\.mxwarden\.io/);
    assert.match(crds, /relaysites\.mxwarden\.io/);
  });

  it("a site and a domain as docs/install.md shows: relay pods Ready under the chart's security context, the RelayDomain Ready", async () => {
    kubectl(["create", "namespace", SITE_NS]);
    // The site's TLS certificate (self-signed here) and its NATS servers' volumes.
    prepareSiteNamespace(kubectl, SITE_NS, work.path);
    const siteApplied = Date.now();
    kubectl(["apply", "-f", "-"], relaySiteManifest());
    // The operator runs the site's NATS: three servers, Ready once JetStream runs on each.
    await eventually(
      "the operator's NATS StatefulSet: three servers Ready",
      () => kubectl(["-n", SITE_NS, "get", "statefulset", "mxwarden-nats", "-o", "jsonpath={.status.readyReplicas}"]) === "3",
      300_000,
      500,
    );
    figures.siteApplyToNatsReadySeconds = seconds(Date.now() - siteApplied);
    // A site serving no domain yet is Ready (docs/install.md shows it so), its relays too.
    await eventually(
      "RelaySite site-a Ready with no domains",
      () => kubectl(["get", "relaysite", "site-a", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === "True",
      300_000,
      500,
    );
    figures.helmInstallToEmptySiteReadySeconds = seconds(Date.now() - helmInstalledAt);
    // Ready means every relay the site asks for, not the first one.
    assert.equal(kubectl(["get", "relaysite", "site-a", "-o", "jsonpath={.status.readyReplicas}"]), "2");
    assert.equal(relayPods().filter(ready).length, 2);
    kubectl(["create", "namespace", TEAM_NS]);
    const domainApplied = Date.now();
    kubectl(["apply", "-n", TEAM_NS, "-f", "-"], relayDomainManifest(NODE_IP, cluster.primaryPort));

    await eventually(
      "RelayDomain example-com Ready",
      () => {
        const status = kubectl(["-n", TEAM_NS, "get", "relaydomain", "example-com", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
        return status === "True";
      },
      300_000,
      500,
    );
    figures.helmInstallToFirstReadyRelayDomainSeconds = seconds(Date.now() - helmInstalledAt);
    figures.newDomainToReadySeconds = seconds(Date.now() - domainApplied);
    const table = kubectl(["get", "relaydomains", "-n", TEAM_NS]);
    console.log(`# kubectl get relaydomains -n ${TEAM_NS}\n${table.replace(/^/gm, "# ")}`);
    assert.match(table, /example-com\s+example\.com\s+1\/1\s+\d+\s+True/);
    console.log(`# kubectl get relaysites\n${kubectl(["get", "relaysites"]).replace(/^/gm, "# ")}`);

    const pods = await eventually(
      "two Ready relay pods",
      () => {
        const list = relayPods();
        return list.length === 2 && list.every(ready) && list;
      },
      180_000,
      500,
    );
    for (const pod of pods) {
      const container = pod.spec.containers[0];
      assert.equal(container?.image, projectImages()[0]);
      assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
      assert.equal(container?.securityContext?.allowPrivilegeEscalation, false);
      assert.deepEqual(container?.securityContext?.capabilities, { drop: ["ALL"] });
      assert.equal(pod.spec.securityContext?.runAsNonRoot, true);
      // The process really runs as uid 10001 on a read-only root.
      const id = kubectl(["-n", SITE_NS, "exec", pod.metadata.name, "--", "sh", "-c", "id -u; touch /app/x 2>&1 || true"]);
      assert.match(id, /^10001\n/);
      assert.match(id, /Read-only file system/);
    }
    assert.equal(kubectl(["get", "namespace", SITE_NS, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"]), "restricted");

    // The relays log in to the operator's NATS with the seed it generated, mounted from a Secret.
    const args = pods[0]?.spec.containers[0] as unknown as { args: string[] };
    assert.ok(args.args.includes("--nats=nats://mxwarden-nats.mxwarden.svc:4222"), args.args.join(" "));
    assert.ok(args.args.includes("--nats-nkey-file=/etc/mxwarden/nats/nkey.seed"));
    const nats = natsPods();
    assert.equal(nats.filter(ready).length, 3);
    for (const pod of nats) {
      const container = pod.spec.containers[0];
      assert.equal(container?.image, natsImage());
      assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
      assert.deepEqual(container?.securityContext?.capabilities, { drop: ["ALL"] });
    }
    assert.equal(kubectl(["get", "relaysite", "site-a", "-o", 'jsonpath={.status.conditions[?(@.type=="NatsReady")].status}']), "True");
    // The servers refuse a client without the key, and take the relays' seed from its Secret.
    const server = `nats://${nats[0]?.status.podIP}:4222`;
    await assert.rejects(connect({ servers: server, reconnect: false }), /Authorization Violation/i);
    const seed = Buffer.from(kubectl(["-n", SITE_NS, "get", "secret", "mxwarden-nats-relay", "-o", "jsonpath={.data.nkey\\.seed}"]), "base64");
    const nc = await connect({ servers: server, authenticator: nkeyAuthenticator(new Uint8Array(seed)) });
    try {
      assert.equal((await (await jetstreamManager(nc)).getAccountInfo()).domain, "site-a");
    } finally {
      await nc.close();
    }
  });

  it("mail sent to the SMTP Service's NodePort reaches the primary on the host", async () => {
    const nodePort = kubectl(["-n", SITE_NS, "get", "service", "mxwarden-smtp", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert.match(nodePort, /^\d+$/);
    figures.smtpNodePort = Number(nodePort);
    const before = primary.messages.length;
    const sent = Date.now();
    const result = await cluster.swaksThroughNodePort(nodePort, { to: "alice@example.com", subject: "through the NodePort", body: "hello from the host" });
    assert.equal(result.exitCode, 0, result.transcript);
    await eventually("the message at the primary", () => primary.messages.length > before, 120_000, 200);
    figures.nodePortToPrimarySeconds = seconds(Date.now() - sent);
    const message = primary.messages.at(-1);
    assert.deepEqual(message?.to, ["alice@example.com"]);
    assert.match(message?.body.toString("utf8") ?? "", /hello from the host/);
    assert.match(message?.body.toString("utf8") ?? "", /Received: from client\.example\.org/);

    // Again with STARTTLS (the site's certificate from the Secret): the Received header names the
    // protocol version and the cipher.
    const tls = await cluster.swaksThroughNodePort(nodePort, { to: "bob@example.com", subject: "with STARTTLS", body: "hello over TLS", tls: true });
    assert.equal(tls.exitCode, 0, tls.transcript);
    await eventually("the TLS message at the primary", () => primary.messages.some((m) => m.to.includes("bob@example.com")), 120_000, 200);
    const received =
      /Received: from client\.example\.org[\s\S]*?;/.exec(primary.messages.find((m) => m.to.includes("bob@example.com"))?.body.toString("utf8") ?? "")?.[0] ??
      "";
    assert.match(received, /using TLSv1\.[23] with cipher \S+/, received);
  });

  it("the team finds its delivered mail with kubectl mxwarden, through the operator and the site's managed NATS", () => {
    // As README, "Queue operations", "From Kubernetes": the plugin on PATH next to kubectl, the
    // user's kubeconfig; the operator (a pod) carries the request out at the site's NATS.
    const path = `${join(repoRoot, "operator/bin")}:${join(repoRoot, ".tools/bin")}:${process.env.PATH ?? ""}`;
    const run = spawnSync("kubectl", ["mxwarden", "find", "-n", TEAM_NS, "--sender", "sender@example.org", "example-com", "-o", "json", "--timeout", "90s"], {
      encoding: "utf8",
      env: { ...process.env, PATH: path, KUBECONFIG: node.kubeconfigPath },
      timeout: 150_000,
    });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const records = JSON.parse(run.stdout) as Array<{ outcome: string; recipients: string[]; sender: string }>;
    assert.ok(
      records.some((r) => r.outcome === "delivered" && r.recipients.includes("alice@example.com")),
      `the NodePort message among ${run.stdout}`,
    );
    assert.ok(records.every((r) => r.sender === "sender@example.org"));
  });

  it("one NATS server deleted during load: every message that got 250 reaches the primary once", async () => {
    const nodePort = Number(kubectl(["-n", SITE_NS, "get", "service", "mxwarden-smtp", "-o", "jsonpath={.spec.ports[0].nodePort}"]));
    const total = 150;
    const deleteAt = 40;
    const accepted = new Set<string>();
    let refused = 0;
    let failed = 0;
    let next = 0;
    let deletedAt = 0;
    const sendOne = async (i: number): Promise<void> => {
      const id = `load-${i}-${Date.now()}`;
      try {
        const { dialogue } = await SmtpDialogue.open(nodePort, NODE_IP);
        try {
          await dialogue.command("EHLO client.example.org");
          const mail = await dialogue.command("MAIL FROM:<sender@example.org>");
          const rcpt = mail.code === 250 ? await dialogue.command("RCPT TO:<alice@example.com>") : mail;
          const data = rcpt.code === 250 ? await dialogue.data(simpleMessage(`load ${i}`, id)) : rcpt;
          if (data.code === 250) accepted.add(`<${id}@client.test>`);
          else refused++;
          await dialogue.command("QUIT").catch(() => undefined);
        } finally {
          dialogue.destroy();
        }
      } catch {
        failed++;
      }
    };
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        if (i === deleteAt) {
          // The server most likely to hold stream leaders: the first one.
          kubectl(["-n", SITE_NS, "delete", "pod", "mxwarden-nats-0", "--wait=false"]);
          deletedAt = Date.now();
        }
        await sendOne(i);
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 5 }, worker));
    figures.natsPodDeletedLoad = JSON.stringify({ sent: total, accepted: accepted.size, refused, failed, seconds: seconds(Date.now() - started) });
    assert.ok(deletedAt > 0);
    assert.ok(accepted.size >= total / 2, `most messages accepted: ${accepted.size} of ${total}`);
    const deliveredIds = (): Map<string, number> => {
      const counts = new Map<string, number>();
      for (const message of primary.messages) {
        const id = headerValue(message.body, "Message-ID") ?? "";
        if (id.startsWith("<load-")) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return counts;
    };
    await eventually("every accepted message at the primary", () => [...accepted].every((id) => deliveredIds().has(id)), 300_000, 500);
    const counts = deliveredIds();
    const lost = [...accepted].filter((id) => !counts.has(id)).length;
    const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
    // A 451 whose publish had in fact been stored (the acknowledgement lost with the server) is
    // delivered anyway: the sender retries it, so that one arrives twice. Counted, not failed.
    const deliveredDespite4xx = [...counts.keys()].filter((id) => !accepted.has(id)).length;
    figures.natsPodDeletedCounts = JSON.stringify({ accepted: accepted.size, delivered: counts.size, lost, duplicates, deliveredDespite4xx });
    assert.equal(lost, 0);
    // The deleted server comes back with its claim and rejoins.
    await eventually(
      "three NATS servers Ready again",
      () => kubectl(["-n", SITE_NS, "get", "statefulset", "mxwarden-nats", "-o", "jsonpath={.status.readyReplicas}"]) === "3",
      300_000,
      500,
    );
    figures.natsPodBackSeconds = seconds(Date.now() - deletedAt);
  });

  it("a relay pod deleted, then a new relay image rolled out, during load: every message that got 250 reaches the primary once", async () => {
    const nodePort = Number(kubectl(["-n", SITE_NS, "get", "service", "mxwarden-smtp", "-o", "jsonpath={.spec.ports[0].nodePort}"]));
    const logs = join(repoRoot, ".tmp/cluster-e2e-logs");
    mkdirSync(logs, { recursive: true });
    for (const file of readdirSync(logs)) if (file.startsWith("relay-")) rmSync(join(logs, file));
    // The log of a relay being stopped, up to its exit: kubectl logs -l finds only the pods left.
    const follow = (pod: Pod): { file: string; exited: Promise<number> } => {
      const file = join(logs, `relay-${pod.metadata.name}.log`);
      return { file, exited: node.followLog(SITE_NS, pod.metadata.name, file).then(() => Date.now()) };
    };
    const podsNow = async (): Promise<Pod[]> =>
      (JSON.parse(await node.kubectlAsync(["-n", SITE_NS, "get", "pods", "-l", "app.kubernetes.io/name=mxwarden-relay", "-o", "json"])) as { items: Pod[] })
        .items;
    // Two relays serving and no other: none terminating, none of those being replaced.
    const settled = async (replaced: Set<string>): Promise<Pod[] | false> => {
      const pods = await podsNow();
      return pods.length === 2 && pods.every((p) => ready(p) && p.metadata.deletionTimestamp === undefined && !replaced.has(p.metadata.uid)) && pods;
    };

    // The load: five senders, one message per connection, through the NodePort; what each got
    // other than 250 is counted by step and reply ("greeting 421", "connect ECONNREFUSED", "DATA no reply").
    const accepted = new Set<string>();
    const tempFailed = new Map<string, number>();
    const failed = new Map<string, number>();
    const rejected = new Map<string, number>();
    const count = (map: Map<string, number>, key: string): void => {
      map.set(key, (map.get(key) ?? 0) + 1);
    };
    const total = (map: Map<string, number>): number => [...map.values()].reduce((sum, n) => sum + n, 0);
    let sent = 0;
    let stopLoad = false;
    const sendOne = async (i: number): Promise<void> => {
      const id = `roll-${i}-${Date.now()}`;
      let step = "connect";
      let dialogue: SmtpDialogue | undefined;
      // A session nobody answers any more is cut (and counted as failed) rather than waited for.
      const timer = setTimeout(() => dialogue?.destroy(), 120_000);
      try {
        const opened = await SmtpDialogue.open(nodePort, NODE_IP);
        dialogue = opened.dialogue;
        step = "greeting";
        let reply = opened.greeting;
        for (const [name, line] of [
          ["EHLO", "EHLO client.example.org"],
          ["MAIL", "MAIL FROM:<sender@example.org>"],
          ["RCPT", "RCPT TO:<alice@example.com>"],
        ] as const) {
          if (reply.code < 200 || reply.code >= 300) break;
          step = name;
          reply = await dialogue.command(line);
        }
        if (reply.code >= 200 && reply.code < 300) {
          step = "DATA";
          reply = await dialogue.data(simpleMessage(`roll ${i}`, id));
        }
        if (step === "DATA" && reply.code === 250) accepted.add(`<${id}@client.test>`);
        else if (reply.code === 0) count(failed, `${step} no reply`);
        else if (reply.code < 500) count(tempFailed, `${step} ${reply.code}`);
        else count(rejected, `${step} ${reply.code}`);
        await dialogue.command("QUIT").catch(() => undefined);
      } catch (err) {
        count(failed, `${step} ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      } finally {
        clearTimeout(timer);
        dialogue?.destroy();
      }
    };
    const load = Promise.all(
      Array.from({ length: 5 }, async () => {
        while (!stopLoad) {
          await sendOne(sent++);
          // A few hundred messages over the minute or two the disruptions take.
          await sleep(500);
        }
      }),
    );
    const started = Date.now();
    await eventually("the load through the NodePort", () => accepted.size >= 20, 120_000, 200);

    // One relay pod deleted as a node drain does (the pod's termination grace, not --grace-period=0),
    // with a message in the middle of DATA on it when SIGTERM comes: the drain lets it finish with a 250.
    const [victim] = await podsNow();
    assert.ok(victim?.status.podIP);
    const victimLog = follow(victim);
    const { dialogue: midData } = await SmtpDialogue.open(2525, victim.status.podIP);
    await midData.command("EHLO client.example.org");
    assert.equal((await midData.command("MAIL FROM:<sender@example.org>")).code, 250);
    assert.equal((await midData.command("RCPT TO:<alice@example.com>")).code, 250);
    assert.equal((await midData.command("DATA")).code, 354);
    const midDataId = `roll-mid-data-${Date.now()}`;
    const body = simpleMessage("in the middle of DATA at SIGTERM", midDataId, "x".repeat(998).concat("\r\n").repeat(64));
    midData.write(body.slice(0, body.length / 2));
    kubectl(["-n", SITE_NS, "delete", "pod", victim.metadata.name, "--wait=false"]);
    const deletedAt = Date.now();
    await eventually("SIGTERM at the deleted relay", () => readFileSync(victimLog.file, "utf8").includes('"msg":"shutting down'), 120_000, 100);
    figures.relayPodDeletedToSigtermSeconds = seconds(Date.now() - deletedAt);
    midData.write(body.slice(body.length / 2));
    const dot = await midData.command(".");
    assert.equal(dot.code, 250, `the message in the middle of DATA at SIGTERM: ${dot.text}`);
    // The same session's next transaction is sent elsewhere.
    assert.equal((await midData.command("MAIL FROM:<sender@example.org>")).code, 421);
    midData.destroy();
    await eventually("the deleted relay replaced, and gone", () => settled(new Set([victim.metadata.uid])), 300_000, 500);
    figures.relayPodDeletedToReplacedSeconds = seconds(Date.now() - deletedAt);
    figures.relayPodDeletedToExitSeconds = seconds((await victimLog.exited) - deletedAt);

    // Then a rolling update of the relay image, as an upgrade starts one: the RelaySite names a new
    // image (the same build under a second tag, as a registry would serve the next release).
    const rolled = await podsNow();
    const rolledLogs = rolled.map(follow);
    const [relayImage] = projectImages();
    const nextImage = `${relayImage}-next`;
    node.ctr(["images", "tag", "--force", relayImage as string, nextImage]);
    const changed = Date.now();
    kubectl(["patch", "relaysite", "site-a", "--type=merge", "-p", JSON.stringify({ spec: { image: nextImage } })]);
    await eventually(
      "the operator renders the new image into the relay Deployment",
      async () =>
        (await node.kubectlAsync(["-n", SITE_NS, "get", "deployment", "mxwarden-relay", "-o", "jsonpath={.spec.template.spec.containers[0].image}"])) ===
        nextImage,
      60_000,
      250,
    );
    await node.kubectlAsync(["-n", SITE_NS, "rollout", "status", "deployment/mxwarden-relay", "--timeout=300s"], 330_000);
    figures.relayRolloutSeconds = seconds(Date.now() - changed);
    const rolledOutPods = await eventually("only the new relays left", () => settled(new Set(rolled.map((p) => p.metadata.uid))), 300_000, 500);
    for (const pod of rolledOutPods) assert.equal(pod.spec.containers[0]?.image, nextImage, `${pod.metadata.name} runs the new image`);
    figures.relayRolloutToOldRelaysGoneSeconds = seconds(Date.now() - changed);
    // The relays that stopped took their queue reports with them: the operator waits for no relay
    // that is gone (a RelayDomain change would otherwise wait until their reports went stale).
    const live = rolledOutPods.map((p) => queueReportKey(p.metadata.name)).sort();
    await eventually(
      "only the new relays' queue reports",
      () =>
        Object.keys(json<{ data?: Record<string, string> }>(["-n", SITE_NS, "get", "configmap", "mxwarden-relay-status"]).data ?? {})
          .sort()
          .join() === live.join(),
      10_000,
      250,
    );
    figures.relayRolloutExitSeconds = JSON.stringify(await Promise.all(rolledLogs.map(async (l) => seconds((await l.exited) - changed))));

    // And the load goes on through the new relays.
    const acceptedBefore = accepted.size;
    await eventually("the load through the new relays", () => accepted.size >= acceptedBefore + 20, 120_000, 200);
    stopLoad = true;
    await load;
    figures.relayRollLoad = JSON.stringify({
      sent,
      accepted: accepted.size,
      tempFailed: total(tempFailed),
      failed: total(failed),
      rejected: total(rejected),
      seconds: seconds(Date.now() - started),
    });
    figures.relayRollReplies = JSON.stringify({
      tempFailed: Object.fromEntries(tempFailed),
      failed: Object.fromEntries(failed),
      rejected: Object.fromEntries(rejected),
    });

    const expected = [...accepted, `<${midDataId}@client.test>`];
    const deliveredIds = (): Map<string, number> => {
      const counts = new Map<string, number>();
      for (const message of primary.messages) {
        const id = headerValue(message.body, "Message-ID") ?? "";
        if (id.startsWith("<roll-")) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return counts;
    };
    await eventually("every message that got 250 at the primary", () => expected.every((id) => deliveredIds().has(id)), 300_000, 500);
    // Nothing left in the site's queue: no job can come back and arrive twice later.
    await eventually(
      "the site's queue empty",
      async () => {
        const [pod] = await podsNow();
        const text = await (await fetch(`http://${pod?.status.podIP}:9090/metrics`, { signal: AbortSignal.timeout(3000) })).text();
        return /^mxwarden_queue_messages\{state="ready"\} 0$/m.test(text) && /^mxwarden_queue_messages\{state="deferred"\} 0$/m.test(text);
      },
      180_000,
      1000,
    );
    const counts = deliveredIds();
    const lost = expected.filter((id) => !counts.has(id)).length;
    const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
    const deliveredWithout250 = [...counts.keys()].filter((id) => !expected.includes(id)).length;
    figures.relayRollCounts = JSON.stringify({ accepted: expected.length, delivered: counts.size, lost, duplicates, deliveredWithout250 });
    assert.equal(lost, 0);
    assert.equal(duplicates, 0, "a relay that stops delivers nothing twice");
    assert.equal(total(rejected), 0, figures.relayRollReplies);
    // 4xx is what a sender retries; a refused or reset connection, or a session dropped without a
    // reply, is what a graceful rollout must not show.
    assert.equal(total(failed), 0, figures.relayRollReplies);
  });

  it("a RelayDomain change reaches the running relays without a restart", async () => {
    const podsBefore = relayPods();
    const generationsBefore = await Promise.all(podsBefore.map(configGeneration));
    const configHash = (): string =>
      kubectl(["-n", SITE_NS, "get", "configmap", "mxwarden-domain-shards", "-o", "jsonpath={.metadata.annotations.mxwarden\\.io/config-hash}"]);
    const hashBefore = configHash();
    const applied = Date.now();
    kubectl(["apply", "-n", TEAM_NS, "-f", "-"], relayDomainManifest(NODE_IP, cluster.primaryPort, "10Mi"));
    const generation = kubectl(["-n", TEAM_NS, "get", "relaydomain", "example-com", "-o", "jsonpath={.metadata.generation}"]);
    await eventually("the operator rewrites the domains ConfigMap", () => configHash() !== hashBefore, 60_000, 100);
    figures.specChangeToConfigMapSeconds = seconds(Date.now() - applied);
    const reached: number[] = [];
    await eventually(
      "every relay reloaded",
      async () => {
        for (const [i, pod] of podsBefore.entries()) {
          if (reached[i] === undefined && (await configGeneration(pod)) > (generationsBefore[i] ?? 0)) reached[i] = seconds(Date.now() - applied);
        }
        return podsBefore.every((_, i) => reached[i] !== undefined);
      },
      240_000,
      250,
    );
    figures.specChangeToFirstRelaySeconds = Math.min(...reached);
    figures.specChangeToLastRelaySeconds = Math.max(...reached);
    await eventually(
      "RelayDomain Ready at the new generation",
      () => {
        const out = kubectl([
          "-n",
          TEAM_NS,
          "get",
          "relaydomain",
          "example-com",
          "-o",
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].observedGeneration}',
        ]);
        return out === `True/${generation}`;
      },
      240_000,
      250,
    );
    figures.specChangeToReadySeconds = seconds(Date.now() - applied);

    // The same pods, not restarted, now refuse what the new limit forbids.
    const podsAfter = relayPods();
    assert.deepEqual(podsAfter.map((p) => p.metadata.uid).sort(), podsBefore.map((p) => p.metadata.uid).sort());
    assert.deepEqual(
      podsAfter.map((p) => p.status.containerStatuses?.[0]?.restartCount),
      podsBefore.map(() => 0),
    );
    for (const pod of podsAfter) {
      // A declared size over the new 10 MiB limit of example.com is refused.
      const { dialogue } = await SmtpDialogue.open(2525, pod.status.podIP);
      await dialogue.command("EHLO client.example.org");
      const mail = await dialogue.command("MAIL FROM:<sender@example.org> SIZE=20971520");
      const rcpt = mail.code === 250 ? await dialogue.command("RCPT TO:<alice@example.com>") : mail;
      await dialogue.command("QUIT").catch(() => undefined);
      assert.equal(rcpt.code, 552, `${pod.metadata.name}: ${mail.text} / ${rcpt.text}`);
    }
  });

  it("helm upgrade keeps the domain Ready; helm uninstall delivers the queued mail first, then removes domain, site and operator", async () => {
    // The pods' logs stay for a post-mortem (.tmp/cluster-e2e-logs/).
    const logs = join(repoRoot, ".tmp/cluster-e2e-logs");
    mkdirSync(logs, { recursive: true });
    for (const [file, ns, selector] of [
      ["relays.log", SITE_NS, "app.kubernetes.io/name=mxwarden-relay"],
      ["operator.log", OPERATOR_NS, "app.kubernetes.io/name=mxwarden"],
      ["nats.log", SITE_NS, "app.kubernetes.io/name=mxwarden-nats"],
    ] as const) {
      writeFileSync(join(logs, file), node.kubectl(["-n", ns, "logs", "-l", selector, "--prefix", "--tail=-1", "--all-containers"], { allowFail: true }));
    }
    const helmRun = (args: string[]) => spawnSync(HELM, ["--kubeconfig", node.kubeconfigPath, ...args], { encoding: "utf8", timeout: 600_000 });
    type Domain = { metadata: { deletionTimestamp?: string }; status?: { queuedMessages?: number; conditions?: Array<{ type: string; status: string }> } };
    const domainReady = (): boolean =>
      json<Domain>(["get", "relaydomain", "example-com", "-n", TEAM_NS]).status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

    // 1. helm upgrade of one value (the operator's log level): the operator rolls, the domain stays Ready.
    let t = Date.now();
    const upgraded = helmRun([
      "upgrade",
      "mxwarden",
      CHART_DIR,
      "-n",
      OPERATOR_NS,
      "--reuse-values",
      "--set",
      "operator.logLevel=debug",
      "--wait",
      "--timeout",
      "5m",
    ]);
    assert.equal(upgraded.status, 0, upgraded.stderr);
    figures.helmUpgradeSeconds = seconds(Date.now() - t);
    const args = kubectl(["-n", OPERATOR_NS, "get", "deployment", "mxwarden-operator", "-o", "jsonpath={.spec.template.spec.containers[0].args}"]);
    assert.match(args, /--log-level=debug/);
    assert.ok(domainReady(), "the RelayDomain stays Ready through the operator's rollout");

    // 2. Mail queued while the primary is down.
    await primary.close();
    const nodePort = kubectl(["-n", SITE_NS, "get", "service", "mxwarden-smtp", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    const queued = await cluster.swaksThroughNodePort(nodePort, {
      to: "alice@example.com",
      subject: "queued before the uninstall",
      body: "delivered before the operator goes",
    });
    assert.equal(queued.exitCode, 0, queued.transcript);

    // 3. helm uninstall: the pre-delete hook deletes the domain and waits while its mail is queued.
    t = Date.now();
    const uninstall = spawn(HELM, ["--kubeconfig", node.kubeconfigPath, "uninstall", "mxwarden", "-n", OPERATOR_NS, "--wait", "--timeout", "10m"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let uninstallOutput = "";
    uninstall.stdout.on("data", (chunk: Buffer) => (uninstallOutput += chunk.toString()));
    uninstall.stderr.on("data", (chunk: Buffer) => (uninstallOutput += chunk.toString()));
    const uninstalled = new Promise<number | null>((resolve) => uninstall.on("exit", resolve));

    // The domain is being deleted, and its finalizer holds it while its mail is queued.
    await eventually(
      "the domain draining its queued message",
      () => {
        const domain = json<Domain>(["get", "relaydomain", "example-com", "-n", TEAM_NS]);
        return domain.metadata.deletionTimestamp !== undefined && (domain.status?.queuedMessages ?? 0) >= 1;
      },
      120_000,
      500,
    );
    assert.equal(kubectl(["get", "relaysite", "site-a", "-o", "jsonpath={.metadata.deletionTimestamp}"]), "", "the site waits for its domains");

    // 4. The primary returns: the message is delivered, then the domain, the site and the operator go.
    await primary.listen();
    assert.equal(await uninstalled, 0, uninstallOutput);
    figures.helmUninstallDrainSeconds = seconds(Date.now() - t);
    assert.ok(
      primary.messages.some((m) => m.body.toString("utf8").includes("delivered before the operator goes")),
      "the queued message reached the primary before the operator was removed",
    );
    cluster.released = true;
    assert.equal(kubectl(["get", "relaydomains", "-A", "-o", "name"]).trim(), "");
    assert.equal(kubectl(["get", "relaysites", "-o", "name"]).trim(), "");
    assert.equal(kubectl(["-n", OPERATOR_NS, "get", "deployments,jobs", "-o", "name"]).trim(), "");
    assert.equal(kubectl(["-n", SITE_NS, "get", "deployments", "-o", "name"]).trim(), "", "the site's relays removed by its finalizer");
  });
});
