// Stands in for the kubelet, which a test control plane does not run: copies a ConfigMap's keys
// into files of a directory, as a ConfigMap volume would, so real relay processes load what the
// operator rendered and reload it on change. Files are replaced atomically (write, then rename).

import { readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isNotFound, type ApiClient, type Unstructured } from "../../operator/src/kube/api-client.ts";
import { Resources } from "../../operator/src/kube/resources.ts";

export class ConfigMapSync {
  private timer: NodeJS.Timeout | undefined;
  private syncing = false;
  /** Data last written, to tell a test what the relays see. */
  current: Record<string, string> = {};

  private readonly client: ApiClient;
  private readonly namespace: string;
  private readonly name: string;
  readonly dir: string;

  constructor(client: ApiClient, namespace: string, name: string, dir: string) {
    this.client = client;
    this.namespace = namespace;
    this.name = name;
    this.dir = dir;
  }

  start(intervalMs = 200): void {
    this.timer = setInterval(() => void this.sync(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      let data: Record<string, string> = {};
      try {
        const map = await this.client.get<Unstructured & { data?: Record<string, string> }>(Resources.ConfigMap, this.namespace, this.name);
        data = map.data ?? {};
      } catch (err) {
        if (!isNotFound(err)) return; // Unreachable: like a kubelet, keep the last files.
      }
      for (const [key, value] of Object.entries(data)) {
        if (this.current[key] === value) continue;
        writeFileSync(join(this.dir, `.${key}.tmp`), value);
        renameSync(join(this.dir, `.${key}.tmp`), join(this.dir, key));
      }
      for (const file of readdirSync(this.dir)) {
        if (!file.startsWith(".") && !(file in data)) rmSync(join(this.dir, file));
      }
      this.current = data;
    } finally {
      this.syncing = false;
    }
  }
}
