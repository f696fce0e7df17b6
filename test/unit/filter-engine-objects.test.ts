// clamd and rspamd run by the operator for a site (RelaySite spec.clamd.managed, spec.rspamd.managed):
// the objects renderSite adds, the relays' flags and egress, and the schema's exclusive choices.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, relaySiteSpecSchema, validate, type RelaySite } from "#api";
import { siteDomainConfig } from "../../operator/src/render/domain-config.ts";
import { renderSite, type RenderOptions } from "../../operator/src/render/site-objects.ts";
import { clamdConfig, freshclamConfig } from "../../operator/src/render/clamd-objects.ts";
import { rspamdConfig } from "../../operator/src/render/rspamd-objects.ts";
import type { KubeObject } from "../../operator/src/render/kube-object.ts";

function site(spec: Partial<RelaySite["spec"]> = {}): RelaySite {
  return {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelaySite",
    metadata: { name: "site-a", generation: 1 },
    spec: { hostname: "mx-a.example.net", namespace: "mx", nats: { url: "nats://nats:4222" }, ...spec },
  };
}

const options: RenderOptions = {
  relayImage: "relay:1",
  peerJetStreamDomains: [],
  prometheusOperator: false,
  filterImages: { clamd: "clamav:1", rspamd: "rspamd:1" },
};

function render(s: RelaySite): KubeObject[] {
  return renderSite(s, siteDomainConfig(s, []), options);
}

interface Container {
  name: string;
  image: string;
  command: string[];
  args?: string[];
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  startupProbe?: Record<string, unknown>;
  readinessProbe?: Record<string, unknown>;
}
interface PodSpec {
  securityContext: Record<string, unknown>;
  initContainers?: Container[];
  containers: Container[];
  volumes: Record<string, unknown>[];
  automountServiceAccountToken: boolean;
}

function find(objects: KubeObject[], kind: string, name: string): KubeObject & Record<string, unknown> {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name} rendered`);
  return found as KubeObject & Record<string, unknown>;
}

function pod(objects: KubeObject[], name: string): PodSpec & { annotations: Record<string, string> } {
  const deployment = find(objects, "Deployment", name) as unknown as {
    spec: { template: { metadata: { annotations: Record<string, string> }; spec: PodSpec } };
  };
  return { ...deployment.spec.template.spec, annotations: deployment.spec.template.metadata.annotations };
}

function relayArgs(objects: KubeObject[]): string[] {
  return pod(objects, "mxwarden-relay").containers[0]?.args ?? [];
}

const RESTRICTED = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

describe("managed clamd", () => {
  const objects = render(site({ clamd: { managed: {} } }));

  it("is a Deployment, Service, PodDisruptionBudget, NetworkPolicy and ConfigMap in the site's namespace, and the relays call its Service", () => {
    for (const kind of ["Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"]) {
      assert.equal(find(objects, kind, "mxwarden-clamd").metadata.namespace, "mx");
    }
    assert.ok(relayArgs(objects).includes("--clamd=mxwarden-clamd.mx.svc:3310"), relayArgs(objects).join(" "));
    const service = find(objects, "Service", "mxwarden-clamd") as unknown as { spec: { type: string; ports: { port: number; targetPort: string }[] } };
    assert.equal(service.spec.type, "ClusterIP");
    assert.deepEqual(
      service.spec.ports.map((p) => [p.port, p.targetPort]),
      [[3310, "clamd"]],
    );
  });

  it("runs as the stock image's clamav user under the restricted Pod Security Standard, on a read-only root", () => {
    const spec = pod(objects, "mxwarden-clamd");
    assert.deepEqual(spec.securityContext, { runAsNonRoot: true, runAsUser: 100, runAsGroup: 101, fsGroup: 101, seccompProfile: { type: "RuntimeDefault" } });
    assert.equal(spec.automountServiceAccountToken, false);
    for (const container of [...(spec.initContainers ?? []), ...spec.containers]) assert.deepEqual(container.securityContext, RESTRICTED, container.name);
    const clamd = spec.containers.find((c) => c.name === "clamd");
    assert.deepEqual(clamd?.command, ["clamd", "--foreground", "--config-file=/etc/mxwarden/clamd/clamd.conf"]);
    assert.equal(clamd?.image, "clamav:1");
    // Everything clamd writes is an emptyDir.
    const emptyDirs = spec.volumes.filter((v) => "emptyDir" in v).map((v) => v.name);
    for (const mount of clamd?.volumeMounts ?? []) if (mount.readOnly !== true) assert.ok(emptyDirs.includes(mount.name), `${mount.mountPath} is an emptyDir`);
  });

  it("by default seeds the database from the image, keeps it current with freshclam beside clamd, and asks for the memory of the full set", () => {
    const spec = pod(objects, "mxwarden-clamd");
    assert.deepEqual(
      spec.containers.map((c) => c.name),
      ["clamd", "freshclam"],
    );
    assert.deepEqual(spec.containers[1]?.command, ["freshclam", "--daemon", "--foreground", "--stdout", "--config-file=/etc/mxwarden/clamd/freshclam.conf"]);
    const seed = spec.initContainers?.[0];
    assert.equal(seed?.name, "seed-signatures");
    assert.match(seed?.command.join(" ") ?? "", /cp "\$f" \/seed\/.*freshclam --foreground --stdout .*--datadir=\/seed/s);
    assert.equal(spec.containers[0]?.resources.requests.memory, "1536Mi");
    assert.equal(spec.containers[0]?.resources.limits.memory, "3Gi");
    const config = find(objects, "ConfigMap", "mxwarden-clamd") as unknown as { data: Record<string, string> };
    assert.match(config.data["freshclam.conf"] ?? "", /^Checks 12$/m);
    assert.match(config.data["freshclam.conf"] ?? "", /^DatabaseMirror database\.clamav\.net$/m);
  });

  it("listens on TCP only and scans the largest message a domain may accept", () => {
    const config = clamdConfig();
    assert.match(config, /^TCPSocket 3310$/m);
    assert.match(config, /^StreamMaxLength 200M$/m);
    assert.doesNotMatch(config, /^(LocalSocket|PidFile|LogFile|User) /m, "nothing written on the read-only root, no user switch");
    assert.match(
      freshclamConfig({ signatures: { freshclam: { checks: 24, privateMirror: "https://mirror.example.net" } } }),
      /^Checks 24\nLogTime yes\nPrivateMirror https:\/\/mirror\.example\.net$/m,
    );
  });

  it("takes the signatures from the user's ConfigMap or claim, read-only, without freshclam", () => {
    for (const [signatures, volume] of [
      [{ configMap: { name: "my-signatures" } }, { name: "database", configMap: { name: "my-signatures" } }],
      [{ persistentVolumeClaim: { claimName: "clamav-db" } }, { name: "database", persistentVolumeClaim: { claimName: "clamav-db", readOnly: true } }],
    ] as const) {
      const spec = pod(render(site({ clamd: { managed: { signatures } } })), "mxwarden-clamd");
      assert.deepEqual(
        spec.containers.map((c) => c.name),
        ["clamd"],
      );
      assert.equal(spec.initContainers, undefined);
      assert.deepEqual(
        spec.volumes.find((v) => v.name === "database"),
        volume,
      );
      assert.equal(spec.containers[0]?.volumeMounts.find((m) => m.name === "database")?.readOnly, true);
    }
    const own = pod(render(site({ clamd: { managed: { signatures: { configMap: { name: "s" } } } } })), "mxwarden-clamd");
    assert.equal(own.containers[0]?.resources.requests.memory, "128Mi", "a few signatures of one's own need little memory");
  });

  it("lets the user's image, replicas and resources win over the defaults", () => {
    const objects = render(site({ clamd: { managed: { image: "mirror/clamav:1.4", replicas: 3, resources: { limits: { memory: "4Gi" } } } } }));
    const deployment = find(objects, "Deployment", "mxwarden-clamd") as unknown as { spec: { replicas: number } };
    assert.equal(deployment.spec.replicas, 3);
    const clamd = pod(objects, "mxwarden-clamd").containers[0];
    assert.equal(clamd?.image, "mirror/clamav:1.4");
    assert.deepEqual(clamd?.resources, { requests: { cpu: "250m", memory: "1536Mi" }, limits: { memory: "4Gi" } });
  });
});

describe("managed rspamd", () => {
  const objects = render(site({ resolver: "10.0.0.10:53", rspamd: { managed: { workers: 3 } } }));

  it("runs the image's rules with our worker on 11333 as the stock image's _rspamd user, probed on /ping, and the relays call its Service", () => {
    const spec = pod(objects, "mxwarden-rspamd");
    assert.deepEqual(spec.securityContext, {
      runAsNonRoot: true,
      runAsUser: 11333,
      runAsGroup: 11333,
      fsGroup: 11333,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const rspamd = spec.containers[0];
    assert.deepEqual(rspamd?.securityContext, RESTRICTED);
    assert.deepEqual(rspamd?.command, ["rspamd", "-f", "-c", "/etc/mxwarden/rspamd/rspamd.conf", "--var", "LOCAL_CONFDIR=/etc/mxwarden/rspamd"]);
    assert.deepEqual(rspamd?.readinessProbe?.httpGet, { path: "/ping", port: "rspamd" });
    const writable = (rspamd?.volumeMounts ?? []).filter((m) => m.readOnly !== true).map((m) => m.mountPath);
    assert.deepEqual(writable.sort(), ["/run/rspamd", "/tmp", "/var/lib/rspamd"]);
    assert.ok(relayArgs(objects).includes("--rspamd=http://mxwarden-rspamd.mx.svc:11333"), relayArgs(objects).join(" "));
  });

  it("includes the image's rules, logs to the console and asks the site's resolver", () => {
    const config = find(objects, "ConfigMap", "mxwarden-rspamd") as unknown as { data: Record<string, string> };
    assert.equal(config.data["rspamd.conf"], rspamdConfig(3));
    assert.match(rspamdConfig(3), /\.include "\$CONFDIR\/common\.conf"/);
    assert.match(rspamdConfig(3), /bind_socket = "\*:11333";[\s\S]*count = 3;/);
    assert.match(rspamdConfig(3), /type = "console";/);
    assert.equal(config.data["options.inc"], 'dns { nameserver = ["10.0.0.10:53"]; }\n');
  });
});

describe("managed engines and the relays' network", () => {
  const objects = render(site({ clamd: { managed: {} }, rspamd: { managed: {} } }));

  it("lets only the site's relays reach each engine's port", () => {
    for (const [name, port] of [
      ["mxwarden-clamd", 3310],
      ["mxwarden-rspamd", 11333],
    ] as const) {
      const policy = find(objects, "NetworkPolicy", name) as unknown as {
        spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: unknown[] };
      };
      assert.deepEqual(policy.spec.podSelector.matchLabels, { "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "site-a" });
      assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
      assert.deepEqual(policy.spec.ingress, [
        {
          from: [{ podSelector: { matchLabels: { "app.kubernetes.io/name": "mxwarden-relay", "app.kubernetes.io/instance": "site-a" } } }],
          ports: [{ protocol: "TCP", port }],
        },
      ]);
    }
  });

  it("opens the relays' egress to the engines' ports", () => {
    const policy = find(objects, "NetworkPolicy", "mxwarden-relay") as unknown as { spec: { egress: { ports: { port: number }[] }[] } };
    const ports = policy.spec.egress.flatMap((rule) => rule.ports.map((p) => p.port));
    assert.ok(ports.includes(3310) && ports.includes(11333), ports.join(","));
  });

  it("rolls an engine's pods when its configuration changes, and only then", () => {
    const hash = (s: RelaySite): string | undefined => pod(render(s), "mxwarden-rspamd").annotations["mxwarden.io/config-hash"];
    const base = hash(site({ rspamd: { managed: {} } }));
    assert.equal(hash(site({ rspamd: { managed: {} }, replicas: 4 })), base);
    assert.notEqual(hash(site({ rspamd: { managed: { workers: 4 } } })), base);
  });

  it("renders nothing of an engine named by address or url", () => {
    const own = render(site({ clamd: { address: "clamd.av:3310" }, rspamd: { url: "http://rspamd.av:11333" } }));
    assert.equal(
      own.some((o) => o.metadata.name === "mxwarden-clamd" || o.metadata.name === "mxwarden-rspamd"),
      false,
    );
    assert.ok(relayArgs(own).includes("--clamd=clamd.av:3310"));
    assert.ok(relayArgs(own).includes("--rspamd=http://rspamd.av:11333"));
  });
});

describe("the RelaySite schema's choices for clamd and rspamd (the relay's side of the CEL rules)", () => {
  const problems = (spec: Record<string, unknown>): string => {
    try {
      validate(relaySiteSpecSchema, { hostname: "mx.example.net", nats: { url: "nats://n:4222" }, ...spec }, "spec");
      return "";
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
  };

  it("takes exactly one of address and managed, and at most one signature source", () => {
    assert.equal(problems({ clamd: { managed: { signatures: { configMap: { name: "s" } } } }, rspamd: { managed: {} } }), "");
    assert.equal(problems({ clamd: { address: "c:3310" }, rspamd: { url: "http://r:11333" } }), "");
    assert.match(problems({ clamd: { address: "c:3310", managed: {} } }), /exactly one of address/);
    assert.match(problems({ clamd: {} }), /exactly one of address/);
    assert.match(problems({ rspamd: { url: "http://r:11333", managed: {} } }), /exactly one of url/);
    assert.match(
      problems({ clamd: { managed: { signatures: { freshclam: {}, configMap: { name: "s" } } } } }),
      /at most one of freshclam, configMap and persistentVolumeClaim/,
    );
  });
});
