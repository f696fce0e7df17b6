// Linux network namespaces for the fault suite (root only): namespaces, veth links between them,
// cutting and degrading a link, and processes run inside a namespace. Everything this module
// creates carries NETNS_PREFIX, so that a run can remove what a killed earlier run left behind.

import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { TestProcess } from "./child.ts";
import { eventually } from "./workspace.ts";

const run = promisify(execFile);

/** Every namespace, veth and /etc/netns directory of the fault suite starts with this. */
export const NETNS_PREFIX = "mxwf-";

/** Why the suite cannot run here, or undefined when it can (root, iproute2, iptables). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the fault suite creates network namespaces: it must run as root";
  for (const tool of ["/usr/sbin/ip", "/usr/sbin/iptables"]) if (!existsSync(tool)) return `${tool} missing`;
  return undefined;
}

async function command(file: string, args: string[]): Promise<string> {
  try {
    return (await run(file, args, { timeout: 30_000 })).stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? "";
    throw new Error(`${file} ${args.join(" ")}: ${String((err as Error).message)} ${stderr}`.trim());
  }
}

export function ip(...args: string[]): Promise<string> {
  return command("/usr/sbin/ip", args);
}

/** Run a command inside a namespace and return its standard output. */
export function inNamespace(ns: string, file: string, args: string[]): Promise<string> {
  return ip("netns", "exec", ns, file, ...args);
}

/**
 * A long-running process inside a namespace. `ip netns exec` execs the command in place, so the
 * process's pid is the command's own: kill -9 reaches it, not a wrapper.
 */
export function spawnInNamespace(
  ns: string,
  file: string,
  args: string[],
  options: { logFile?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): TestProcess {
  return new TestProcess("/usr/sbin/ip", ["netns", "exec", ns, file, ...args], options);
}

export class Namespace {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /**
   * A fresh namespace with loopback up and IP forwarding as asked. `resolver`, when given, is
   * written to /etc/netns/NAME/resolv.conf, which `ip netns exec` mounts over /etc/resolv.conf.
   */
  static async create(name: string, options: { forwarding?: boolean; resolver?: string } = {}): Promise<Namespace> {
    if (!name.startsWith(NETNS_PREFIX)) throw new Error(`namespace ${name} must start with ${NETNS_PREFIX}`);
    await ip("netns", "add", name);
    const ns = new Namespace(name);
    if (options.resolver) {
      const etc = join("/etc/netns", name);
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, "resolv.conf"), `nameserver ${options.resolver}\noptions timeout:1 attempts:2\n`);
    }
    await ns.exec("/usr/sbin/ip", ["link", "set", "lo", "up"]);
    if (options.forwarding) await ns.exec("/usr/sbin/sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
    return ns;
  }

  exec(file: string, args: string[]): Promise<string> {
    return inNamespace(this.name, file, args);
  }

  spawn(file: string, args: string[], options: { logFile?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): TestProcess {
    return spawnInNamespace(this.name, file, args, options);
  }

  ip(...args: string[]): Promise<string> {
    return this.exec("/usr/sbin/ip", args);
  }

  iptables(...args: string[]): Promise<string> {
    return this.exec("/usr/sbin/iptables", ["-w", ...args]);
  }

  /** The pids of every process in this namespace. */
  async pids(): Promise<number[]> {
    return pidsIn(this.name);
  }
}

export interface LinkEnd {
  ns: Namespace;
  /** Interface name inside that namespace (at most 15 characters). */
  device: string;
  /** Address with prefix length, e.g. 10.77.1.1/24; more addresses: `extra`. */
  address: string;
  extra?: string[];
}

/** A veth pair between two namespaces: a cable the test can pull out and plug back in. */
export class Link {
  readonly a: LinkEnd;
  readonly b: LinkEnd;
  /** Routes through this link ("default via ..."), put back when it heals: the kernel drops them when it goes down. */
  private readonly routes: Array<{ ns: Namespace; args: string[] }> = [];

  private constructor(a: LinkEnd, b: LinkEnd) {
    this.a = a;
    this.b = b;
  }

  static async create(a: LinkEnd, b: LinkEnd): Promise<Link> {
    // Created in the root namespace under unique temporary names, then moved and renamed.
    const tmpA = `${NETNS_PREFIX}${a.ns.name.slice(NETNS_PREFIX.length, NETNS_PREFIX.length + 3)}${Math.random().toString(36).slice(2, 7)}`;
    const tmpB = `${tmpA.slice(0, 13)}p`;
    await ip("link", "add", tmpA, "type", "veth", "peer", "name", tmpB);
    for (const [tmp, end] of [
      [tmpA, a],
      [tmpB, b],
    ] as const) {
      await ip("link", "set", tmp, "netns", end.ns.name);
      await end.ns.ip("link", "set", tmp, "name", end.device);
      for (const address of [end.address, ...(end.extra ?? [])]) await end.ns.ip("addr", "add", address, "dev", end.device);
      await end.ns.ip("link", "set", end.device, "up");
    }
    return new Link(a, b);
  }

  /** Pull the cable: both ends go down, their routes go with them, open connections stall. */
  async cut(): Promise<void> {
    await this.a.ns.ip("link", "set", this.a.device, "down");
    await this.b.ns.ip("link", "set", this.b.device, "down");
  }

  async heal(): Promise<void> {
    await this.a.ns.ip("link", "set", this.a.device, "up");
    await this.b.ns.ip("link", "set", this.b.device, "up");
    for (const { ns, args } of this.routes) await ns.ip("route", "replace", ...args);
  }

  /** Add a route through this link in `ns`, e.g. route(ns, "default", "via", "10.77.1.1"). */
  async route(ns: Namespace, ...args: string[]): Promise<void> {
    this.routes.push({ ns, args });
    await ns.ip("route", "add", ...args);
  }

  /**
   * Drop this share of the packets leaving each end (so both directions lose it). Real packet
   * loss in the kernel: iptables' statistic match, since this kernel has no netem qdisc.
   */
  async loss(probability: number): Promise<void> {
    for (const end of [this.a, this.b]) {
      await end.ns.iptables("-A", "OUTPUT", "-o", end.device, "-m", "statistic", "--mode", "random", "--probability", String(probability), "-j", "DROP");
      await end.ns.iptables("-A", "FORWARD", "-o", end.device, "-m", "statistic", "--mode", "random", "--probability", String(probability), "-j", "DROP");
    }
  }
}

async function pidsIn(ns: string): Promise<number[]> {
  const out = await ip("netns", "pids", ns).catch(() => "");
  return out
    .split(/\s+/)
    .filter((s) => s !== "")
    .map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Remove every namespace of the suite: kill -9 the processes inside it (they are the suite's own,
 * started in it), then delete it and its /etc/netns directory. Safe to call when nothing is left.
 */
export async function removeNamespaces(): Promise<void> {
  const names = (await ip("netns", "list"))
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(NETNS_PREFIX));
  for (const name of names) {
    const pids = await pidsIn(name);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await eventually(`the processes in ${name} to exit`, () => pids.every((pid) => !alive(pid)), 10_000, 50);
    await ip("netns", "del", name);
  }
  // veth pairs half-made by a run killed before it moved them into namespaces.
  const links = await ip("-o", "link", "show").catch(() => "");
  for (const match of links.matchAll(/^\d+: ([^:@]+)[:@]/gm)) {
    const device = match[1] ?? "";
    if (device.startsWith(NETNS_PREFIX)) await ip("link", "del", device).catch(() => undefined);
  }
  if (existsSync("/etc/netns")) {
    for (const entry of readdirSync("/etc/netns")) {
      if (entry.startsWith(NETNS_PREFIX)) rmSync(join("/etc/netns", entry), { recursive: true, force: true });
    }
  }
}
