// CPU and memory of a pod on the local node (test/harness/kube-node.ts), read on the host: the
// kubelet runs with the cgroupfs driver, so a pod is the directory `pod<uid>` under a controller's
// `kubepods` tree, and its processes are host processes whose /proc the bench can read. RSS is
// summed from /proc (the processes' own pages), not the cgroup's usage, which counts page cache.

import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const CGROUP_ROOT = "/sys/fs/cgroup";

export interface PodUsage {
  /** CPU seconds the pod's containers used since they started. */
  cpuSeconds: number;
  /** Resident memory of the pod's processes now, MiB. */
  rssMiB: number;
}

/** The directory of the pod's cgroup under `controller`, or undefined when it has none there. */
function podCgroup(controller: string, uid: string): string | undefined {
  const wanted = `pod${uid}`;
  const search = (dir: string, depth: number): string | undefined => {
    if (depth > 3 || !existsSync(dir)) return undefined;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      if (entry.name === wanted) return join(dir, entry.name);
      const found = entry.name.startsWith("pod") ? undefined : search(join(dir, entry.name), depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  return search(join(CGROUP_ROOT, controller, "kubepods"), 0);
}

/** Every pid in a cgroup directory and the ones below it (the pod's containers). */
function cgroupPids(dir: string): number[] {
  const pids = readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) pids.push(...cgroupPids(join(dir, entry.name)));
  return pids;
}

function rssKiB(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(match?.[1] ?? 0);
  } catch {
    return 0; // exited while read
  }
}

export function podUsage(uid: string): PodUsage {
  const cpu = podCgroup("cpuacct", uid) ?? podCgroup("cpu,cpuacct", uid);
  const memory = podCgroup("memory", uid) ?? cpu;
  if (!cpu || !memory) throw new Error(`no cgroup for pod ${uid} under ${CGROUP_ROOT}/*/kubepods`);
  const cpuSeconds = Number(readFileSync(join(cpu, "cpuacct.usage"), "utf8").trim()) / 1e9;
  const rss = cgroupPids(memory).reduce((sum, pid) => sum + rssKiB(pid), 0);
  return { cpuSeconds: Math.round(cpuSeconds * 10) / 10, rssMiB: Math.round(rss / 1024) };
}
