// The chart's relay rules in a real Prometheus that scrapes two real relay processes: cutting the
// primary raises MxwardenPrimaryUnreachable, killing the relays raises MxwardenRelayDown and
// MxwardenRelaysUnavailable, and every one of them resolves once primary and relays are back.
// States are read from Prometheus's HTTP API (/api/v1/alerts), polled.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { stringify } from "yaml";
import type { TestNatsServer } from "../harness/nats-server.ts";
import { readRuleGroups, relayRulesFile } from "../harness/monitoring-rules.ts";
import { TestPrometheus, type PrometheusAlert } from "../harness/prometheus.ts";
import { RelayProcess, writeDomains } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import type { TestPrimary } from "../harness/test-primary.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

/** The scrape job name the ServiceMonitor the operator renders gives the relays (its Service's name). */
const RELAY_JOB = "mxwarden-relay-metrics";

/**
 * The relay rules with every `for:` shortened to 3 s: the production durations (2 to 30 minutes)
 * are too long for a test, and 3 s at a 1 s evaluation interval still shows the pending state.
 * Expressions, labels and annotations are the chart's, unchanged.
 */
function testFriendlyRules(path: string): void {
  const doc = readRuleGroups(relayRulesFile);
  for (const group of doc.groups) for (const rule of group.rules) if (rule.for !== undefined) rule.for = "3s";
  writeFileSync(path, stringify(doc));
}

describe("alerts in a real Prometheus", () => {
  const dir = tempDir("prometheus-alerts");
  let stopStack: RelayStack["stop"] | undefined;
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let prometheus: TestPrometheus;
  const relays: RelayProcess[] = [];
  const relayPorts: Array<{ smtp: number; metrics: number }> = [];
  /** Every state an alert was seen in, by alertname. */
  const seen = new Map<string, Set<string>>();

  const startRelay = async (index: number): Promise<RelayProcess> => {
    const ports = relayPorts[index];
    if (!ports) throw new Error(`no ports for relay ${index}`);
    const relayDir = join(dir.path, `relay${index}`);
    mkdirSync(relayDir, { recursive: true });
    const relay = await RelayProcess.start({
      dir: relayDir,
      domainsPath: join(dir.path, "domains.yaml"),
      nats: nats.url,
      smtpPort: ports.smtp,
      hostname: `relay${index}.test`,
      // Fixed metrics ports: Prometheus's static targets must find a restarted relay again.
      args: ["--metrics", `127.0.0.1:${ports.metrics}`, "--probe-interval", "1s"],
    });
    await relay.ready();
    return relay;
  };

  const alertsNamed = async (name: string): Promise<PrometheusAlert[]> => {
    const found = (await prometheus.alerts()).filter((alert) => alert.labels.alertname === name);
    for (const alert of found) {
      const states = seen.get(name) ?? new Set<string>();
      states.add(alert.state);
      seen.set(name, states);
    }
    return found;
  };

  const firing = async (name: string, count = 1): Promise<PrometheusAlert[] | undefined> => {
    const found = (await alertsNamed(name)).filter((alert) => alert.state === "firing");
    return found.length >= count ? found : undefined;
  };

  before(async () => {
    // The relays are this test's own: they restart on fixed ports for Prometheus's static targets.
    ({ nats, primary, stop: stopStack } = await startRelayStack({ dir: dir.path, nats: true, primary: true }));
    writeDomains(join(dir.path, "domains.yaml"), [
      { domain: "example.com", primary: { hosts: [{ host: "127.0.0.1", port: primary.port }] }, queue: { retry: { initialBackoff: "1s", maxBackoff: "2s" } } },
    ]);
    for (let i = 0; i < 2; i++) relayPorts.push({ smtp: await freePort(), metrics: await freePort() });
    for (let i = 0; i < 2; i++) relays.push(await startRelay(i));
    const rules = join(dir.path, "relay-rules.test-friendly.yaml");
    testFriendlyRules(rules);
    prometheus = await TestPrometheus.start(
      join(dir.path, "prometheus"),
      {
        [RELAY_JOB]: relayPorts.map((ports) => `127.0.0.1:${ports.metrics}`),
      },
      [rules],
    );
  });

  after(async () => {
    await prometheus?.stop();
    for (const relay of relays) await relay.stop();
    await stopStack?.();
  });

  it("scrapes both relays, loads the rules and raises nothing while all is well", async () => {
    await eventually("both relays scraped", async () => (await prometheus.query(`up{job="${RELAY_JOB}"} == 1`)).length === 2, 30_000, 250);
    // Recorded even without traffic (0/0 is NaN, not absent): the rules run against real metrics.
    await eventually(
      "the recording rules evaluated",
      async () =>
        (await prometheus.query("mxwarden:acceptance_errors:ratio_rate5m")).length === 1 &&
        (await prometheus.query("mxwarden:destinations_unreachable:max")).length === 1,
      30_000,
      250,
    );
    // Before the first scrape no relay existed for Prometheus: that pending alert clears itself.
    await eventually("start-up alerts cleared", async () => (await prometheus.alerts()).length === 0, 30_000, 250);
    // A few evaluations with everything up: no alert of ours may be pending or firing.
    const quietUntil = Date.now() + 5000;
    while (Date.now() < quietUntil) {
      const active = (await prometheus.alerts()).map((alert) => alert.labels.alertname);
      assert.deepEqual(active, []);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });

  it("cutting the primary raises MxwardenPrimaryUnreachable, pending before firing", async () => {
    await primary.close();
    const sent = await sendMail(relays[0]?.smtpPort ?? 0, { from: "a@client.test", to: ["x@example.com"], body: simpleMessage("held", "held-1") });
    assert.equal(sent.data?.code, 250);
    const [alert] = (await eventually("MxwardenPrimaryUnreachable firing", () => firing("MxwardenPrimaryUnreachable"), 60_000, 200)) ?? [];
    assert.equal(alert?.labels.severity, "info");
    assert.match(alert?.annotations.runbook_url ?? "", /docs\/runbooks\/MxwardenPrimaryUnreachable\.md$/);
    assert.ok(seen.get("MxwardenPrimaryUnreachable")?.has("pending"), "went through pending first");
  });

  it("killing the relays raises MxwardenRelayDown for each and MxwardenRelaysUnavailable", async () => {
    for (const relay of relays.splice(0)) await relay.kill9();
    const down = await eventually("MxwardenRelayDown firing for both relays", () => firing("MxwardenRelayDown", 2), 60_000, 200);
    assert.deepEqual(down.map((alert) => alert.labels.instance).sort(), relayPorts.map((ports) => `127.0.0.1:${ports.metrics}`).sort());
    const [unavailable] = await eventually("MxwardenRelaysUnavailable firing", () => firing("MxwardenRelaysUnavailable"), 60_000, 200);
    assert.equal(unavailable?.labels.severity, "critical");
    assert.ok(seen.get("MxwardenRelayDown")?.has("pending"), "went through pending first");
  });

  it("everything resolves once the primary and the relays are back, and the held mail arrives", async () => {
    await primary.listen();
    for (let i = 0; i < 2; i++) relays.push(await startRelay(i));
    await primary.waitForMessages(1, 60_000);
    await eventually("no alert pending or firing", async () => (await prometheus.alerts()).length === 0, 60_000, 250);
  });
});
