// The chart's Prometheus rules through the real promtool (Debian package prometheus): the files
// are valid, every alert fires on the series written for it and stays quiet on the others
// (test/promtool/*.yaml), and every alert tells the person paged what happened and where the runbook is.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { operatorRulesFile, promtoolTestFiles, relayRulesFile, rulesOf } from "../harness/monitoring-rules.ts";
import { repoRoot } from "../harness/workspace.ts";

const ruleFiles = [relayRulesFile, operatorRulesFile];
const alerts = ruleFiles.flatMap((file) =>
  rulesOf(file)
    .filter((rule) => rule.alert !== undefined)
    .map((rule) => ({ ...rule, file })),
);

function promtool(args: string[]): string {
  try {
    return execFileSync("promtool", args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(" ")} failed:\n${failed.stdout ?? ""}${failed.stderr ?? ""}`);
  }
}

interface PromtoolTests {
  rule_files: string[];
  tests: Array<{ name: string; alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
}

describe("Prometheus rules", () => {
  it("pass promtool check rules", () => {
    const out = promtool(["check", "rules", ...ruleFiles]);
    assert.match(out, /SUCCESS/);
  });

  it("pass promtool test rules", () => {
    const out = promtool(["test", "rules", ...promtoolTestFiles()]);
    assert.doesNotMatch(out, /FAILED/);
  });

  it("have, for every alert, a promtool case where it fires and one where it must stay quiet", () => {
    const firing = new Set<string>();
    const quiet = new Set<string>();
    for (const file of promtoolTestFiles()) {
      const doc = parse(readFileSync(file, "utf8")) as PromtoolTests;
      for (const test of doc.tests) {
        for (const check of test.alert_rule_test ?? []) (check.exp_alerts?.length ? firing : quiet).add(check.alertname);
      }
    }
    for (const { alert } of alerts) {
      assert.ok(firing.has(alert ?? ""), `${alert}: no promtool case where it fires`);
      assert.ok(quiet.has(alert ?? ""), `${alert}: no promtool case where it must not fire`);
    }
  });

  it("give every alert a severity, summary, description and a runbook in docs/runbooks", () => {
    assert.ok(alerts.length >= 15, `only ${alerts.length} alerts`);
    for (const { alert, labels, annotations, file } of alerts) {
      const where = `${alert} (${basename(file)})`;
      assert.match(labels?.severity ?? "", /^(critical|warning|info)$/, `${where}: severity`);
      assert.ok((annotations?.summary ?? "").length > 10, `${where}: summary`);
      assert.ok((annotations?.description ?? "").length > 20, `${where}: description`);
      const url = annotations?.runbook_url ?? "";
      const match = /\/(docs\/runbooks\/[A-Za-z]+\.md)$/.exec(url);
      assert.ok(match?.[1], `${where}: runbook_url ${url} does not point into docs/runbooks`);
      assert.equal(basename(match[1], ".md"), alert, `${where}: runbook named after the alert`);
      const runbook = join(repoRoot, match[1]);
      assert.ok(existsSync(runbook), `${where}: ${match[1]} missing`);
      assert.match(readFileSync(runbook, "utf8"), new RegExp(`^# ${alert}\\n`), `${where}: runbook title`);
    }
  });

  it("name alerts uniquely", () => {
    const names = alerts.map((a) => a.alert);
    assert.deepEqual(names, [...new Set(names)]);
  });
});
