// The generated CRDs in a real kube-apiserver: the OpenAPI schema and the CEL rules refuse what
// the types alone cannot, with the field path in the error, before the operator ever sees it.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { TestControlPlane } from "../harness/kube-control-plane.ts";
import { repoRoot } from "../harness/workspace.ts";
import { ApiClient, ApiError } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

describe("CRD validation in a real API server", () => {
  let plane: TestControlPlane;
  let client: ApiClient;

  before(async () => {
    plane = await TestControlPlane.start({ name: "crd-validation" });
    client = new ApiClient(plane.kubeConfig());
    await plane.installCrds([join(repoRoot, "crds/relaydomains.mxwarden.io.yaml"), join(repoRoot, "crds/relaysites.mxwarden.io.yaml")]);
    await client.create(Resources.Namespace, { apiVersion: "v1", kind: "Namespace", metadata: { name: "team" } });
  });
  after(async () => {
    await plane?.stop();
  });

  const domain = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayDomain",
    metadata: { name, namespace: "team" },
    spec,
  });
  const site = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelaySite",
    metadata: { name },
    spec: { hostname: "mx.backup.test", nats: { url: "nats://nats:4222" }, ...spec },
  });

  // 422 Invalid for schema and CEL failures; strict field validation answers 400 BadRequest.
  async function refused(create: Promise<unknown>, field: RegExp, code = 422): Promise<void> {
    await assert.rejects(create, (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, field);
      return true;
    });
  }

  it("accepts a full RelayDomain and fills in schema defaults", async () => {
    const created = await client.create<{ spec: { recipients: { mode: string }; primary: { hosts: { port: number }[] } } }>(
      Resources.RelayDomain,
      domain("ok", {
        domain: "bücher.example",
        primary: { hosts: [{ host: "mx1.example.com" }] },
        recipients: {},
        antispam: { rejectScore: 15, addHeaderScore: 6 },
        greylisting: { enabled: true, delay: "5m" },
        sites: ["site-a"],
      }),
    );
    assert.equal(created.spec.recipients.mode, "any");
    assert.equal(created.spec.primary.hosts[0]?.port, 25);
  });

  it("refuses invalid RelayDomains with the field named", async () => {
    await refused(client.create(Resources.RelayDomain, domain("bad-domain", { domain: "not a domain" })), /spec\.domain/);
    await refused(
      client.create(Resources.RelayDomain, domain("bad-scores", { domain: "a.example", antispam: { rejectScore: 5, addHeaderScore: 8 } })),
      /addHeaderScore/,
    );
    await refused(
      client.create(Resources.RelayDomain, domain("list-without-mode", { domain: "a.example", recipients: { mode: "any", list: ["x"] } })),
      /spec\.recipients\.list/,
    );
    await refused(
      client.create(Resources.RelayDomain, domain("verify-wrong-mode", { domain: "a.example", recipients: { mode: "list", list: ["x"], verify: {} } })),
      /spec\.recipients\.verify/,
    );
    await refused(
      client.create(Resources.RelayDomain, domain("bad-duration", { domain: "a.example", queue: { lifetime: "five days" } })),
      /spec\.queue\.lifetime/,
    );
    await refused(client.create(Resources.RelayDomain, domain("bad-port", { domain: "a.example", primary: { hosts: [{ host: "mx", port: 70000 }] } })), /port/);
    await refused(
      client.create(Resources.RelayDomain, domain("unknown-field", { domain: "a.example", antivirus: { scanEverything: true } })),
      /unknown field "spec\.antivirus\.scanEverything"/,
      400,
    );
  });

  it("keeps spec.domain immutable", async () => {
    await refused(client.mergePatch(Resources.RelayDomain, "team", "ok", { spec: { domain: "other.example" } }), /immutable/);
  });

  it("refuses RelaySites that would lose the client address or mix exclusive settings", async () => {
    await client.create(Resources.RelaySite, site("site-ok", { smtp: { externalTrafficPolicy: "Cluster", proxyProtocol: true } }));
    await refused(client.create(Resources.RelaySite, site("site-lossy", { smtp: { externalTrafficPolicy: "Cluster" } })), /client address/);
    await refused(
      client.create(Resources.RelaySite, site("site-clusterip-lb", { smtp: { serviceType: "ClusterIP", loadBalancerIP: "192.0.2.1" } })),
      /loadBalancerIP/,
    );
    await refused(client.create(Resources.RelaySite, site("site-no-nats", { nats: { url: "http://nats" } })), /spec\.nats\.url/);
    await refused(client.create(Resources.RelaySite, site("site-bad-host", { hostname: "-bad-" })), /spec\.hostname/);
  });

  it("takes exactly one of nats.url and nats.managed, and only sensible managed servers (the CEL twins of the relay's predicates)", async () => {
    await client.create(
      Resources.RelaySite,
      site("site-managed", { nats: { domain: "m", managed: { replicas: 3, encryption: true, leafnode: { advertise: "leaf.m.test:7422" } } } }),
    );
    await client.create(
      Resources.RelaySite,
      site("site-url-creds", { nats: { url: "tls://n:4222", credentialsSecretRef: { name: "c" }, caSecretRef: { name: "ca" } } }),
    );
    await refused(client.create(Resources.RelaySite, site("site-both", { nats: { url: "nats://n:4222", managed: {} } })), /exactly one of url/);
    await refused(client.create(Resources.RelaySite, site("site-neither", { nats: { domain: "x" } })), /exactly one of url/);
    await refused(client.create(Resources.RelaySite, site("site-even", { nats: { managed: { replicas: 2 } } })), /1, 3 or 5/);
    await refused(
      client.create(Resources.RelaySite, site("site-creds-managed", { nats: { managed: {}, credentialsSecretRef: { name: "c" } } })),
      /credentialsSecretRef/,
    );
    await refused(client.create(Resources.RelaySite, site("site-r5-on-3", { nats: { managed: { replicas: 3 }, streamReplicas: 5 } })), /streamReplicas/);
    await refused(client.create(Resources.RelaySite, site("site-bad-advertise", { nats: { managed: { leafnode: { advertise: "no-port" } } } })), /advertise/);
  });
  it("takes exactly one of an existing clamd or rspamd and a managed one, and at most one source of clamd's signatures", async () => {
    await client.create(
      Resources.RelaySite,
      site("site-engines", {
        clamd: { managed: { replicas: 2, signatures: { freshclam: { checks: 24 } }, resources: { requests: { memory: "2Gi" } } } },
        rspamd: { managed: { workers: 4 } },
      }),
    );
    await client.create(Resources.RelaySite, site("site-own-engines", { clamd: { address: "clamd.av:3310" }, rspamd: { url: "http://rspamd.av:11333" } }));
    await client.create(Resources.RelaySite, site("site-own-signatures", { clamd: { managed: { signatures: { configMap: { name: "signatures" } } } } }));
    await refused(
      client.create(Resources.RelaySite, site("site-clamd-both", { clamd: { address: "clamd.av:3310", managed: {} } })),
      /spec\.clamd: .*exactly one of address \(an existing clamd\) and managed/,
    );
    await refused(client.create(Resources.RelaySite, site("site-clamd-neither", { clamd: {} })), /spec\.clamd: .*exactly one of address/);
    await refused(
      client.create(Resources.RelaySite, site("site-rspamd-both", { rspamd: { url: "http://rspamd.av:11333", managed: {} } })),
      /spec\.rspamd: .*exactly one of url \(an existing rspamd\) and managed/,
    );
    await refused(
      client.create(
        Resources.RelaySite,
        site("site-two-sources", { clamd: { managed: { signatures: { freshclam: {}, persistentVolumeClaim: { claimName: "db" } } } } }),
      ),
      /spec\.clamd\.managed\.signatures: .*at most one of freshclam, configMap and persistentVolumeClaim/,
    );
    await refused(client.create(Resources.RelaySite, site("site-rspamd-workers", { rspamd: { managed: { workers: 0 } } })), /spec\.rspamd\.managed\.workers/);
  });
});
