// The chart's monitoring templates rendered by the real helm: the PrometheusRule carries the
// operator rule file unchanged and only where its API exists; the dashboard ConfigMap carries the
// JSON for Grafana's sidecar; and the dashboard only reads recording rules that exist.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import {
  dashboardExpressions,
  dashboardFile,
  operatorRulesFile,
  readRuleGroups,
  recordingNames,
  relayRulesFile,
  rulesOf,
} from "../harness/monitoring-rules.ts";
import { repoRoot } from "../harness/workspace.ts";

interface Rendered {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: { groups?: unknown };
  data?: Record<string, string>;
}

function helmTemplate(args: string[]): Rendered[] {
  const out = execFileSync(join(repoRoot, ".tools/bin/helm"), ["template", "mxw", join(repoRoot, "charts/mxwarden"), ...args], { encoding: "utf8" });
  return parseAllDocuments(out)
    .map((doc) => doc.toJS() as Rendered | null)
    .filter((doc): doc is Rendered => doc !== null);
}

const both = ["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true", "--set", "serviceMonitor.enabled=true"];

describe("monitoring in the chart", () => {
  it("renders nothing by default", () => {
    const docs = helmTemplate(["--api-versions", "monitoring.coreos.com/v1"]);
    assert.equal(docs.filter((doc) => doc.kind === "PrometheusRule").length, 0);
    assert.equal(docs.filter((doc) => doc.metadata.labels?.grafana_dashboard === "1").length, 0);
  });

  it("installs the operator rules as a PrometheusRule only where the Prometheus operator's API exists", () => {
    const rules = helmTemplate([...both, "--api-versions", "monitoring.coreos.com/v1"]).filter((doc) => doc.kind === "PrometheusRule");
    assert.equal(rules.length, 1);
    assert.deepEqual(rules[0]?.spec?.groups, readRuleGroups(operatorRulesFile).groups);
    assert.equal(helmTemplate(both).filter((doc) => doc.kind === "PrometheusRule").length, 0);
  });

  it("refuses the operator's alerts without the ServiceMonitor that feeds them", () => {
    assert.throws(() => helmTemplate(["--set", "prometheusRule.enabled=true"]), /prometheusRule\.enabled needs serviceMonitor\.enabled/);
  });

  it("hands the relays' rules to the operator, which installs them next to each site's relays", () => {
    const docs = helmTemplate([]);
    const map = docs.find((doc) => doc.kind === "ConfigMap" && doc.metadata.name === "mxw-mxwarden-operator-relay-rules");
    assert.deepEqual(parse(map?.data?.["relay-rules.yaml"] ?? ""), readRuleGroups(relayRulesFile));
    assert.equal(helmTemplate(["--set", "prometheusRule.relays=false"]).filter((doc) => doc.metadata.name === "mxw-mxwarden-operator-relay-rules").length, 0);
  });

  it("ships the dashboard in a ConfigMap Grafana's sidecar discovers", () => {
    const maps = helmTemplate(both).filter((doc) => doc.kind === "ConfigMap" && doc.metadata.labels?.grafana_dashboard === "1");
    assert.equal(maps.length, 1);
    const json = maps[0]?.data?.["mxwarden-dashboard.json"] ?? "";
    assert.deepEqual(JSON.parse(json), JSON.parse(readFileSync(dashboardFile, "utf8")));
  });

  it("has a dashboard that reads only recording rules the rule files define", () => {
    const recorded = new Set(
      [relayRulesFile, operatorRulesFile].flatMap((file) =>
        rulesOf(file)
          .map((rule) => rule.record)
          .filter((name) => name !== undefined),
      ),
    );
    const used = dashboardExpressions().flatMap(recordingNames);
    assert.ok(used.length > 0);
    for (const name of used) assert.ok(recorded.has(name), `dashboard reads ${name}, which no rule records`);
  });
});
