// What every test on the real single-node cluster needs around it: the node started with the
// images it runs, a primary on the host that the pods reach through the node's bridge, kubectl and
// helm against the node's API server, swaks through a NodePort, and a teardown that uninstalls the
// release (so its finalizers run) before the node goes. The suites keep only their own steps.

import { execFileSync } from "node:child_process";
import { KubeNode, NODE_IP, forwardToHost } from "./kube-node.ts";
import { HELM } from "./helm.ts";
import { swaks } from "./swaks.ts";
import { TestPrimary } from "./test-primary.ts";

export const OPERATOR_NS = "mxwarden-system";

/** Milliseconds as seconds with one decimal, for the figures a suite prints. */
export const seconds = (ms: number): number => Math.round(ms / 100) / 10;

export interface NodePortMessage {
  to: string;
  subject: string;
  body: string;
  /** STARTTLS before MAIL. */
  tls?: boolean;
}

export class ClusterSession {
  readonly node: KubeNode;
  /** What the suite measured; printed as JSON when the session stops. */
  readonly figures: Record<string, number | string> = {};
  /** Set once the suite uninstalled the release itself: stop() then leaves it alone. */
  released = false;
  private primaryServer: TestPrimary | undefined;
  private forward: { port: number; close(): Promise<void> } | undefined;
  private readonly name: string;

  /** `name` heads the figures printed at the end. */
  constructor(name: string) {
    this.name = name;
    this.node = new KubeNode({ log: (line) => console.log(`# cluster: ${line}`) });
  }

  /** Starts the node, imports `images` into its containerd and starts the primary. */
  async start(images: string[]): Promise<void> {
    const t0 = Date.now();
    await this.node.start();
    this.figures.clusterStartSeconds = seconds(Date.now() - t0);
    this.figures.clusterPhases = JSON.stringify(this.node.timings);
    const t1 = Date.now();
    this.node.importImages(images);
    this.figures.imageImportSeconds = seconds(Date.now() - t1);
    this.primaryServer = await TestPrimary.start();
    this.forward = await forwardToHost(this.primaryServer.port);
  }

  get primary(): TestPrimary {
    if (!this.primaryServer) throw new Error("the cluster session has not started");
    return this.primaryServer;
  }

  /** The port the pods reach the primary on, at NODE_IP. */
  get primaryPort(): number {
    if (!this.forward) throw new Error("the cluster session has not started");
    return this.forward.port;
  }

  kubectl(args: string[], input?: string): string {
    return this.node.kubectl(args, input === undefined ? {} : { input });
  }

  helm(args: string[]): string {
    return execFileSync(HELM, ["--kubeconfig", this.node.kubeconfigPath, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });
  }

  /** swaks through the SMTP Service's NodePort, from the host, as docs/install.md shows. */
  swaksThroughNodePort(nodePort: string, message: NodePortMessage): ReturnType<typeof swaks> {
    return swaks([
      "--server",
      NODE_IP,
      "--port",
      nodePort,
      ...(message.tls ? ["--tls"] : []),
      "--ehlo",
      "client.example.org",
      "--from",
      "sender@example.org",
      "--to",
      message.to,
      "--header",
      `Subject: ${message.subject}`,
      "--body",
      message.body,
    ]);
  }

  /** Uninstalls the release unless the suite did, then stops the primary and the node. */
  async stop(): Promise<void> {
    if (!this.released) {
      try {
        this.helm(["uninstall", "mxwarden", "-n", OPERATOR_NS, "--wait", "--timeout", "2m"]);
      } catch {
        /* the cluster goes anyway */
      }
    }
    await this.forward?.close();
    await this.primaryServer?.close();
    await this.node.stop();
    this.figures.clusterStopSeconds = this.node.timings.stop ?? -1;
    console.log(`# ${this.name} figures: ${JSON.stringify(this.figures)}`);
  }
}
