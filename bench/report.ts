// The benchmark's output: each figure the median of its repeated runs, the ratio mxwarden / peer
// computed pair by pair, as a text table for the terminal and a Markdown table for
// docs/benchmarks.md, with a description of the machine the figures come from.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { findNatsServer } from "../relay/src/queue/index.ts";
import { harakaVersion } from "./servers/haraka.ts";
import { ALL_SERVERS, type ServerName } from "./scenarios.ts";

export interface Figure {
  scenario: string;
  name: string;
  unit: string;
  /** Which way is better: decides nothing in the figures, only how a reader reads the ratio. */
  better: "higher" | "lower";
  /** One value per repeated run, per server measured. */
  runs: Partial<Record<ServerName, number[]>>;
}

export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? NaN) : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2;
}

const PEERS = ALL_SERVERS.filter((server) => server !== "mxwarden");

function format(value: number): string {
  if (Number.isNaN(value)) return "–";
  if (value === Infinity) return "unfinished";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function ratio(figure: Figure, peer: ServerName): string {
  const mine = median(figure.runs.mxwarden ?? []);
  const theirs = median(figure.runs[peer] ?? []);
  // A server that did not finish has no figure to divide by: say so instead of 0× or ∞.
  if (theirs === Infinity) return `${peer} unfinished`;
  if (mine === Infinity) return "mxwarden unfinished";
  const value = mine / theirs;
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : "–";
}

function rows(figures: Figure[]): string[][] {
  return figures.map((figure) => [
    figure.scenario,
    `${figure.name} (${figure.unit}, ${figure.better} is better)`,
    ...ALL_SERVERS.map((server) => format(median(figure.runs[server] ?? []))),
    ...PEERS.map((peer) => ratio(figure, peer)),
  ]);
}

const HEADER = ["scenario", "figure", ...ALL_SERVERS, ...PEERS.map((peer) => `mxwarden/${peer}`)];

export function textTable(figures: Figure[]): string {
  const all = [HEADER, ...rows(figures)];
  const widths = HEADER.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)));
  return all
    .map((row) => row.map((cell, column) => (column < 2 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join("  "))
    .join("\n");
}

export function markdownTable(figures: Figure[]): string {
  const line = (cells: string[]): string => `| ${cells.join(" | ")} |`;
  return [line(HEADER), line(HEADER.map((_, column) => (column < 2 ? "---" : "---:"))), ...rows(figures).map(line)].join("\n");
}

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    const output = execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
    return pattern.exec(output)?.[1] ?? output.trim().split("\n")[0] ?? "?";
  } catch {
    return "not installed";
  }
}

/** CPU, cores, memory, kernel and the version of every program in the comparison. */
export function machineDescription(): string[] {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpus()[0]?.model ?? "?";
  let haraka: string;
  try {
    haraka = harakaVersion();
  } catch {
    haraka = "not installed";
  }
  return [
    `CPU: ${cpuModel}, ${cpus().length} cores`,
    `RAM: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `Kernel: Linux ${release()}`,
    `Node.js ${process.versions.node}; nats-server ${version(findNatsServer(), ["--version"], /\bv(\d\S*)/)}`,
    `Postfix ${version("/usr/sbin/postconf", ["-d", "-h", "mail_version"], /(\S+)/)}; Haraka ${haraka}`,
    `clamd ${version("clamd", ["--version"], /ClamAV (\S+?)\//)}; rspamd ${version("rspamd", ["--version"], /(\d+\.\d+(?:\.\d+)?)/)}`,
  ];
}
