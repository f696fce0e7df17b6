// The plugin's only way to the API server: the user's own kubectl, found on PATH as kubectl runs
// plugins, with the user's flags. Authentication, kubeconfig handling and the audit trail are
// therefore exactly the user's, and the plugin needs no credentials of its own.

import { execFile } from "node:child_process";
import type { RelayQueueRequest } from "#api";

export class KubectlError extends Error {
  override name = "KubectlError";
}

export class Kubectl {
  private readonly flags: string[];
  private readonly command: string;

  constructor(flags: string[], command = "kubectl") {
    this.flags = flags;
    this.command = command;
  }

  /** The user's name as the API server authenticates it (SelfSubjectReview). */
  async whoami(): Promise<string> {
    const review = (await this.json(["auth", "whoami", "-o", "json"])) as { status?: { userInfo?: { username?: string } } };
    const username = review.status?.userInfo?.username;
    if (!username) throw new KubectlError("kubectl auth whoami named no user");
    return username;
  }

  async create(request: RelayQueueRequest): Promise<RelayQueueRequest> {
    return (await this.json(["create", "-f", "-", "-o", "json"], JSON.stringify(request))) as RelayQueueRequest;
  }

  async getRequest(name: string): Promise<RelayQueueRequest> {
    return (await this.json(["get", "relayqueuerequests.mxwarden.io", name, "-o", "json"])) as RelayQueueRequest;
  }

  /** Names of the RelayDomains in the namespace. */
  async domainNames(): Promise<string[]> {
    const list = (await this.json(["get", "relaydomains.mxwarden.io", "-o", "json"])) as { items?: Array<{ metadata: { name: string } }> };
    return (list.items ?? []).map((item) => item.metadata.name);
  }

  private json(args: string[], input?: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const child = execFile(this.command, [...this.flags, ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          const text = stderr.trim() || err.message;
          reject(new KubectlError(text));
          return;
        }
        try {
          resolve(JSON.parse(stdout));
        } catch {
          reject(new KubectlError(`kubectl ${args.slice(0, 2).join(" ")} printed no JSON: ${stdout.slice(0, 200)}`));
        }
      });
      if (input !== undefined) child.stdin?.end(input);
      else child.stdin?.end();
    });
  }
}
