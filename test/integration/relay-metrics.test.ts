// The metrics the SLOs and alerts are built on, read from a real relay's /metrics: the acceptance
// SLO's transaction counters, the no-mail-lost identity, dependency health and the certificate's
// expiry. The last test holds the rules and the dashboard to the names the relay really exports.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { join } from "node:path";
import { OperatorMetrics } from "../../operator/src/metrics.ts";
import type { TestClamd } from "../harness/clamd.ts";
import { dashboardExpressions, metricNames, operatorRulesFile, relayRulesFile, rulesOf } from "../harness/monitoring-rules.ts";
import type { TestNatsServer } from "../harness/nats-server.ts";
import type { RelayProcess } from "../harness/relay-process.ts";
import { startRelayStack, type RelayStack } from "../harness/relay-stack.ts";
import { SmtpDialogue, sendMail, simpleMessage } from "../harness/smtp-dialogue.ts";
import type { TestPrimary } from "../harness/test-primary.ts";
import { selfSignedCertificate } from "../harness/tls-certificate.ts";
import { eventually, freePort, tempDir } from "../harness/workspace.ts";

/** Sample names an exposition declares: each `# TYPE`, and a histogram's _bucket, _count and _sum. */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name = "", type] = match;
    names.add(name);
    if (type === "histogram") for (const suffix of ["_bucket", "_count", "_sum"]) names.add(name + suffix);
  }
  return names;
}

describe("relay metrics for the SLOs", () => {
  const dir = tempDir("relay-metrics");
  let stopStack: RelayStack["stop"] | undefined;
  let nats: TestNatsServer;
  let primary: TestPrimary;
  let clamd: TestClamd;
  let relay: RelayProcess;

  before(async () => {
    const tls = selfSignedCertificate(dir.path, "backup-mx.test", 20);
    // A real clamd, and an rspamd address where nothing listens: one engine up, one down.
    const deadRspamd = `http://127.0.0.1:${await freePort()}`;
    ({
      nats,
      clamd,
      primary,
      relay,
      stop: stopStack,
    } = await startRelayStack({ dir: dir.path, nats: true, clamd: true, primary: true }, (peers) => {
      const hosts = [{ host: "127.0.0.1", port: peers.primary.port }];
      return {
        domains: [
          { domain: "example.com", primary: { hosts }, antispam: { onError: "accept" } },
          // rspamd is down and this domain wants a score: its mail gets 451, a failure of ours.
          { domain: "strict.example", primary: { hosts } },
        ],
        args: ["--rspamd", deadRspamd, "--tls-cert", tls.certPath, "--tls-key", tls.keyPath],
      };
    }));
  });

  after(() => stopStack?.());

  it("counts transactions, and as failed only those the relay failed (queue away), not policy refusals", async () => {
    const accepted = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@example.com"], body: simpleMessage("one", "tx-1") });
    assert.equal(accepted.data?.code, 250);
    // Not a configured domain: refused by policy, not a transaction of ours at all.
    const denied = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@elsewhere.test"], body: simpleMessage("two", "tx-2") });
    assert.equal(denied.rcpts[0]?.code, 550);
    assert.equal(await relay.metric("mxwarden_smtp_transactions_total"), 1);
    // Present at zero before the first failure, so the SLO ratio is 0 rather than empty.
    assert.match(await relay.metricsText(), /^mxwarden_smtp_transactions_failed_total\{cause="internal_error"\} 0$/m);
    assert.equal(await relay.metric("mxwarden_smtp_transactions_failed_total", 'cause="queue_unavailable"'), 0);
    const unscored = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@strict.example"], body: simpleMessage("unscored", "tx-u") });
    assert.equal(unscored.data?.code, 451);
    assert.equal(await relay.metric("mxwarden_smtp_transactions_total"), 2);
    assert.equal(await relay.metric("mxwarden_smtp_transactions_failed_total", 'cause="filter_unavailable"'), 1);

    await nats.pause();
    try {
      await eventually("relay to notice the queue is gone", async () => (await relay.metric("mxwarden_queue_up")) === 0);
      const failed = await sendMail(relay.smtpPort, { from: "a@client.test", to: ["x@example.com"], body: simpleMessage("three", "tx-3") });
      assert.equal(failed.mail.code, 451);
      assert.equal(await relay.metric("mxwarden_smtp_transactions_total"), 3);
      assert.equal(await relay.metric("mxwarden_smtp_transactions_failed_total", 'cause="queue_unavailable"'), 1);
    } finally {
      await nats.resume();
    }
    await relay.ready();
  });

  it("keeps the no-mail-lost identity: accepted + DSNs queued = jobs completed + jobs queued", async () => {
    await primary.waitForMessages(1);
    const sum = async (name: string): Promise<number> => {
      let total = 0;
      for (const line of (await relay.metricsText()).split("\n"))
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
      return total;
    };
    await eventually("the identity to balance with an empty queue", async () => {
      const accepted = (await relay.metric("mxwarden_messages_accepted_total")) + (await relay.metric("mxwarden_dsns_queued_total"));
      const completed = await sum("mxwarden_queue_jobs_completed_total");
      const queued = await sum("mxwarden_queue_messages");
      return accepted === 1 && completed === 1 && queued === 0;
    });
    assert.equal(await relay.metric("mxwarden_queue_jobs_completed_total", 'kind="relay"'), 1);
  });

  it("probes NATS, clamd and rspamd and publishes whether each answers and how fast", async () => {
    await eventually(
      "nats and clamd up, rspamd down",
      async () =>
        (await relay.metric("mxwarden_dependency_up", 'dependency="nats"')) === 1 &&
        (await relay.metric("mxwarden_dependency_up", 'dependency="clamd"')) === 1 &&
        (await relay.metricsText()).includes('mxwarden_dependency_up{dependency="rspamd"} 0'),
    );
    assert.ok((await relay.metric("mxwarden_dependency_check_duration_seconds_count", 'dependency="clamd"')) >= 1);
    await clamd.stop();
    await eventually("clamd down", async () => (await relay.metricsText()).includes('mxwarden_dependency_up{dependency="clamd"} 0'), 20_000);
  });

  it("exports the STARTTLS certificate's expiry time", async () => {
    const notAfter = Date.parse(new X509Certificate(readFileSync(join(dir.path, "cert.pem"))).validTo) / 1000;
    assert.equal(await relay.metric("mxwarden_tls_certificate_expiry_timestamp_seconds"), notAfter);
    const daysLeft = (notAfter - Date.now() / 1000) / 86400;
    assert.ok(daysLeft > 19 && daysLeft <= 20, `${daysLeft} days left`);
  });

  it("counts STARTTLS handshakes that succeed and those that fail", async () => {
    const good = await SmtpDialogue.open(relay.smtpPort);
    await good.dialogue.command("EHLO client.test");
    assert.equal((await good.dialogue.startTls("backup-mx.test")).code, 220);
    assert.equal((await good.dialogue.command("EHLO client.test")).code, 250);
    await good.dialogue.quit();
    await eventually("one handshake counted as a success", async () => (await relay.metric("mxwarden_tls_handshakes_total", 'result="success"')) === 1);
    // A client that says STARTTLS and then speaks plain text.
    const bad = await SmtpDialogue.open(relay.smtpPort);
    await bad.dialogue.command("EHLO client.test");
    assert.equal((await bad.dialogue.command("STARTTLS")).code, 220);
    bad.dialogue.write("this is not a TLS ClientHello\r\n".repeat(4));
    await eventually("one handshake counted as a failure", async () => (await relay.metric("mxwarden_tls_handshakes_total", 'result="failure"')) === 1);
    bad.dialogue.destroy();
    assert.equal(await relay.metric("mxwarden_tls_handshakes_total", 'result="success"'), 1);
  });

  it("exports every metric the rules and the dashboard read (a rename breaks this test, not the alerting)", async () => {
    const exprs = [...[relayRulesFile, operatorRulesFile].flatMap((file) => rulesOf(file).map((rule) => rule.expr)), ...dashboardExpressions()];
    const used = [...new Set(exprs.flatMap(metricNames))];
    const relayNames = exportedNames(await relay.metricsText());
    // The operator's registry, as its /metrics serves it.
    const operatorNames = exportedNames(await new OperatorMetrics().registry.metrics());
    const missing = used.filter((name) => !(name.startsWith("mxwarden_operator_") ? operatorNames : relayNames).has(name));
    assert.deepEqual(missing, []);
    assert.ok(used.length >= 25, `only ${used.length} metric names found in the rules and the dashboard`);
  });
});
