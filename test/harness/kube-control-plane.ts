// A real Kubernetes control plane for tests, started the way controller-runtime's envtest does it:
// an etcd and a kube-apiserver (both built from pinned Go modules into .tools/bin by `make deps`)
// on random loopback ports, certificates made with openssl for this run, a service-account
// signing key, RBAC authorization and an admin identity in system:masters. There is no
// controller-manager, scheduler or kubelet: nothing garbage-collects and Deployments never get pods.
//
// pause()/resume() stop and restart the API server on the same port and etcd, which is how tests
// cut a "cluster" away and bring it back. With `audit: true` every request is written to an audit
// log (level Metadata), which the RBAC least-privilege test reads.

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { TestProcess } from "./child.ts";
import { CLIENT_AUTH, SERVER_AUTH, issue, selfSigned, serviceAccountKey } from "./pki.ts";
import { eventually, freePort, repoRoot, tempDir } from "./workspace.ts";
import { ApiClient, type Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

const TOOLS_BIN = join(repoRoot, ".tools/bin");
const ADMIN_USER = "admin";

export interface ControlPlaneOptions {
  /** Names the scratch directory and the kubeconfig context. */
  name: string;
  /** Write an audit log of every request to `auditLogPath`. */
  audit?: boolean;
}

function tool(name: string): string {
  const path = join(TOOLS_BIN, name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`make deps\` (it builds ${name} from its pinned Go module)`);
  return path;
}

export class TestControlPlane {
  readonly name: string;
  readonly dir: string;
  readonly apiPort: number;
  readonly auditLogPath: string | undefined;
  private readonly etcdPort: number;
  private readonly etcdPeerPort: number;
  private readonly removeDir: () => void;
  private etcd: TestProcess | undefined;
  private apiServer: TestProcess | undefined;
  private clientCertSerial = 0;
  private adminKubeconfig: string | undefined;

  private constructor(options: ControlPlaneOptions, dir: { path: string; remove(): void }, ports: [number, number, number]) {
    this.name = options.name;
    this.dir = dir.path;
    this.removeDir = dir.remove;
    [this.apiPort, this.etcdPort, this.etcdPeerPort] = ports;
    this.auditLogPath = options.audit ? join(this.dir, "audit.log") : undefined;
  }

  static async start(options: ControlPlaneOptions): Promise<TestControlPlane> {
    const plane = new TestControlPlane(options, tempDir(`kube-${options.name}`), [await freePort(), await freePort(), await freePort()]);
    plane.makeCertificates();
    if (plane.auditLogPath) {
      writeFileSync(
        join(plane.dir, "audit-policy.yaml"),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
      );
    }
    writeFileSync(plane.kubeconfigPath, plane.kubeconfigYaml());
    await plane.startEtcd();
    await plane.resume();
    return plane;
  }

  get url(): string {
    return `https://127.0.0.1:${this.apiPort}`;
  }

  /** An admin kubeconfig on disk, for processes such as the operator. */
  get kubeconfigPath(): string {
    return join(this.dir, "admin.kubeconfig");
  }

  /** The admin kubeconfig (certificates inline), e.g. for a Secret that points at this cluster. */
  kubeconfigYaml(): string {
    this.adminKubeconfig ??= this.kubeconfigYamlFor(ADMIN_USER, ["system:masters"]);
    return this.adminKubeconfig;
  }

  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromString(this.kubeconfigYaml());
    return config;
  }

  /** A kubeconfig whose client certificate names `user` in `groups`: RBAC decides what it may do. */
  kubeconfigYamlFor(user: string, groups: string[]): string {
    const file = `client-${++this.clientCertSerial}`;
    issue(this.dir, file, `/CN=${user}${groups.map((group) => `/O=${group}`).join("")}`, 2, CLIENT_AUTH);
    const b64 = (name: string): string => readFileSync(join(this.dir, name)).toString("base64");
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      `  - name: ${this.name}`,
      "    cluster:",
      `      server: ${this.url}`,
      `      certificate-authority-data: ${b64("ca.crt")}`,
      "users:",
      `  - name: ${user}`,
      "    user:",
      `      client-certificate-data: ${b64(`${file}.crt`)}`,
      `      client-key-data: ${b64(`${file}.key`)}`,
      "contexts:",
      `  - name: ${this.name}`,
      "    context:",
      `      cluster: ${this.name}`,
      `      user: ${user}`,
      `current-context: ${this.name}`,
      "",
    ].join("\n");
  }

  /** Create (or update) the CRDs in these YAML files and wait until the API server serves them. */
  /** Installs CRDs as a user does, with `kubectl apply -f` (YAML 1.1, strict validation), and waits until they serve. */
  async installCrds(files: string[]): Promise<void> {
    const client = new ApiClient(this.kubeConfig());
    const names: string[] = [];
    for (const file of files) {
      const result = spawnSync(tool("kubectl"), ["--kubeconfig", this.kubeconfigPath, "apply", "-f", file], { encoding: "utf8" });
      if (result.status !== 0) throw new Error(`kubectl apply -f ${file} failed: ${result.stderr}`);
      for (const document of parseAllDocuments(readFileSync(file, "utf8"))) {
        const crd = document.toJS() as Unstructured | null;
        if (crd) names.push(crd.metadata.name);
      }
    }
    for (const name of names) {
      await eventually(`CRD ${name} established`, async () => {
        const crd = await client.get<Unstructured & { status?: { conditions?: Array<{ type: string; status: string }> } }>(
          Resources.CustomResourceDefinition,
          undefined,
          name,
        );
        return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ?? false;
      });
    }
  }

  /**
   * Delete a key in etcd behind the API server's back (as another API server replica would while
   * this one is down), e.g. "/registry/configmaps/ns/name".
   */
  async etcdDelete(key: string): Promise<void> {
    const { deleted } = await this.etcdCall<{ deleted?: string }>("/v3/kv/deleterange", { key: Buffer.from(key).toString("base64") });
    if (deleted !== "1") throw new Error(`etcd key ${key} not found`);
  }

  /** Compact etcd's history up to now, so watches from older resourceVersions get 410 Gone. */
  async compactEtcd(): Promise<void> {
    const { header } = await this.etcdCall<{ header: { revision: string } }>("/v3/kv/range", { key: Buffer.from("/").toString("base64"), limit: 1 });
    await this.etcdCall("/v3/kv/compaction", { revision: header.revision, physical: true });
  }

  /** etcd's JSON gateway to its gRPC API. */
  private async etcdCall<T>(path: string, body: unknown): Promise<T> {
    const response = await fetch(`http://127.0.0.1:${this.etcdPort}${path}`, { method: "POST", body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`etcd ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  /** Stop the API server (etcd keeps the data): the cluster is unreachable until resume(). */
  async pause(): Promise<void> {
    await this.apiServer?.stop();
    this.apiServer = undefined;
  }

  /** (Re)start the API server on its port and wait until /readyz answers ok. */
  async resume(): Promise<void> {
    if (this.apiServer?.running) return;
    const args = [
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      // The endpoint reconciler refuses loopback addresses; no pod ever dials the "kubernetes" Service here.
      "--endpoint-reconciler-type=none",
      `--secure-port=${this.apiPort}`,
      `--cert-dir=${join(this.dir, "apiserver-certs")}`,
      `--tls-cert-file=${join(this.dir, "serving.crt")}`,
      `--tls-private-key-file=${join(this.dir, "serving.key")}`,
      `--client-ca-file=${join(this.dir, "ca.crt")}`,
      "--authorization-mode=RBAC",
      "--service-cluster-ip-range=10.96.0.0/24",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(this.dir, "sa.key")}`,
      `--service-account-signing-key-file=${join(this.dir, "sa.key")}`,
      // No token controller runs, so the ServiceAccount admission plugin would refuse pods (envtest does the same).
      "--disable-admission-plugins=ServiceAccount",
      "--allow-privileged=true",
      "--v=0",
      ...(this.auditLogPath
        ? [`--audit-log-path=${this.auditLogPath}`, `--audit-policy-file=${join(this.dir, "audit-policy.yaml")}`, "--audit-log-mode=blocking"]
        : []),
    ];
    this.apiServer = new TestProcess(tool("kube-apiserver"), args, { logFile: join(this.dir, "kube-apiserver.log") });
    const server = this.apiServer;
    const client = new ApiClient(this.kubeConfig());
    await eventually(
      `kube-apiserver ${this.name} ready`,
      async () => {
        if (!server.running) return "exited";
        return (await client.rawGet("/readyz", 2000)).trim() === "ok" && "ready";
      },
      120_000,
      200,
    ).then((state) => exitedEarly("kube-apiserver", server, state));
  }

  async stop(): Promise<void> {
    await this.apiServer?.stop();
    await this.etcd?.stop();
    this.removeDir();
  }

  private async startEtcd(): Promise<void> {
    const clientUrl = `http://127.0.0.1:${this.etcdPort}`;
    const peerUrl = `http://127.0.0.1:${this.etcdPeerPort}`;
    this.etcd = new TestProcess(
      tool("etcd"),
      [
        "--name=default",
        `--data-dir=${join(this.dir, "etcd")}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=default=${peerUrl}`,
        // Test data: fsync buys nothing here and costs seconds on a shared disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { logFile: join(this.dir, "etcd.log") },
    );
    const etcd = this.etcd;
    await eventually(
      `etcd ${this.name} healthy`,
      async () => {
        if (!etcd.running) return "exited";
        const response = await fetch(`${clientUrl}/health`);
        return response.ok && ((await response.json()) as { health?: string }).health === "true" && "ready";
      },
      60_000,
      100,
    ).then((state) => exitedEarly("etcd", etcd, state));
  }

  private makeCertificates(): void {
    selfSigned(this.dir, "ca", `/CN=mxwarden-test-ca-${this.name}`, 2);
    issue(this.dir, "serving", "/CN=kube-apiserver", 2, `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n${SERVER_AUTH}`);
    serviceAccountKey(this.dir);
  }
}

/** A process that died while we waited for it fails the test at once, with its last words. */
function exitedEarly(what: string, process: TestProcess, state: "exited" | "ready"): void {
  if (state === "exited") throw new Error(`${what} exited before it was ready:\n${process.lines.slice(-20).join("\n")}`);
}
