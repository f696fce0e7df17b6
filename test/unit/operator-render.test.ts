import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { parseRelayDomain } from "../../relay/src/config/relay-domain.ts";
import type { RelayDomain } from "#api";
import type { RelaySite } from "#api";
import { siteDomainConfig } from "../../operator/src/render/domain-config.ts";
import { renderSite, type RenderOptions } from "../../operator/src/render/site-objects.ts";
import type { KubeObject } from "../../operator/src/render/kube-object.ts";

function site(name: string, spec: Partial<RelaySite["spec"]> = {}): RelaySite {
  return {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelaySite",
    metadata: { name, generation: 1 },
    spec: { hostname: `${name}.mx.example.net`, nats: { url: "nats://nats:4222", domain: name }, ...spec },
  };
}

function domain(name: string, spec: Partial<RelayDomain["spec"]> & { domain: string }, meta: Partial<RelayDomain["metadata"]> = {}): RelayDomain {
  return {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayDomain",
    metadata: { name, namespace: "team-a", generation: 3, creationTimestamp: "2026-11-01T00:00:00Z", ...meta },
    spec,
  };
}

const options: RenderOptions = { relayImage: "relay:1", peerJetStreamDomains: ["site-b"], prometheusOperator: false };

function find(objects: KubeObject[], kind: string, name?: string): KubeObject & Record<string, unknown> {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.ok(found, `${kind} ${name ?? ""} rendered`);
  return found as KubeObject & Record<string, unknown>;
}

type Container = { args: string[]; image: string; securityContext: Record<string, unknown>; volumeMounts: { name: string; subPath?: string }[] };
function container(objects: KubeObject[]): Container {
  const deployment = find(objects, "Deployment") as unknown as { spec: { template: { spec: { containers: Container[] } } } };
  return deployment.spec.template.spec.containers[0] as Container;
}

describe("site domain configuration", () => {
  const a = site("site-a");
  it("holds the domains serving the site, as documents the relay accepts, without operator-only fields", () => {
    const config = siteDomainConfig(a, [
      domain("example", { domain: "example.com", sites: ["site-a"] }),
      domain("other-site", { domain: "other.example", sites: ["site-b"] }),
      domain("everywhere", { domain: "all.example" }),
    ]);
    assert.deepEqual(Object.keys(config.data).sort(), ["team-a.everywhere.yaml", "team-a.example.yaml"]);
    const document = parse(config.data["team-a.example.yaml"] as string) as { spec: Record<string, unknown>; metadata: Record<string, unknown> };
    assert.equal(document.spec.sites, undefined);
    assert.equal(document.metadata.generation, 3);
    assert.equal(parseRelayDomain(document).domain, "example.com");
  });

  it("leaves out specs the relay would refuse, and of two claims on one mail domain keeps the older", () => {
    const config = siteDomainConfig(a, [
      domain("bad", { domain: "bad.example", queue: { retry: { initialBackoff: "2h", maxBackoff: "1h" } } }),
      domain("newer", { domain: "Example.com" }, { creationTimestamp: "2026-11-05T00:00:00Z" }),
      domain("older", { domain: "example.com" }, { creationTimestamp: "2026-11-02T00:00:00Z" }),
    ]);
    assert.deepEqual(Object.keys(config.data), ["team-a.older.yaml"]);
  });

  it("changes its hash exactly when what relays load changes", () => {
    const one = siteDomainConfig(a, [domain("example", { domain: "example.com" })]);
    const same = siteDomainConfig(a, [domain("example", { domain: "example.com" }, { resourceVersion: "99" })]);
    const changed = siteDomainConfig(a, [domain("example", { domain: "example.com", maxMessageSize: "10Mi" }, { generation: 4 })]);
    assert.equal(one.hash, same.hash);
    assert.notEqual(one.hash, changed.hash);
  });

  it("renders a document again whenever anything it is made of changes, and reuses it otherwise", () => {
    const first = siteDomainConfig(a, [domain("example", { domain: "example.com" })]);
    const again = siteDomainConfig(a, [domain("example", { domain: "example.com" }, { resourceVersion: "7" })]);
    assert.equal(again.data["team-a.example.yaml"], first.data["team-a.example.yaml"]);
    // The same generation with another spec (an object stored without a generation bump, or a test's): rendered anew.
    const respec = siteDomainConfig(a, [domain("example", { domain: "example.com", maxMessageSize: "10Mi" })]);
    assert.match(respec.data["team-a.example.yaml"] ?? "", /maxMessageSize: 10Mi/);
    const deleted = siteDomainConfig(a, [domain("example", { domain: "example.com" }, { deletionTimestamp: "2026-11-23T10:00:00Z" })]);
    assert.match(deleted.data["team-a.example.yaml"] ?? "", /deletionTimestamp/);
  });

  it("carries a deletionTimestamp to the relays", () => {
    const config = siteDomainConfig(a, [domain("gone", { domain: "gone.example" }, { deletionTimestamp: "2026-11-23T10:00:00Z" })]);
    const policy = parseRelayDomain(parse(config.data["team-a.gone.yaml"] as string));
    assert.ok(policy.retiring);
  });
});

describe("renderSite", () => {
  const s = site("site-a", {
    tls: { secretName: "mx-cert" },
    clamd: { address: "clamd:3310" },
    rspamd: { url: "http://rspamd:11333" },
    mxNames: ["mx2.example.net", "backup.example.net"],
    domainMetrics: 100,
    takeover: { after: "4h" },
  });
  const config = siteDomainConfig(s, [domain("example", { domain: "example.com" })]);
  const objects = renderSite(s, config, options);

  it("runs relays non-root with a read-only root filesystem and no capabilities", () => {
    const c = container(objects);
    assert.deepEqual(c.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.equal(find(objects, "Namespace").metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
  });

  it("stops a relay within the pod's termination grace: a preStop sleep while its endpoint goes, then the relay's --shutdown-grace drain, then a margin to close", () => {
    type PodSpec = { terminationGracePeriodSeconds: number; containers: Array<{ args: string[]; lifecycle?: { preStop?: { sleep?: { seconds: number } } } }> };
    const pod = (find(objects, "Deployment") as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
    const preStop = pod.containers[0]?.lifecycle?.preStop?.sleep?.seconds ?? 0;
    const grace = Number(/^--shutdown-grace=(\d+)s$/m.exec(pod.containers[0]?.args.join("\n") ?? "")?.[1]);
    // Longer than an endpoint takes to leave kube-proxy's rules (about a second on one idle node).
    assert.ok(preStop >= 5, `preStop sleep ${preStop} s`);
    assert.ok(grace >= 30, `--shutdown-grace ${grace} s`);
    // Closing the outbound connections, the tracking records and the queue after the drain.
    assert.ok(preStop + grace + 10 <= pod.terminationGracePeriodSeconds, JSON.stringify({ preStop, grace, pod: pod.terminationGracePeriodSeconds }));
  });

  it("passes the site's settings as the relay's flags", () => {
    const args = container(objects).args;
    for (const expected of [
      "--hostname=site-a.mx.example.net",
      "--nats=nats://nats:4222",
      "--clamd=clamd:3310",
      "--rspamd=http://rspamd:11333",
      "--site=site-a",
      "--peer-sites=site-b",
      "--takeover-after=4h",
      "--mx-name=mx2.example.net,backup.example.net",
      "--tls-cert=/etc/mxwarden/tls/tls.crt",
      "--replicas=3",
      "--domain-metrics=100",
    ]) {
      assert.ok(args.includes(expected), `${expected} in ${args.join(" ")}`);
    }
    assert.equal(container(objects).image, "relay:1");
  });

  it("gives the relays their domains as labelled ConfigMaps they watch, readable through one bound ClusterRole, and never the config hash in the pod", () => {
    const c = container(objects);
    assert.ok(c.args.includes("--domains-configmaps=mxwarden.io/domain-config=site-a"), c.args.join(" "));
    assert.equal(
      c.volumeMounts.find((m) => m.name === "domains"),
      undefined,
      "no mounted domains: the kubelet's sync would delay changes",
    );
    const shards = objects.filter((o) => o.kind === "ConfigMap" && o.metadata.labels?.["mxwarden.io/domain-config"] === "site-a");
    assert.deepEqual(
      shards.map((o) => o.metadata.name),
      ["mxwarden-domains-1-0"],
    );
    assert.deepEqual(Object.keys((shards[0] as unknown as { data: Record<string, string> }).data), Object.keys(config.data));
    const index = find(objects, "ConfigMap", "mxwarden-domain-shards") as unknown as { data: { shards: string } };
    assert.equal(index.data.shards, "mxwarden-domains-1-0");
    assert.ok(
      objects.indexOf(shards[0] as (typeof objects)[number]) < objects.indexOf(index as unknown as (typeof objects)[number]),
      "shards before their index",
    );
    const binding = find(objects, "RoleBinding", "mxwarden-relay-domains") as unknown as { roleRef: { kind: string; name: string } };
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "mxwarden-relay-domains" });
    assert.doesNotMatch(JSON.stringify(find(objects, "Deployment").spec), new RegExp(config.hash));
  });

  it("keeps the client address: externalTrafficPolicy Local on port 25 to the relay's 2525", () => {
    const svc = find(objects, "Service", "mxwarden-smtp") as unknown as {
      spec: { type: string; externalTrafficPolicy: string; ports: { port: number; targetPort: string }[] };
    };
    assert.equal(svc.spec.type, "LoadBalancer");
    assert.equal(svc.spec.externalTrafficPolicy, "Local");
    assert.deepEqual(
      svc.spec.ports.map((p) => [p.port, p.targetPort]),
      [[25, "smtp"]],
    );
  });

  it("lets relays write only their status ConfigMap", () => {
    const role = find(objects, "Role") as unknown as { rules: unknown[] };
    assert.deepEqual(role.rules, [{ apiGroups: [""], resources: ["configmaps"], resourceNames: ["mxwarden-relay-status"], verbs: ["patch"] }]);
  });

  it("opens egress only for DNS, SMTP, NATS, clamd, rspamd and the API server", () => {
    const policy = find(objects, "NetworkPolicy") as unknown as { spec: { egress: { ports: { port: number }[] }[] } };
    const ports = policy.spec.egress.flatMap((rule) => rule.ports.map((p) => p.port));
    assert.deepEqual(
      [...new Set(ports)].sort((x, y) => x - y),
      [25, 53, 443, 3310, 4222, 6443, 11333],
    );
  });

  it("opens egress to the ports of the site's domains' primaries, whatever they are", () => {
    const withPrimaries = siteDomainConfig(s, [
      domain("submission", {
        domain: "submission.example",
        primary: { hosts: [{ host: "mail.submission.example", port: 587 }, { host: "mail2.submission.example" }] },
      }),
      domain("high", { domain: "high.example", primary: { hosts: [{ host: "10.0.0.5", port: 2525 }] } }),
      domain("elsewhere", { domain: "elsewhere.example", sites: ["site-b"], primary: { hosts: [{ host: "10.0.0.6", port: 10025 }] } }),
    ]);
    const policy = find(renderSite(s, withPrimaries, options), "NetworkPolicy") as unknown as {
      spec: { egress: { ports: { protocol: string; port: number }[] }[] };
    };
    const tcp = policy.spec.egress.flatMap((rule) => rule.ports.filter((p) => p.protocol === "TCP").map((p) => p.port));
    for (const port of [25, 587, 2525]) assert.ok(tcp.includes(port), `${port} in ${tcp.join(",")}`);
    assert.ok(!tcp.includes(10025), "a domain of another site opens nothing here");
  });

  it("owns namespaced objects by the RelaySite only when asked (the operator's own cluster)", () => {
    assert.ok(objects.every((o) => o.metadata.ownerReferences === undefined));
    const owned = renderSite(s, config, { ...options, owner: { apiVersion: "mxwarden.io/v1alpha1", kind: "RelaySite", name: "site-a", uid: "u-1" } });
    assert.equal(owned.find((o) => o.kind === "Namespace")?.metadata.ownerReferences, undefined);
    assert.ok(
      owned
        .filter((o) => o.kind !== "Namespace")
        .every((o) => o.metadata.ownerReferences?.[0]?.uid === "u-1" && o.metadata.ownerReferences[0].controller === true),
    );
  });

  it("adds a ServiceMonitor and PrometheusRule only where the Prometheus Operator is installed", () => {
    assert.equal(
      objects.some((o) => o.kind === "ServiceMonitor"),
      false,
    );
    const withMonitoring = renderSite(s, config, { ...options, prometheusOperator: true, prometheusRuleGroups: [{ name: "g", rules: [] }] });
    assert.ok(withMonitoring.some((o) => o.kind === "ServiceMonitor"));
    assert.ok(withMonitoring.some((o) => o.kind === "PrometheusRule"));
  });
});
