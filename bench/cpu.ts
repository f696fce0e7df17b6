// CPU time of a server under test: user + system time of its processes and all their descendants,
// from /proc. Unlike a rate on a shared machine, it depends little on what else runs.
//
// A process's own times cover all its threads (nats-server's goroutines, Node's worker threads);
// its cutime/cstime hold the times of the children it has reaped, so the processes that came and
// went between two samples (Postfix's smtpd, cleanup and smtp) count as well: a living process
// with its own and its reaped children's times, summed over the tree, only ever grows.

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

interface ProcessTimes {
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

let ticksPerSecond: number | undefined;

function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
  if (!(ticksPerSecond > 0)) throw new Error("getconf CLK_TCK gave no clock tick rate");
  return ticksPerSecond;
}

/** Every process's parent and times; a process that exits while /proc is read is left out. */
function readAll(): Map<number, ProcessTimes> {
  const all = new Map<number, ProcessTimes>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // The command name, in parentheses, may itself hold spaces and parentheses: fields start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 4 (ppid) and 14-17 (utime, stime, cutime, cstime) of proc(5), counted from 1 with pid and comm.
    const field = (n: number): number => Number(fields[n - 3]);
    all.set(Number(entry), { ppid: field(4), ticks: field(14) + field(15) + field(16) + field(17) });
  }
  return all;
}

/** The roots and their living descendants, with their ticks. */
function tree(all: Map<number, ProcessTimes>, roots: readonly number[]): Map<number, number> {
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of all) {
    const siblings = children.get(ppid);
    if (siblings) siblings.push(pid);
    else children.set(ppid, [pid]);
  }
  const members = new Map<number, number>();
  const gone = roots.filter((pid) => !all.has(pid));
  if (gone.length > 0) throw new Error(`process ${gone.join(", ")} of the server is not running: its CPU time is lost`);
  const pending = [...roots];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    if (members.has(pid)) continue;
    members.set(pid, all.get(pid)?.ticks ?? 0);
    pending.push(...(children.get(pid) ?? []));
  }
  return members;
}

/**
 * CPU seconds used so far by the processes `roots` and their descendants, living or reaped. A
 * child that exits and is reaped while /proc is read could be counted twice or missed, so the
 * tree is read until two readings in a row hold the same processes.
 */
export function treeCpuSeconds(roots: readonly number[]): number {
  let previous = tree(readAll(), roots);
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = tree(readAll(), roots);
    const same = current.size === previous.size && [...current.keys()].every((pid) => previous.has(pid));
    if (same) return [...current.values()].reduce((sum, ticks) => sum + ticks, 0) / clockTicksPerSecond();
    previous = current;
  }
  throw new Error(`the processes of ${roots.join(", ")} kept changing while their CPU time was read`);
}

/** The pid a daemon wrote to its pid file. */
export function pidFromFile(path: string): number {
  const pid = Number(readFileSync(path, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid in ${path}`);
  return pid;
}

/** The processes that hold a socket listening on this TCP port (a daemon's master holds it, and often its workers). */
export function listeningPids(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st ... inode: st 0A is LISTEN, the port is the hex after the colon.
      const fields = line.trim().split(/\s+/);
      const local = fields[1] ?? "";
      if (fields[3] === "0A" && parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port && fields[9]) inodes.add(`socket:[${fields[9]}]`);
    }
  }
  if (inodes.size === 0) return [];
  // A process that exits, or closes a descriptor, while it is read did not hold the listener then.
  const holdsListener = (pid: string): boolean => {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      return false;
    }
    return fds.some((fd) => {
      try {
        return inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        return false;
      }
    });
  };
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && holdsListener(entry))
    .map(Number);
}
