// A real single-node Kubernetes cluster on this machine, for the end-to-end tests and `make cluster`:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and CoreDNS
// (all built from pinned Go modules into .tools/bin by `make deps-cluster`), containerd and runc and
// the CNI plugins from Debian. Nothing comes from an image registry: the pod sandbox image and the
// project's images are imported into containerd from podman (`make images`).
//
// The node lives on a bridge of its own, mxw0 = 10.244.0.1/24: that is the node's address, the API
// server's, the kubelet's and the cluster DNS's (CoreDNS runs on the node, not as a pod), and the
// gateway of the pods, which take their addresses from the same /24. Services are 10.96.0.0/24
// (kube-proxy in iptables mode). Only this bridge and loopback are used.
//
// The processes are started detached, with their pids and logs under the state directory
// (.data/cluster by default), so `make cluster` can leave them running and `make cluster-down`, or
// the next start, can stop them. containerd's image store (state/containerd) survives a restart;
// everything else (etcd data, certificates, kubelet directories) is made anew at every start.
//
// Needs root: the bridge, iptables, containerd and the kubelet. This machine kind mounts cgroup v1
// in hybrid mode and lacks CAP_SYS_RESOURCE, hence `failCgroupV1: false` with the cgroupfs driver,
// containerd's `restrict_oom_score_adj` and kube-proxy's `oomScoreAdj: 0` (../shared/NOTES.md).

import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { createServer, connect, type Server } from "node:net";
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CLIENT_AUTH, SERVER_AUTH, issue as issueCertificate, selfSigned, serviceAccountKey } from "./pki.ts";
import { StopWaiting, eventually, repoRoot } from "./workspace.ts";

export const NODE_NAME = "mxwarden-node";
export const NODE_IP = "10.244.0.1";
export const BRIDGE = "mxw0";
export const POD_SUBNET = "10.244.0.0/24";
export const SERVICE_SUBNET = "10.96.0.0/24";
export const API_PORT = 6443;
export const CLUSTER_DOMAIN = "cluster.local";
/** The pod sandbox image; `make images` builds it from tools/pause. */
export const PAUSE_IMAGE = "localhost/mxwarden/pause:local";

const TOOLS_BIN = join(repoRoot, ".tools/bin");
const DEFAULT_STATE_DIR = join(repoRoot, ".data/cluster");
/** Which state directory's cluster owns the bridge on this machine. */
const HOST_OWNER_FILE = "/run/mxwarden-local-cluster.owner";
const CNI_BIN_DIR = "/usr/lib/cni";
/** What the node changes: forwarding for the bridge, and what the kubelet sets when protectKernelDefaults is off (pkg/kubelet/cm: setupKernelTunables). */
const KUBELET_TUNABLES = [
  "net/ipv4/ip_forward",
  "net/bridge/bridge-nf-call-iptables",
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];
/** Stopped first to last in reverse; each entry is a process the node runs. */
const COMPONENTS = ["containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns"] as const;
type Component = (typeof COMPONENTS)[number];

export interface KubeNodeOptions {
  /** Where pids, logs, certificates and containerd's store live (default .data/cluster). */
  stateDir?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

function tool(name: string): string {
  const path = join(TOOLS_BIN, name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`make deps-cluster\` (it builds ${name} from its pinned Go module)`);
  return path;
}

function sh(command: string, args: string[], options: { input?: string | Buffer; allowFail?: boolean; timeoutMs?: number } = {}): string {
  const result = spawnSync(command, args, { input: options.input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000 });
  if (result.error && !options.allowFail) throw result.error;
  if (result.status !== 0 && !options.allowFail) throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  return result.stdout ?? "";
}

/** The command line of a live process, or undefined. */
function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return undefined;
  }
}

export class KubeNode {
  readonly stateDir: string;
  /** Seconds per phase of the last start(), for reports. */
  readonly timings: Record<string, number> = {};
  private readonly log: (line: string) => void;

  constructor(options: KubeNodeOptions = {}) {
    this.stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
    this.log = options.log ?? (() => undefined);
  }

  /** Fresh every start: certificates, etcd, kubelet and CNI state, logs, pids. */
  get runDir(): string {
    return join(this.stateDir, "run");
  }

  /** Kept across starts: containerd's content and snapshots (imported images). */
  get containerdRoot(): string {
    return join(this.stateDir, "containerd");
  }

  get containerdSocket(): string {
    return join(this.runDir, "containerd.sock");
  }

  get kubeconfigPath(): string {
    return join(this.runDir, "admin.kubeconfig");
  }

  get apiUrl(): string {
    return `https://${NODE_IP}:${API_PORT}`;
  }

  private pidFile(component: Component): string {
    return join(this.runDir, "pids", `${component}.pid`);
  }

  logFile(component: Component): string {
    return join(this.runDir, "logs", `${component}.log`);
  }

  /** True when every component of a previous start still runs. */
  isRunning(): boolean {
    return COMPONENTS.every((component) => this.livePid(component) !== undefined);
  }

  private livePid(component: Component): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile(component), "utf8").trim());
    } catch {
      return undefined;
    }
    const line = cmdline(pid);
    // The pid must still be ours: the same binary, with this state directory in its arguments.
    return line?.includes(this.stateDir) ? pid : undefined;
  }

  /** Start the node (stopping a previous one first). Resolves when the node is Ready and DNS answers. */
  async start(): Promise<void> {
    const t0 = Date.now();
    const mark = (phase: string, since: number): number => {
      this.timings[phase] = Math.round((Date.now() - since) / 100) / 10;
      return Date.now();
    };
    this.claimHost();
    await this.stop();
    let t = mark("cleanup", t0);
    for (const name of ["kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "kubectl", "pause"])
      tool(name);
    mkdirSync(join(this.runDir, "pids"), { recursive: true });
    mkdirSync(join(this.runDir, "logs"), { recursive: true });
    mkdirSync(this.containerdRoot, { recursive: true });
    this.saveKernelTunables();
    this.hostNetwork();
    this.makeCertificates();
    this.writeConfigs();
    t = mark("certificates", t);
    this.log("starting containerd and etcd");
    const etcdPort = await freeLoopbackPort();
    const etcdPeerPort = await freeLoopbackPort();
    this.spawn("containerd", "/usr/bin/containerd", ["--config", join(this.runDir, "containerd.toml")]);
    this.spawn("etcd", tool("etcd"), [
      "--name=default",
      `--data-dir=${join(this.runDir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      "--unsafe-no-fsync",
      "--log-level=warn",
    ]);
    await eventually(
      "etcd healthy",
      async () => {
        this.assertAlive("etcd");
        const response = await fetch(`http://127.0.0.1:${etcdPort}/health`);
        return response.ok && ((await response.json()) as { health?: string }).health === "true";
      },
      60_000,
      100,
    );
    t = mark("etcd", t);
    this.log("starting kube-apiserver");
    const pki = (name: string): string => join(this.runDir, "pki", name);
    this.spawn("kube-apiserver", tool("kube-apiserver"), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--bind-address=${NODE_IP}`,
      `--advertise-address=${NODE_IP}`,
      `--secure-port=${API_PORT}`,
      `--cert-dir=${join(this.runDir, "apiserver-certs")}`,
      `--tls-cert-file=${pki("apiserver.crt")}`,
      `--tls-private-key-file=${pki("apiserver.key")}`,
      `--client-ca-file=${pki("ca.crt")}`,
      `--kubelet-client-certificate=${pki("apiserver-kubelet-client.crt")}`,
      `--kubelet-client-key=${pki("apiserver-kubelet-client.key")}`,
      `--kubelet-certificate-authority=${pki("ca.crt")}`,
      "--kubelet-preferred-address-types=InternalIP",
      "--authorization-mode=Node,RBAC",
      "--enable-admission-plugins=NodeRestriction",
      `--service-cluster-ip-range=${SERVICE_SUBNET}`,
      `--service-account-issuer=https://kubernetes.default.svc.${CLUSTER_DOMAIN}`,
      `--service-account-key-file=${pki("sa.key")}`,
      `--service-account-signing-key-file=${pki("sa.key")}`,
      "--allow-privileged=true",
      "--profiling=false",
      "--v=0",
    ]);
    await eventually(
      "kube-apiserver ready",
      () => {
        this.assertAlive("kube-apiserver");
        return this.kubectl(["get", "--raw", "/readyz"], { allowFail: true }).trim() === "ok";
      },
      120_000,
      200,
    );
    t = mark("apiserver", t);
    this.log("starting controller-manager, scheduler, kubelet, kube-proxy, CoreDNS");
    const kc = (name: string): string => join(this.runDir, `${name}.kubeconfig`);
    this.spawn("kube-controller-manager", tool("kube-controller-manager"), [
      `--kubeconfig=${kc("controller-manager")}`,
      `--authentication-kubeconfig=${kc("controller-manager")}`,
      `--authorization-kubeconfig=${kc("controller-manager")}`,
      "--bind-address=127.0.0.1",
      "--secure-port=10257",
      "--leader-elect=false",
      "--use-service-account-credentials=true",
      `--root-ca-file=${pki("ca.crt")}`,
      `--service-account-private-key-file=${pki("sa.key")}`,
      `--cluster-signing-cert-file=${pki("ca.crt")}`,
      `--cluster-signing-key-file=${pki("ca.key")}`,
      `--service-cluster-ip-range=${SERVICE_SUBNET}`,
      "--allocate-node-cidrs=false",
      `--cert-dir=${join(this.runDir, "kcm-certs")}`,
      "--v=0",
    ]);
    this.spawn("kube-scheduler", tool("kube-scheduler"), [
      `--kubeconfig=${kc("scheduler")}`,
      `--authentication-kubeconfig=${kc("scheduler")}`,
      `--authorization-kubeconfig=${kc("scheduler")}`,
      "--bind-address=127.0.0.1",
      "--secure-port=10259",
      "--leader-elect=false",
      `--cert-dir=${join(this.runDir, "scheduler-certs")}`,
      "--v=0",
    ]);
    await this.waitForContainerd();
    this.importPause();
    this.spawn("kubelet", tool("kubelet"), [
      `--config=${join(this.runDir, "kubelet.yaml")}`,
      `--kubeconfig=${kc("kubelet")}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      `--root-dir=${join(this.runDir, "kubelet")}`,
      `--cert-dir=${join(this.runDir, "kubelet-certs")}`,
      "--v=0",
    ]);
    this.spawn("kube-proxy", tool("kube-proxy"), [`--config=${join(this.runDir, "kube-proxy.yaml")}`, `--hostname-override=${NODE_NAME}`, "--v=0"]);
    this.spawn("coredns", tool("coredns"), ["-conf", join(this.runDir, "Corefile")]);
    await eventually(
      "node Ready",
      () => {
        for (const component of COMPONENTS) this.assertAlive(component);
        return this.kubectl(["get", "node", NODE_NAME, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'], { allowFail: true }) === "True";
      },
      120_000,
      250,
    );
    t = mark("nodeReady", t);
    // DNS answers for Services, and new namespaces get their ServiceAccount and root CA (pods need both).
    await eventually("cluster DNS", () => dnsQueryA(NODE_IP, `kubernetes.default.svc.${CLUSTER_DOMAIN}`) === "10.96.0.1", 60_000, 250);
    await eventually(
      "default ServiceAccount and kube-root-ca.crt",
      () =>
        this.kubectl(["-n", "default", "get", "serviceaccount/default", "configmap/kube-root-ca.crt", "-o", "name"], { allowFail: true }).trim().split("\n")
          .length === 2,
      60_000,
      250,
    );
    mark("dnsAndControllers", t);
    this.timings.total = Math.round((Date.now() - t0) / 100) / 10;
    this.log(`cluster up in ${this.timings.total} s (${JSON.stringify(this.timings)})`);
  }

  kubectl(args: string[], options: { input?: string; allowFail?: boolean } = {}): string {
    return sh(tool("kubectl"), ["--kubeconfig", this.kubeconfigPath, ...args], options);
  }

  /**
   * kubectl without blocking the event loop: for a wait (`rollout status`) or polling while the
   * test's own clients keep talking to the cluster.
   */
  kubectlAsync(args: string[], timeoutMs = 120_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        tool("kubectl"),
        ["--kubeconfig", this.kubeconfigPath, ...args],
        { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs },
        (err, stdout, stderr) => (err ? reject(new Error(`kubectl ${args.join(" ")} failed: ${err.message} ${stderr}`)) : resolve(stdout)),
      );
    });
  }

  /**
   * Follows a pod's log into `file` until its container exits: the log of a pod that is being
   * deleted is gone with the pod, and a post-mortem of its shutdown needs it.
   */
  followLog(namespace: string, pod: string, file: string): Promise<void> {
    const out = openSync(file, "w");
    const child = spawn(tool("kubectl"), ["--kubeconfig", this.kubeconfigPath, "-n", namespace, "logs", "-f", "--tail=-1", pod], {
      stdio: ["ignore", out, out],
    });
    closeSync(out);
    return new Promise((resolve) => child.once("exit", () => resolve()));
  }

  /** containerd's own CLI against this node's containerd, in the CRI namespace. */
  ctr(args: string[], options: { input?: string | Buffer; allowFail?: boolean; timeoutMs?: number } = {}): string {
    return sh("ctr", ["--address", this.containerdSocket, "--namespace", "k8s.io", ...args], options);
  }

  /**
   * Make podman images available to the kubelet under the same names (pull policy IfNotPresent
   * then never needs a registry). An image whose podman ID was imported before is skipped.
   */
  importImages(refs: string[]): void {
    const markers = join(this.containerdRoot, "imported");
    mkdirSync(markers, { recursive: true });
    for (const ref of refs) {
      const id = sh("podman", ["image", "inspect", "--format", "{{.Id}}", ref]).trim();
      const marker = join(markers, ref.replace(/[^A-Za-z0-9_.-]/g, "_"));
      const present = this.ctr(["images", "ls", "-q", `name==${ref}`], { allowFail: true }).trim() !== "";
      if (present && existsSync(marker) && readFileSync(marker, "utf8") === id) continue;
      this.log(`importing ${ref} into containerd`);
      const archive = join(this.runDir, "image.tar");
      sh("podman", ["save", "--format", "docker-archive", "-o", archive, ref], { timeoutMs: 600_000 });
      this.ctr(["images", "import", archive], { timeoutMs: 600_000 });
      rmSync(archive, { force: true });
      writeFileSync(marker, id);
    }
  }

  private importPause(): void {
    if (spawnSync("podman", ["image", "exists", PAUSE_IMAGE]).status !== 0) throw new Error(`${PAUSE_IMAGE} is missing: run \`make images\``);
    this.importImages([PAUSE_IMAGE]);
  }

  private async waitForContainerd(): Promise<void> {
    await eventually(
      "containerd",
      () => {
        this.assertAlive("containerd");
        return spawnSync("ctr", ["--address", this.containerdSocket, "version"], { stdio: "ignore" }).status === 0;
      },
      30_000,
      100,
    );
  }

  private assertAlive(component: Component): void {
    if (this.livePid(component) === undefined) {
      let tail = "";
      try {
        tail = readFileSync(this.logFile(component), "utf8").split("\n").slice(-20).join("\n");
      } catch {
        /* no log */
      }
      throw new StopWaiting(`${component} exited; last lines of ${this.logFile(component)}:\n${tail}`);
    }
  }

  private spawn(component: Component, command: string, args: string[]): void {
    const out = openSync(this.logFile(component), "a");
    const child = spawn(command, args, { detached: true, stdio: ["ignore", out, out], cwd: this.runDir });
    closeSync(out);
    if (child.pid === undefined) throw new Error(`${component} did not start`);
    writeFileSync(this.pidFile(component), `${child.pid}\n`);
    child.unref();
  }

  /**
   * Stop everything a previous start left (also after a crash of the process that started it):
   * the control plane and kubelet, every container, containerd, then the mounts, iptables rules,
   * cgroups and the bridge. The image store stays.
   */
  async stop(): Promise<void> {
    const t0 = Date.now();
    const stopOne = async (component: Component, graceMs: number): Promise<void> => {
      const pid = this.livePid(component);
      if (pid === undefined) return;
      process.kill(pid, "SIGTERM");
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && this.livePid(component) !== undefined) await sleep(50);
      if (this.livePid(component) !== undefined) process.kill(pid, "SIGKILL");
      while (this.livePid(component) !== undefined) await sleep(20);
    };
    // Nothing may start pods any more, then the node agent goes.
    await Promise.all((["kube-controller-manager", "kube-scheduler", "coredns", "kube-proxy"] as const).map((c) => stopOne(c, 5000)));
    await stopOne("kubelet", 10_000);
    if (this.livePid("containerd") !== undefined) {
      // Every container of the node: TERM, a short grace, KILL; then the CRI forgets them.
      const tasks = (): string[] => this.ctr(["tasks", "ls", "-q"], { allowFail: true, timeoutMs: 20_000 }).split("\n").filter(Boolean);
      for (const id of tasks()) this.ctr(["tasks", "kill", "--signal", "SIGTERM", id], { allowFail: true, timeoutMs: 10_000 });
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && this.runningTasks().length > 0) await sleep(100);
      for (const id of tasks()) this.ctr(["tasks", "kill", "--signal", "SIGKILL", id], { allowFail: true, timeoutMs: 10_000 });
      for (const id of tasks()) this.ctr(["tasks", "delete", "--force", id], { allowFail: true, timeoutMs: 10_000 });
      const containers = this.ctr(["containers", "ls", "-q"], { allowFail: true, timeoutMs: 20_000 }).split("\n").filter(Boolean);
      if (containers.length > 0) this.ctr(["containers", "rm", ...containers], { allowFail: true, timeoutMs: 30_000 });
    }
    await stopOne("containerd", 10_000);
    await Promise.all((["kube-apiserver"] as const).map((c) => stopOne(c, 10_000)));
    await stopOne("etcd", 10_000);
    this.killStrayShims();
    this.unmountUnder(this.runDir);
    this.unmountUnder(this.containerdRoot);
    if (existsSync(this.runDir) && !this.hostOwnedByAnother()) {
      // kube-proxy's iptables chains, the pods' cgroups and the bridge (its veths went with the netns).
      if (existsSync(join(TOOLS_BIN, "kube-proxy"))) sh(join(TOOLS_BIN, "kube-proxy"), ["--cleanup"], { allowFail: true });
      removeKubeChains();
      for (const controller of readdirSync("/sys/fs/cgroup")) removeCgroupTree(join("/sys/fs/cgroup", controller, "kubepods"));
      sh("ip", ["link", "delete", BRIDGE], { allowFail: true });
      this.restoreKernelTunables();
      rmSync(this.runDir, { recursive: true, force: true });
    }
    this.timings.stop = Math.round((Date.now() - t0) / 100) / 10;
  }

  private runningTasks(): string[] {
    return this.ctr(["tasks", "ls"], { allowFail: true, timeoutMs: 20_000 })
      .split("\n")
      .slice(1)
      .filter((line) => /\bRUNNING\b/.test(line));
  }

  /** containerd-shim processes of this node's containerd that outlived it. */
  private killStrayShims(): void {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const line = cmdline(Number(entry));
      if (line?.startsWith("/usr/bin/containerd-shim") && line.includes(this.containerdSocket)) {
        try {
          process.kill(Number(entry), "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
  }

  /** Unmount everything mounted below `dir` (pod volumes, network namespaces, rootfs overlays), deepest first. */
  private unmountUnder(dir: string): void {
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[4]?.replace(/\\040/g, " "))
      .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)))
      .sort((a, b) => b.length - a.length);
    for (const point of mounts) sh("umount", ["-l", point], { allowFail: true });
  }

  private hostOwnedByAnother(): boolean {
    try {
      const other = readFileSync(HOST_OWNER_FILE, "utf8").trim();
      return other !== "" && other !== this.stateDir && new KubeNode({ stateDir: other }).livePid("kube-apiserver") !== undefined;
    } catch {
      return false;
    }
  }

  /**
   * One such cluster per machine: the bridge, its address and port 6443 are fixed. Another
   * checkout's cluster that still runs is not torn down from here; starting fails instead.
   */
  private claimHost(): void {
    if (this.hostOwnedByAnother()) {
      throw new Error(
        `another local cluster runs from ${readFileSync(HOST_OWNER_FILE, "utf8").trim()} (it owns ${BRIDGE}/${NODE_IP}); stop it there first (make cluster-down)`,
      );
    }
    writeFileSync(HOST_OWNER_FILE, `${this.stateDir}\n`);
  }

  /**
   * The kubelet sets a few kernel tunables (vm.overcommit_memory, kernel.panic, …) to its defaults;
   * on a shared machine they go back to what they were when the node stops.
   */
  private saveKernelTunables(): void {
    const saved: Record<string, string> = {};
    for (const key of KUBELET_TUNABLES) {
      try {
        saved[key] = readFileSync(join("/proc/sys", key), "utf8").trim();
      } catch {
        /* absent */
      }
    }
    writeFileSync(join(this.runDir, "sysctl-before.json"), JSON.stringify(saved));
  }

  private restoreKernelTunables(): void {
    let saved: Record<string, string>;
    try {
      saved = JSON.parse(readFileSync(join(this.runDir, "sysctl-before.json"), "utf8")) as Record<string, string>;
    } catch {
      return;
    }
    for (const [key, value] of Object.entries(saved)) {
      try {
        writeFileSync(join("/proc/sys", key), value);
      } catch {
        /* read-only here */
      }
    }
  }

  private hostNetwork(): void {
    // Routing between the bridge and the host, and bridged traffic through iptables (Services
    // between pods on the same bridge).
    writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
    if (existsSync("/proc/sys/net/bridge/bridge-nf-call-iptables")) writeFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
    sh("ip", ["link", "add", BRIDGE, "type", "bridge"], { allowFail: true });
    sh("ip", ["addr", "replace", `${NODE_IP}/24`, "dev", BRIDGE]);
    sh("ip", ["link", "set", BRIDGE, "up"]);
  }

  private makeCertificates(): void {
    const dir = join(this.runDir, "pki");
    mkdirSync(dir, { recursive: true });
    selfSigned(dir, "ca", "/CN=mxwarden-local-cluster-ca", 30);
    serviceAccountKey(dir);
    const issue = (name: string, subject: string, ext: string): void => issueCertificate(dir, name, subject, 30, ext);
    const client = CLIENT_AUTH;
    issue(
      "apiserver",
      "/CN=kube-apiserver",
      `subjectAltName=IP:${NODE_IP},IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${CLUSTER_DOMAIN}\n${SERVER_AUTH}`,
    );
    issue("kubelet-serving", `/CN=system:node:${NODE_NAME}/O=system:nodes`, `subjectAltName=IP:${NODE_IP},DNS:${NODE_NAME}\n${SERVER_AUTH}`);
    issue("admin", "/CN=admin/O=system:masters", client);
    issue("apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client/O=system:masters", client);
    issue("kubelet", `/CN=system:node:${NODE_NAME}/O=system:nodes`, client);
    issue("kube-proxy", "/CN=system:kube-proxy", client);
    issue("controller-manager", "/CN=system:kube-controller-manager", client);
    issue("scheduler", "/CN=system:kube-scheduler", client);
    // CoreDNS reads Services, EndpointSlices, Namespaces and Pods: the admin identity keeps this
    // node's RBAC setup to what Kubernetes bootstraps itself.
    const b64 = (name: string): string => readFileSync(join(dir, name)).toString("base64");
    for (const [file, cert] of [
      ["admin", "admin"],
      ["kubelet", "kubelet"],
      ["kube-proxy", "kube-proxy"],
      ["controller-manager", "controller-manager"],
      ["scheduler", "scheduler"],
    ] as const) {
      writeFileSync(
        join(this.runDir, `${file}.kubeconfig`),
        [
          "apiVersion: v1",
          "kind: Config",
          "clusters:",
          `  - name: mxwarden-local`,
          "    cluster:",
          `      server: ${this.apiUrl}`,
          `      certificate-authority-data: ${b64("ca.crt")}`,
          "users:",
          `  - name: ${cert}`,
          "    user:",
          `      client-certificate-data: ${b64(`${cert}.crt`)}`,
          `      client-key-data: ${b64(`${cert}.key`)}`,
          "contexts:",
          "  - name: mxwarden-local",
          "    context:",
          "      cluster: mxwarden-local",
          `      user: ${cert}`,
          "current-context: mxwarden-local",
          "",
        ].join("\n"),
      );
    }
  }

  private writeConfigs(): void {
    const run = this.runDir;
    const pki = (name: string): string => join(run, "pki", name);
    mkdirSync(join(run, "cni"), { recursive: true });
    mkdirSync(join(run, "containerd-state"), { recursive: true });
    writeFileSync(
      join(run, "containerd.toml"),
      `version = 2
root = ${JSON.stringify(`${this.containerdRoot}/root`)}
state = ${JSON.stringify(join(run, "containerd-state"))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt"]

[grpc]
  address = ${JSON.stringify(this.containerdSocket)}

[ttrpc]
  address = ${JSON.stringify(`${this.containerdSocket}.ttrpc`)}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${JSON.stringify(PAUSE_IMAGE)}
  # No CAP_SYS_RESOURCE on this machine kind: without this every sandbox fails.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${JSON.stringify(CNI_BIN_DIR)}
    conf_dir = ${JSON.stringify(join(run, "cni"))}
`,
    );
    writeFileSync(
      join(run, "cni", "10-mxwarden.conflist"),
      JSON.stringify(
        {
          cniVersion: "1.0.0",
          name: "mxwarden",
          plugins: [
            {
              type: "bridge",
              bridge: BRIDGE,
              isGateway: true,
              ipMasq: false,
              hairpinMode: true,
              ipam: {
                type: "host-local",
                ranges: [[{ subnet: POD_SUBNET, gateway: NODE_IP, rangeStart: "10.244.0.10" }]],
                routes: [{ dst: "0.0.0.0/0" }],
                dataDir: join(run, "cni-ipam"),
              },
            },
            { type: "portmap", capabilities: { portMappings: true } },
          ],
        },
        null,
        2,
      ),
    );
    // Pods get no search domains or servers of the host: only the cluster's DNS.
    writeFileSync(join(run, "resolv.conf"), `nameserver ${NODE_IP}\n`);
    writeFileSync(
      join(run, "kubelet.yaml"),
      `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) on this machine kind.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${this.containerdSocket}
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: ${pki("kubelet-serving.crt")}
tlsPrivateKeyFile: ${pki("kubelet-serving.key")}
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: ${pki("ca.crt")} }
authorization:
  mode: Webhook
clusterDomain: ${CLUSTER_DOMAIN}
clusterDNS: [${NODE_IP}]
resolvConf: ${join(run, "resolv.conf")}
podLogsDir: ${join(run, "pod-logs")}
failSwapOn: false
staticPodPath: ""
serializeImagePulls: false
# A shared development machine: evict only when it is really full.
evictionHard: { memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%" }
imageGCHighThresholdPercent: 98
imageGCLowThresholdPercent: 95
`,
    );
    writeFileSync(
      join(run, "kube-proxy.yaml"),
      `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${join(run, "kube-proxy.kubeconfig")}
mode: iptables
clusterCIDR: ${POD_SUBNET}
bindAddress: ${NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts on the node's address only (not on loopback: no route_localnet), and no conntrack sysctls.
nodePortAddresses: ["${NODE_IP}/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
oomScoreAdj: 0
`,
    );
    writeFileSync(
      join(run, "Corefile"),
      `.:53 {
    bind ${NODE_IP}
    errors
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        kubeconfig ${this.kubeconfigPath} mxwarden-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`,
    );
  }
}

/**
 * The chains the kubelet itself creates (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT),
 * which `kube-proxy --cleanup` leaves: the jumps into them, then the chains. Only KUBE-* chains.
 */
function removeKubeChains(): void {
  for (const [save, tables] of [
    ["iptables-save", "iptables"],
    ["ip6tables-save", "ip6tables"],
  ] as const) {
    let table = "";
    const jumps: Array<[string, string]> = [];
    const chains: Array<[string, string]> = [];
    for (const line of sh(save, [], { allowFail: true }).split("\n")) {
      if (line.startsWith("*")) table = line.slice(1);
      else if (line.startsWith(":KUBE-")) chains.push([table, line.slice(1).split(" ")[0] ?? ""]);
      else if (/^-A (?!KUBE-)\S+ .*-j KUBE-/.test(line)) jumps.push([table, line.slice(3)]);
    }
    for (const [t, rule] of jumps)
      sh(tables, ["-t", t, "-D", ...(rule.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"(.*)"$/, "$1"))], { allowFail: true });
    for (const [t, chain] of chains) sh(tables, ["-t", t, "-F", chain], { allowFail: true });
    for (const [t, chain] of chains) sh(tables, ["-t", t, "-X", chain], { allowFail: true });
  }
}

/** A failure that no amount of waiting fixes (a component died). */

function removeCgroupTree(path: string): void {
  if (!existsSync(path)) return;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(path, entry.name));
  }
  try {
    rmSync(path, { recursive: false });
  } catch {
    try {
      execFileSync("rmdir", [path], { stdio: "ignore" });
    } catch {
      /* still in use */
    }
  }
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A DNS A query over UDP to `server`:53 (a synchronous helper process keeps the harness simple). */
function dnsQueryA(server: string, name: string): string | undefined {
  const script = `
    const dgram = require("node:dgram");
    const labels = ${JSON.stringify(name)}.split(".");
    const q = Buffer.concat([Buffer.from([0x12,0x34,1,0,0,1,0,0,0,0,0,0]), ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0,0,1,0,1])]);
    const s = dgram.createSocket("udp4");
    const t = setTimeout(() => process.exit(2), 1000);
    s.on("message", (m) => { clearTimeout(t); const an = m.readUInt16BE(6); if (an > 0) { const ip = m.subarray(m.length - 4); console.log([...ip].join(".")); process.exit(0); } process.exit(1); });
    s.send(q, 53, ${JSON.stringify(server)});`;
  const result = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 3000 });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/**
 * A TCP port on the node's address that forwards to a loopback port of the host: how pods reach a
 * test server (such as the test primary) that listens on 127.0.0.1 only.
 */
export async function forwardToHost(loopbackPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((socket) => {
    const upstream = connect({ host: "127.0.0.1", port: loopbackPort });
    socket.pipe(upstream).pipe(socket);
    const end = (): void => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on("error", end);
    upstream.on("error", end);
    socket.on("close", end);
    upstream.on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, NODE_IP, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
