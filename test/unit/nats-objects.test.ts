// The managed NATS of a RelaySite as rendered (operator/src/render/nats-objects.ts): the objects,
// the leafnode topology, the relays' permissions against every subject layout.ts builds, and every
// rendered nats.conf checked by the pinned nats-server itself (`nats-server -t`).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, relaySiteSpecSchema, validate, type RelaySite } from "#api";
import { nkeys } from "@nats-io/transport-node";
import {
  CLUSTER_AUTH_FILE,
  clusterAuthConfig,
  dialsPeer,
  siteRoutes,
  NATS_NAME,
  NATS_RELAY_SECRET,
  NATS_SERVER_SECRET,
  siteNatsConfig,
  type NatsCredentials,
  type NatsPeer,
} from "../../operator/src/render/nats-objects.ts";
import { renderSite, type RenderOptions } from "../../operator/src/render/site-objects.ts";
import { siteDomainConfig } from "../../operator/src/render/domain-config.ts";
import type { KubeObject } from "../../operator/src/render/kube-object.ts";
import { relayNatsPermissions } from "../../relay/src/nats-permissions.ts";
import { QueueLayout } from "../../relay/src/queue/layout.ts";
import { GREYLIST_BUCKET } from "../../relay/src/filter/greylist.ts";
import { PRIMARY_STATUS_BUCKET } from "../../relay/src/filter/monitoring-mode.ts";
import { findNatsServer } from "../../relay/src/queue/index.ts";
import { selfSigned } from "../harness/pki.ts";
import { FakeKubeClient } from "../harness/fake-kube-client.ts";
import { ensureNatsCredentials, natsCredentialsSecretName } from "../../operator/src/controller/nats-credentials.ts";
import { Resources } from "../../operator/src/kube/resources.ts";
import { repoRoot, tempDir } from "../harness/workspace.ts";
import { DEFAULT_NATS_IMAGE } from "../../operator/src/cli.ts";

/** The RelaySite schema's verdict, as the relay's validator (the CEL rules' predicate twins) gives it: "" when accepted. */
function validateRelaySite(spec: unknown): string {
  try {
    validate(relaySiteSpecSchema, spec, "spec");
    return "";
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
}

function user(): { seed: string; publicKey: string } {
  const pair = nkeys.createUser();
  return { seed: new TextDecoder().decode(pair.getSeed()), publicKey: pair.getPublicKey() };
}

function credentials(): NatsCredentials {
  const relay = user();
  const leaf = user();
  return {
    relaySeed: relay.seed,
    relayPublicKey: relay.publicKey,
    leafnodeSeed: leaf.seed,
    leafnodePublicKey: leaf.publicKey,
    encryptionKey: "k".repeat(64),
    routePassword: "r".repeat(48),
  };
}

function managedSite(name: string, managed: NonNullable<RelaySite["spec"]["nats"]["managed"]>, domain: string | undefined = name): RelaySite {
  return {
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelaySite",
    metadata: { name, generation: 1 },
    spec: { hostname: `${name}.mx.example.net`, nats: { managed, ...(domain ? { domain } : {}) } },
  };
}

const creds = credentials();
const peerB: NatsPeer = { domain: "site-b", advertise: "leaf.site-b.example.net:7422", leafnodePublicKey: user().publicKey, tls: false };
const options = (peers: NatsPeer[] = []): RenderOptions => ({
  relayImage: "relay:1",
  peerJetStreamDomains: peers.map((p) => p.domain),
  prometheusOperator: false,
  nats: { natsImage: "nats:2.14.9", credentials: creds, peers },
});
const render = (site: RelaySite, peers: NatsPeer[] = []): KubeObject[] => renderSite(site, siteDomainConfig(site, []), options(peers));

function find(objects: KubeObject[], kind: string, name: string): Record<string, unknown> {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name} rendered`);
  return found as unknown as Record<string, unknown>;
}

interface Container {
  image: string;
  args: string[];
  env: Array<{ name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  securityContext: Record<string, unknown>;
  readinessProbe: { httpGet: { path: string } };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface StatefulSet {
  spec: {
    replicas: number;
    podManagementPolicy: string;
    serviceName: string;
    template: { metadata: { annotations: Record<string, string> }; spec: { securityContext: Record<string, unknown>; containers: Container[] } };
    volumeClaimTemplates: Array<{ spec: { storageClassName?: string; resources: { requests: { storage: string } } } }>;
  };
}

/** `nats-server -t` on a rendered configuration, with the environment its pods give it. */
function checkWithNatsServer(config: string, dir: string, env: Record<string, string> = {}, routes: string[] = []): string {
  // Each configuration in a directory of its own, with the routes' file it includes next to it.
  const own = join(dir, Math.random().toString(36).slice(2));
  mkdirSync(own);
  const file = join(own, "nats.conf");
  writeFileSync(file, config);
  writeFileSync(join(own, CLUSTER_AUTH_FILE), clusterAuthConfig(routes, creds.routePassword));
  const result = spawnSync(findNatsServer(), ["-t", "-c", file], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", POD_NAME: "mxwarden-nats-0", MXW_LEAFNODE_SEED: creds.leafnodeSeed, MXW_JETSTREAM_KEY: creds.encryptionKey, ...env },
  });
  // nats-server reports on stderr, success included.
  if (result.status !== 0) throw new Error(`nats-server -t refused ${file}: ${result.stderr}`);
  return result.stderr;
}

/** NATS subject matching: `*` is one token, `>` the rest. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const allowed = (permissions: { allow: string[]; deny?: string[] }, subject: string): boolean =>
  permissions.allow.some((p) => matches(p, subject)) && !(permissions.deny ?? []).some((p) => matches(p, subject));

describe("managed NATS objects", () => {
  const site = managedSite("site-a", { replicas: 3, storage: { size: "20Gi", storageClassName: "fast" }, encryption: true });
  const objects = render(site);

  it("is accepted by the RelaySite schema, and url and managed exclude each other", () => {
    assert.equal(validateRelaySite(site.spec), "");
    assert.match(validateRelaySite({ ...site.spec, nats: { ...site.spec.nats, url: "nats://x:4222" } }), /exactly one of url/);
    assert.match(validateRelaySite({ hostname: "a.example.net", nats: {} }), /exactly one of url/);
    assert.match(validateRelaySite({ ...site.spec, nats: { ...site.spec.nats, managed: { replicas: 2 } } }), /1, 3 or 5/);
  });

  it("runs three servers in parallel with a claim each, under restricted Pod Security", () => {
    const sts = find(objects, "StatefulSet", NATS_NAME) as unknown as StatefulSet;
    assert.equal(sts.spec.replicas, 3);
    assert.equal(sts.spec.podManagementPolicy, "Parallel");
    assert.equal(sts.spec.serviceName, "mxwarden-nats-routes");
    assert.equal(sts.spec.volumeClaimTemplates[0]?.spec.resources.requests.storage, "20Gi");
    assert.equal(sts.spec.volumeClaimTemplates[0]?.spec.storageClassName, "fast");
    const pod = sts.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    const nats = pod.containers[0] as Container;
    assert.equal(nats.image, "nats:2.14.9");
    assert.deepEqual(nats.securityContext.capabilities, { drop: ["ALL"] });
    assert.equal(nats.securityContext.readOnlyRootFilesystem, true);
    assert.equal(nats.securityContext.allowPrivilegeEscalation, false);
    assert.match(nats.readinessProbe.httpGet.path, /^\/healthz\?js-enabled-only=true$/);
    // The encryption key reaches the server from its Secret, never through the ConfigMap.
    assert.deepEqual(nats.env.find((e) => e.name === "MXW_JETSTREAM_KEY")?.valueFrom?.secretKeyRef, { name: NATS_SERVER_SECRET, key: "encryption.key" });
    const config = (find(objects, "ConfigMap", NATS_NAME).data as Record<string, string>)["nats.conf"] as string;
    for (const secret of [creds.encryptionKey, creds.relaySeed, creds.leafnodeSeed, creds.routePassword])
      assert.ok(!config.includes(secret), "no secret in the ConfigMap");
    assert.match(config, /cluster \{[^}]*include "cluster-auth\.conf"/);
    // The routes and their password come from the servers' Secret, projected next to nats.conf.
    const serverSecret = find(objects, "Secret", NATS_SERVER_SECRET) as { data: Record<string, string> };
    const clusterAuth = Buffer.from(serverSecret.data["cluster-auth.conf"] as string, "base64").toString();
    assert.match(clusterAuth, new RegExp(`nats-route://mxwarden-route:${creds.routePassword}@mxwarden-nats-2\\.mxwarden-nats-routes\\.mxwarden\\.svc:6222`));
    assert.match(clusterAuth, /authorization \{ user: "mxwarden-route"/);
    assert.ok(config.includes(creds.relayPublicKey));
    find(objects, "PodDisruptionBudget", NATS_NAME);
    const routes = find(objects, "Service", "mxwarden-nats-routes") as { spec: { clusterIP: string; publishNotReadyAddresses: boolean } };
    assert.equal(routes.spec.clusterIP, "None");
    assert.equal(routes.spec.publishNotReadyAddresses, true);
  });

  it("lets only the site's relays reach the client port, only the servers the routes, and anyone the leafnode port", () => {
    type Rule = { from?: Array<{ podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: object }>; ports: Array<{ port: number }> };
    const policyOf = (o: KubeObject[]) =>
      find(o, "NetworkPolicy", NATS_NAME) as unknown as {
        spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: Rule[] };
      };
    const policy = policyOf(objects);
    const sts = find(objects, "StatefulSet", NATS_NAME) as unknown as { spec: { selector: { matchLabels: Record<string, string> } } };
    const relays = find(objects, "Deployment", "mxwarden-relay") as unknown as { spec: { selector: { matchLabels: Record<string, string> } } };
    assert.deepEqual(policy.spec.podSelector.matchLabels, sts.spec.selector.matchLabels);
    assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
    const rule = (port: number): Rule | undefined => policy.spec.ingress.find((r) => r.ports.some((p) => p.port === port));
    assert.deepEqual(rule(4222)?.from, [{ podSelector: { matchLabels: relays.spec.selector.matchLabels } }]);
    assert.deepEqual(rule(6222)?.from, [{ podSelector: { matchLabels: sts.spec.selector.matchLabels } }]);
    assert.deepEqual(rule(8222)?.from, [{ namespaceSelector: {} }]);
    assert.equal(policy.spec.ingress.length, 3, "no leafnode port without spec.nats.managed.leafnode");
    const linked = policyOf(render(managedSite("site-a", { leafnode: { advertise: "a.example:7422" } })));
    assert.deepEqual(
      linked.spec.ingress.find((r) => r.ports.some((p) => p.port === 7422)),
      { ports: [{ protocol: "TCP", port: 7422 }] },
      "the other sites dial in from other networks",
    );
  });

  it("rolls the servers when their configuration changes", () => {
    const hash = (o: KubeObject[]): string | undefined =>
      (find(o, "StatefulSet", NATS_NAME) as unknown as StatefulSet).spec.template.metadata.annotations["mxwarden.io/config-hash"];
    assert.equal(hash(objects), hash(render(site)));
    assert.notEqual(hash(objects), hash(render(site, [{ ...peerB, advertise: undefined }])), "a new peer changes the leafnode users or remotes");
  });

  it("gives the relays the managed URL, the seed file and only the seed", () => {
    const deployment = find(objects, "Deployment", "mxwarden-relay") as {
      spec: { template: { spec: { containers: Container[]; volumes: Array<{ name: string; secret?: { secretName: string; items?: unknown[] } }> } } };
    };
    const relay = deployment.spec.template.spec.containers[0] as Container;
    assert.ok(relay.args.includes("--nats=nats://mxwarden-nats.mxwarden.svc:4222"));
    assert.ok(relay.args.includes("--nats-nkey-file=/etc/mxwarden/nats/nkey.seed"));
    assert.ok(relay.args.includes("--replicas=3"));
    const volume = deployment.spec.template.spec.volumes.find((v) => v.name === "nats-credentials");
    assert.deepEqual(volume?.secret, { secretName: NATS_RELAY_SECRET, items: [{ key: "nkey.seed", path: "nkey.seed" }] });
    const secret = find(objects, "Secret", NATS_RELAY_SECRET) as { data: Record<string, string> };
    assert.equal(Buffer.from(secret.data["nkey.seed"] as string, "base64").toString(), creds.relaySeed);
  });

  it("mounts only the CA for the relays when the servers speak TLS", () => {
    const tlsSite = managedSite("site-a", { tls: { secretName: "nats-tls" } });
    const deployment = find(render(tlsSite), "Deployment", "mxwarden-relay") as {
      spec: { template: { spec: { containers: Container[]; volumes: Array<{ name: string; secret?: unknown }> } } };
    };
    const relay = deployment.spec.template.spec.containers[0] as Container;
    assert.ok(relay.args.includes("--nats=tls://mxwarden-nats.mxwarden.svc:4222"));
    assert.ok(relay.args.includes("--nats-ca-file=/etc/mxwarden/nats-ca/ca.crt"));
    assert.deepEqual(deployment.spec.template.spec.volumes.find((v) => v.name === "nats-ca")?.secret, {
      secretName: "nats-tls",
      items: [{ key: "ca.crt", path: "ca.crt" }],
    });
  });

  it("passes the url mode's credentials and CA to the relays", () => {
    const urlSite: RelaySite = {
      ...site,
      spec: {
        ...site.spec,
        nats: { url: "tls://nats.example:4222", credentialsSecretRef: { name: "relay-creds" }, caSecretRef: { name: "nats-ca", key: "root.pem" } },
      },
    };
    assert.equal(validateRelaySite(urlSite.spec), "");
    const objects = renderSite(urlSite, siteDomainConfig(urlSite, []), { relayImage: "relay:1", peerJetStreamDomains: [], prometheusOperator: false });
    const relay = (find(objects, "Deployment", "mxwarden-relay") as { spec: { template: { spec: { containers: Container[] } } } }).spec.template.spec
      .containers[0] as Container;
    assert.ok(relay.args.includes("--nats-creds-file=/etc/mxwarden/nats/nats.creds"));
    assert.ok(relay.args.includes("--nats-ca-file=/etc/mxwarden/nats-ca/root.pem"));
    assert.ok(!objects.some((o) => o.kind === "StatefulSet"), "no managed NATS in url mode");
  });
});

describe("leafnode links between sites", () => {
  const a = { domain: "site-a", advertise: "a.example:7422" };
  const b = { domain: "site-b", advertise: "b.example:7422" };
  const c = { domain: "site-c", advertise: undefined };
  it("makes exactly one link per pair, from the site that sorts first when the other advertises", () => {
    for (const [x, y] of [
      [a, b],
      [a, c],
      [b, c],
    ] as const) {
      assert.equal(Number(dialsPeer(x, y)) + Number(dialsPeer(y, x)), 1, `${x.domain}–${y.domain}`);
    }
    assert.equal(dialsPeer(a, b), true);
    assert.equal(dialsPeer(c, a), true, "a site without an address dials the others");
    assert.equal(dialsPeer({ ...a, advertise: undefined }, c), false);
    assert.equal(dialsPeer(c, { ...a, advertise: undefined }), false, "neither advertises: no link");
  });

  it("renders the remote on the dialling side and the peer's user on the other", () => {
    const siteA = managedSite("site-a", { leafnode: { advertise: "a.example:7422" } });
    const siteB = managedSite("site-b", { leafnode: { advertise: "b.example:7422", serviceType: "LoadBalancer" } });
    const credsB = credentials();
    const configA = siteNatsConfig(siteA, {
      natsImage: "n",
      credentials: creds,
      peers: [{ ...peerB, advertise: "b.example:7422", leafnodePublicKey: credsB.leafnodePublicKey }],
    });
    const configB = siteNatsConfig(siteB, {
      natsImage: "n",
      credentials: credsB,
      peers: [{ domain: "site-a", advertise: "a.example:7422", leafnodePublicKey: creds.leafnodePublicKey, tls: false }],
    });
    assert.match(configA, /remotes: \[\n\s+\{ urls: \["nats-leaf:\/\/b\.example:7422"\], account: MXW, nkey: \$MXW_LEAFNODE_SEED/);
    assert.ok(!configB.includes("remotes"));
    assert.ok(configB.includes(creds.leafnodePublicKey), "site-b accepts site-a's leafnode user");
    const service = find(
      render(siteB, [{ domain: "site-a", advertise: "a.example:7422", leafnodePublicKey: creds.leafnodePublicKey, tls: false }]),
      "Service",
      "mxwarden-nats-leafnode",
    ) as {
      spec: { type: string };
    };
    assert.equal(service.spec.type, "LoadBalancer");
  });
});

describe("the relays' NATS permissions", () => {
  it("allow every subject layout.ts builds, with and without a site, and the filter buckets", () => {
    for (const [layout, sites] of [
      [new QueueLayout(), undefined],
      [new QueueLayout("site-a"), { self: "site-a", peers: ["site-b"] as string[] }],
    ] as const) {
      const { publish, subscribe } = relayNatsPermissions(sites);
      const subjects = [
        layout.readySubject("example.com", "Q1"),
        layout.deferSubject("example.com", "Q1"),
        layout.spoolMessageSubject("Q1"),
        layout.spoolChunkSubject("Q1", 2),
        layout.rateCounterSubject("client", "192.0.2.1", 42),
        layout.shadowCopySubject("Q1"),
        layout.takenOverSubject("site-b", "Q1"),
        `$KV.${layout.siteBucket(PRIMARY_STATUS_BUCKET)}.example_com`,
        `$KV.${sites ? `${GREYLIST_BUCKET}-${sites.self}` : GREYLIST_BUCKET}.k`,
        "$JS.API.STREAM.INFO.MXW_QUEUE",
        "$JS.API.CONSUMER.MSG.NEXT.MXW_QUEUE.mxw-deliver",
        "$JS.API.DIRECT.GET.KV_mxw-greylist",
        "$JS.ACK.MXW_QUEUE.mxw-deliver.1.2.3.4.5",
      ];
      if (sites) subjects.push("$JS.site-b.API.STREAM.INFO.KV_mxw-greylist-site-b");
      for (const subject of subjects) assert.ok(allowed(publish, subject), `may publish ${subject}`);
      assert.ok(allowed(subscribe, "_INBOX.abc.def"));
      for (const subject of ["$JS.API.STREAM.DELETE.MXW_QUEUE", "$JS.API.ACCOUNT.PURGE.MXW", "other.subject", "$KV.someone-else.k", "$SYS.REQ.SERVER.PING"]) {
        assert.ok(!allowed(publish, subject), `may not publish ${subject}`);
      }
      assert.ok(!allowed(subscribe, layout.readySubject("example.com", "Q1")), "jobs reach a relay only through its consumer");
    }
  });
});

describe("every rendered nats.conf passes nats-server -t", () => {
  const dir = tempDir("nats-conf");
  const pki = dir.path;
  selfSigned(pki, "server", "/CN=mxwarden-nats", 2, ["subjectAltName=DNS:mxwarden-nats.mxwarden.svc"]);
  execFileSync("cp", [join(pki, "server.crt"), join(pki, "ca.crt")]);
  const variants: Array<[string, RelaySite, NatsPeer[]]> = [
    ["three servers, defaults", managedSite("site-a", {}), []],
    ["one server, no domain", managedSite("solo", { replicas: 1 }, undefined), []],
    ["five servers, encryption", managedSite("site-a", { replicas: 5, encryption: true }), []],
    ["leafnode dialling a peer", managedSite("site-a", { leafnode: { advertise: "a.example:7422" } }), [peerB]],
    ["leafnode accepting a peer", managedSite("site-c", { leafnode: { port: 7433, advertise: "c.example:7433" } }), [peerB]],
    ["TLS for clients and leafnodes", managedSite("site-a", { tls: { secretName: "t" }, leafnode: {} }), [{ ...peerB, tls: true }]],
  ];
  for (const [name, site, peers] of variants) {
    it(name, () => {
      let config = siteNatsConfig(site, { natsImage: "n", credentials: creds, peers });
      // The pod's paths, here: the store and the TLS files the Secret mount would hold.
      config = config.replaceAll("/data/jetstream", join(dir.path, "store")).replaceAll("/etc/nats-tls/tls.key", join(pki, "server.key"));
      config = config.replaceAll("/etc/nats-tls/tls.crt", join(pki, "server.crt")).replaceAll("/etc/nats-tls/ca.crt", join(pki, "ca.crt"));
      const out = checkWithNatsServer(config, dir.path, {}, siteRoutes(site, "mxwarden"));
      assert.match(out, /configuration file .* is valid/);
    });
  }

  it("and nats-server refuses a configuration without the seed its remotes read", () => {
    const config = siteNatsConfig(managedSite("site-a", {}), { natsImage: "n", credentials: creds, peers: [peerB] });
    assert.throws(() => checkWithNatsServer(config, dir.path, { MXW_LEAFNODE_SEED: "" }));
  });
});

describe("the site's NATS keys (nats-credentials.ts)", () => {
  it("are generated once, kept in the operator's namespace, and a missing one alone is made anew", async () => {
    const client = new FakeKubeClient();
    const first = await ensureNatsCredentials(client, "mxwarden-system", "site-a");
    assert.match(first.relaySeed, /^SU[A-Z2-7]+$/);
    assert.match(first.relayPublicKey, /^U[A-Z2-7]{55}$/);
    assert.notEqual(first.relaySeed, first.leafnodeSeed);
    assert.equal(first.encryptionKey.length, 64);
    assert.deepEqual(await ensureNatsCredentials(client, "mxwarden-system", "site-a"), first, "the same keys on the next reconcile");
    const other = await ensureNatsCredentials(client, "mxwarden-system", "site-b");
    assert.notEqual(other.relaySeed, first.relaySeed, "each site has its own");
    // Rotation: the relays' seed removed from the Secret; the other keys stay.
    await client.mergePatch(Resources.Secret, "mxwarden-system", natsCredentialsSecretName("site-a"), { data: { "relay.seed": null } });
    const rotated = await ensureNatsCredentials(client, "mxwarden-system", "site-a");
    assert.notEqual(rotated.relaySeed, first.relaySeed);
    assert.equal(rotated.leafnodeSeed, first.leafnodeSeed);
    assert.equal(rotated.encryptionKey, first.encryptionKey);
  });
});

describe("the default nats-server image", () => {
  it("is the version the project pins and tests (Makefile), in the operator and the chart alike", () => {
    const pinned = /^NATS_SERVER_VERSION\s*:=\s*v(\S+)/m.exec(readFileSync(join(repoRoot, "Makefile"), "utf8"))?.[1];
    assert.ok(pinned);
    assert.equal(DEFAULT_NATS_IMAGE, `docker.io/library/nats:${pinned}`);
    assert.match(
      readFileSync(join(repoRoot, "charts/mxwarden/values.yaml"), "utf8"),
      new RegExp(`^natsImage: ${DEFAULT_NATS_IMAGE.replaceAll(".", "\\.")}$`, "m"),
    );
  });
});
