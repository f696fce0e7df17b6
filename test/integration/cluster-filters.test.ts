// clamd and rspamd run by the operator for a site, on a real single-node cluster
// (test/harness/kube-node.ts): helm installs the chart with the local images `make images`
// assembles from Debian's packages as the operator's defaults, the test's own signatures (no
// download) reach the managed clamd through the user-facing option (a ConfigMap), and swaks
// proves through the SMTP Service's NodePort that a message carrying the test signature is refused
// during DATA, rspamd's GTUBE too, and that clean mail reaches a primary on the host. The engines
// run as their images' users on a read-only root, and go with the site.
//
// Needs root and `make deps-cluster`: run it with `make test-cluster` (MXWARDEN_CLUSTER_TESTS=1).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_IP } from "../harness/kube-node.ts";
import { ClusterSession, OPERATOR_NS, seconds } from "../harness/cluster-session.ts";
import { chartInstallArgs, filterImages, localVolumesManifest, LOCAL_STORAGE_CLASS, projectImages, relayDomainManifest } from "../harness/cluster-manifests.ts";
import { TEST_PATTERN, testSignatureFiles } from "../harness/clamd.ts";
import { GTUBE } from "../harness/rspamd.ts";
import type { TestPrimary } from "../harness/test-primary.ts";
import { eventually, repoRoot, tempDir } from "../harness/workspace.ts";

const ENABLED = process.env.MXWARDEN_CLUSTER_TESTS === "1";
const SITE_NS = "mxwarden";
const TEAM_NS = "team-a";
const SIGNATURES = "mxwarden-test-signatures";

/** docs/operator.md's managed engines on one node: one pod of each, clamd with the user's signatures. */
function siteManifest(): string {
  return `apiVersion: mxwarden.io/v1alpha1
kind: RelaySite
metadata:
  name: site-f
spec:
  hostname: mx-f.backup.example.net
  replicas: 1
  smtp:
    serviceType: NodePort
    externalTrafficPolicy: Local
  nats:
    domain: site-f
    managed:
      replicas: 1
      storage: { size: 1Gi, storageClassName: ${LOCAL_STORAGE_CLASS} }
  clamd:
    managed:
      replicas: 1
      signatures:
        configMap: { name: ${SIGNATURES} }
  rspamd:
    managed:
      replicas: 1
`;
}

interface Pod {
  metadata: { name: string };
  spec: { securityContext?: Record<string, unknown>; containers: Array<{ name: string; image: string; securityContext?: Record<string, unknown> }> };
}

describe("managed clamd and rspamd on a real single-node cluster (helm, kubectl, swaks)", {
  skip: ENABLED ? false : "set MXWARDEN_CLUSTER_TESTS=1 (make test-cluster)",
}, () => {
  const work = tempDir("cluster-filters");
  const cluster = new ClusterSession("cluster-filters");
  const { node, figures } = cluster;
  let primary: TestPrimary;
  let nodePort = "";

  const kubectl = (args: string[], input?: string): string => cluster.kubectl(args, input);
  const helm = (args: string[]): string => cluster.helm(args);
  const readyReplicas = (kind: string, name: string): string =>
    kubectl(["-n", SITE_NS, "get", kind, name, "-o", "jsonpath={.status.readyReplicas}", "--ignore-not-found"]);
  const pods = (name: string): Pod[] =>
    (JSON.parse(kubectl(["-n", SITE_NS, "get", "pods", "-l", `app.kubernetes.io/name=${name}`, "-o", "json"])) as { items: Pod[] }).items;
  const send = (to: string, subject: string, body: string) => cluster.swaksThroughNodePort(nodePort, { to, subject, body });

  before(async () => {
    await cluster.start([...projectImages(), filterImages().clamd, filterImages().rspamd]);
    primary = cluster.primary;
  });

  after(async () => {
    await cluster.stop();
    work.remove();
  });

  it("helm install with the local clamd and rspamd images as the operator's defaults", () => {
    const t = Date.now();
    const images = filterImages();
    helm(chartInstallArgs(OPERATOR_NS, { clamdImage: images.clamd, rspamdImage: images.rspamd }));
    figures.helmInstallSeconds = seconds(Date.now() - t);
  });

  it("a site with managed clamd (the test's signatures from a ConfigMap) and rspamd: both Ready as their images' users on a read-only root", async () => {
    kubectl(["create", "namespace", SITE_NS]);
    // The user-facing option: signature files in a ConfigMap of the relays' namespace.
    const signatures = join(work.path, "signatures");
    mkdirSync(signatures, { recursive: true });
    for (const [file, content] of Object.entries(testSignatureFiles())) writeFileSync(join(signatures, file), content);
    kubectl(["-n", SITE_NS, "create", "configmap", SIGNATURES, `--from-file=${signatures}`]);
    const volumes = join(work.path, "nats-volumes");
    mkdirSync(join(volumes, "0"), { recursive: true });
    chownSync(join(volumes, "0"), 10001, 10001);
    kubectl(["apply", "-f", "-"], localVolumesManifest(volumes, 1));
    const applied = Date.now();
    kubectl(["apply", "-f", "-"], siteManifest());
    await eventually("the managed clamd Ready", () => readyReplicas("deployment", "mxwarden-clamd") === "1", 300_000, 500);
    figures.siteApplyToClamdReadySeconds = seconds(Date.now() - applied);
    await eventually("the managed rspamd Ready", () => readyReplicas("deployment", "mxwarden-rspamd") === "1", 300_000, 500);
    figures.siteApplyToRspamdReadySeconds = seconds(Date.now() - applied);
    await eventually(
      "RelaySite site-f Ready",
      () => kubectl(["get", "relaysite", "site-f", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === "True",
      300_000,
      500,
    );
    figures.siteApplyToSiteReadySeconds = seconds(Date.now() - applied);
    await eventually(
      "RelaySite site-f FiltersReady",
      () => kubectl(["get", "relaysite", "site-f", "-o", 'jsonpath={.status.conditions[?(@.type=="FiltersReady")].status}']) === "True",
      60_000,
      500,
    );
    assert.equal(kubectl(["get", "namespace", SITE_NS, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"]), "restricted");

    const images = filterImages();
    for (const [name, image, uid] of [
      ["mxwarden-clamd", images.clamd, "100"],
      ["mxwarden-rspamd", images.rspamd, "11333"],
    ] as const) {
      const [pod] = pods(name);
      assert.ok(pod, `a ${name} pod`);
      const container = pod.spec.containers[0];
      assert.equal(container?.image, image);
      assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
      assert.equal(pod.spec.securityContext?.runAsNonRoot, true);
      const id = kubectl(["-n", SITE_NS, "exec", pod.metadata.name, "-c", container?.name ?? "", "--", "sh", "-c", "id -u; touch /etc/x 2>&1 || true"]);
      assert.match(id, new RegExp(`^${uid}\\n`), `${name} runs as uid ${uid}`);
      assert.match(id, /Read-only file system/);
    }
    const relay = pods("mxwarden-relay")[0] as unknown as { spec: { containers: { args: string[] }[] } };
    const args = relay.spec.containers[0]?.args ?? [];
    assert.ok(args.includes(`--clamd=mxwarden-clamd.${SITE_NS}.svc:3310`), args.join(" "));
    assert.ok(args.includes(`--rspamd=http://mxwarden-rspamd.${SITE_NS}.svc:11333`), args.join(" "));
  });

  it("through the NodePort: the test signature is refused during DATA, GTUBE too, and clean mail reaches the primary", async () => {
    kubectl(["create", "namespace", TEAM_NS]);
    const domain = `${relayDomainManifest(NODE_IP, cluster.primaryPort)}  antivirus:\n    enabled: true\n  antispam:\n    enabled: true\n`;
    const applied = Date.now();
    kubectl(["apply", "-n", TEAM_NS, "-f", "-"], domain);
    await eventually(
      "RelayDomain example-com Ready",
      () => kubectl(["-n", TEAM_NS, "get", "relaydomain", "example-com", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === "True",
      300_000,
      500,
    );
    figures.domainApplyToReadySeconds = seconds(Date.now() - applied);
    nodePort = kubectl(["-n", SITE_NS, "get", "service", "mxwarden-smtp", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert.match(nodePort, /^\d+$/);

    let t = Date.now();
    const infected = await send("alice@example.com", "carrying the test signature", `hello ${TEST_PATTERN} bye`);
    figures.infectedAnswerSeconds = seconds(Date.now() - t);
    assert.notEqual(infected.exitCode, 0, infected.transcript);
    assert.match(infected.transcript, /<\** 554 5\.7\.1 Message rejected: virus found \(Mxwarden\.Test\.Pattern/, infected.transcript);

    t = Date.now();
    const spam = await send("alice@example.com", "GTUBE", GTUBE);
    figures.gtubeAnswerSeconds = seconds(Date.now() - t);
    assert.notEqual(spam.exitCode, 0, spam.transcript);
    assert.match(spam.transcript, /<\** 554 5\.7\.1 Message rejected as spam/, spam.transcript);

    const before = primary.messages.length;
    t = Date.now();
    const clean = await send("bob@example.com", "clean", "hello from the host, nothing to see");
    figures.cleanAnswerSeconds = seconds(Date.now() - t);
    assert.equal(clean.exitCode, 0, clean.transcript);
    await eventually("the clean message at the primary", () => primary.messages.length > before, 120_000, 200);
    figures.cleanToPrimarySeconds = seconds(Date.now() - t);
    assert.deepEqual(primary.messages.at(-1)?.to, ["bob@example.com"]);
    assert.ok(
      primary.messages.every((m) => !m.body.toString("utf8").includes(TEST_PATTERN)),
      "nothing refused reached the primary",
    );
    assert.match(primary.messages.at(-1)?.body.toString("utf8") ?? "", /^X-Spam-Status: No, score=/m, "rspamd scored the clean message");
  });

  it("deleting the site removes the engines with the relays; helm uninstall then removes the operator", () => {
    const logs = join(repoRoot, ".tmp/cluster-filters-logs");
    mkdirSync(logs, { recursive: true });
    for (const name of ["mxwarden-relay", "mxwarden-clamd", "mxwarden-rspamd"]) {
      writeFileSync(
        join(logs, `${name}.log`),
        node.kubectl(["-n", SITE_NS, "logs", "-l", `app.kubernetes.io/name=${name}`, "--prefix", "--tail=-1", "--all-containers"], { allowFail: true }),
      );
    }
    kubectl(["delete", "relaydomain", "example-com", "-n", TEAM_NS, "--timeout=180s"]);
    const t = Date.now();
    kubectl(["delete", "relaysite", "site-f", "--timeout=180s"]);
    figures.deleteRelaySiteSeconds = seconds(Date.now() - t);
    for (const kind of ["deployment", "service", "configmap", "networkpolicy", "poddisruptionbudget"]) {
      const left = kubectl(["-n", SITE_NS, "get", kind, "-o", "name"])
        .split("\n")
        .filter((name) => /mxwarden-(clamd|rspamd)$/.test(name));
      assert.deepEqual(left, [], `${kind}: the engines' objects are gone`);
    }
    assert.ok(kubectl(["-n", SITE_NS, "get", "configmap", SIGNATURES, "-o", "name"]).includes(SIGNATURES), "the user's signatures stay");
    helm(["uninstall", "mxwarden", "-n", OPERATOR_NS, "--wait", "--timeout", "2m"]);
    cluster.released = true;
  });
});
