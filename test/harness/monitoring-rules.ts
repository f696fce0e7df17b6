// Reads the chart's monitoring files (rule groups, dashboard) the way the tests need them: the
// alerts with their annotations, and every metric name an expression uses.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { repoRoot } from "./workspace.ts";

export const monitoringDir = join(repoRoot, "charts/mxwarden/files/monitoring");
export const relayRulesFile = join(monitoringDir, "relay-rules.yaml");
export const operatorRulesFile = join(monitoringDir, "operator-rules.yaml");
export const dashboardFile = join(monitoringDir, "mxwarden-dashboard.json");

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleGroups {
  groups: Array<{ name: string; interval?: string; rules: Rule[] }>;
}

export function readRuleGroups(file: string): RuleGroups {
  return parse(readFileSync(file, "utf8")) as RuleGroups;
}

export function rulesOf(file: string): Rule[] {
  return readRuleGroups(file).groups.flatMap((group) => group.rules);
}

/**
 * Exported metric names an expression reads: identifiers with the mxwarden_ prefix (recording
 * rules are named mxwarden:…, with colons, and are not exported by any process).
 */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\bmxwarden_[a-z0-9_]+/g) ?? [])];
}

/** Recording rule names (mxwarden:…) an expression reads. */
export function recordingNames(expr: string): string[] {
  return [...new Set(expr.match(/\bmxwarden:[a-z0-9_:]+/g) ?? [])];
}

/** Every `expr` of the dashboard's panels. */
export function dashboardExpressions(): string[] {
  const exprs: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === "object" && value !== null) {
      for (const [key, child] of Object.entries(value)) {
        if (key === "expr" && typeof child === "string") exprs.push(child);
        else walk(child);
      }
    }
  };
  walk(JSON.parse(readFileSync(dashboardFile, "utf8")));
  return exprs;
}

export const promtoolTestFiles = (): string[] =>
  readdirSync(join(repoRoot, "test/promtool"))
    .filter((name) => name.endsWith(".yaml"))
    .map((name) => join(repoRoot, "test/promtool", name));
