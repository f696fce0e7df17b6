import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDomainDocuments, type DomainTable } from "../../relay/src/config/domain-store.ts";
import { parseRelayDomain, type DomainPolicy } from "../../relay/src/config/relay-domain.ts";
import { HOLD_RELEASE_SPREAD_MS } from "../../relay/src/deliver/delivery-timing.ts";
import { heldUntil, isHeld, MaintenanceHolds } from "../../relay/src/deliver/maintenance-hold.ts";
import type { DeliveryJob } from "../../relay/src/queue/delivery-job.ts";
import { createLogger } from "../../relay/src/log.ts";

const DAY = 86_400_000;
const now = Date.parse("2026-12-05T12:00:00Z");

function policy(hold?: string, domain = "example.com", deletionTimestamp?: string): DomainPolicy {
  return parseRelayDomain({
    apiVersion: "mxwarden.io/v1alpha1",
    kind: "RelayDomain",
    metadata: { name: domain, ...(deletionTimestamp ? { deletionTimestamp } : {}) },
    spec: { domain, queue: { lifetime: "5d" }, ...(hold ? { hold: { until: hold } } : {}) },
  });
}

const job = (acceptedAt: number, kind: DeliveryJob["kind"] = "relay"): DeliveryJob => ({
  v: 1,
  queueId: "q",
  kind,
  domain: "example.com",
  sender: "s@x.example",
  recipients: ["a@example.com"],
  size: 1,
  eightBit: false,
  smtpUtf8: false,
  acceptedAt,
  expiresAt: acceptedAt + 5 * DAY,
  attempts: 0,
});

describe("maintenance hold of a job", () => {
  it("holds until the hold's end, released within the spread after it", () => {
    const held = policy("2026-12-06T00:00:00Z");
    assert.equal(
      heldUntil(held, job(now), now, () => 0),
      Date.parse("2026-12-06T00:00:00Z"),
    );
    assert.equal(
      heldUntil(held, job(now), now, () => 0.999),
      Date.parse("2026-12-06T00:00:00Z") + Math.floor(0.999 * HOLD_RELEASE_SPREAD_MS),
    );
  });

  it("does not hold once the end has passed, nor bounces, nor domains without a hold", () => {
    assert.equal(heldUntil(policy("2026-12-05T11:59:59Z"), job(now), now), undefined);
    assert.equal(heldUntil(policy("2026-12-06T00:00:00Z"), job(now, "dsn"), now), undefined);
    assert.equal(heldUntil(policy(), job(now), now), undefined);
    assert.equal(heldUntil(undefined, job(now), now), undefined);
  });

  it("never holds a message past four fifths of its queue lifetime", () => {
    const long = policy("2027-01-01T00:00:00Z");
    assert.equal(
      heldUntil(long, job(now), now, () => 0),
      now + 4 * DAY,
    );
    // Accepted four days ago: its share is used up, it is delivered now.
    assert.equal(heldUntil(long, job(now - 4 * DAY), now), undefined);
  });

  it("ends with the RelayDomain's deletion: its mail has the grace period to be delivered", () => {
    const deleted = policy("2026-12-06T00:00:00Z", "example.com", "2026-12-05T11:00:00Z");
    assert.equal(heldUntil(deleted, job(now), now), undefined);
    assert.equal(isHeld(deleted, now), false);
  });

  it("says whether a domain is under a hold now", () => {
    assert.equal(isHeld(policy("2026-12-06T00:00:00Z"), now), true);
    assert.equal(isHeld(policy("2026-12-05T12:00:00Z"), now), false);
    assert.equal(isHeld(policy(), now), false);
  });
});

describe("MaintenanceHolds", () => {
  const table = (...policies: DomainPolicy[]): DomainTable => ({ byDomain: new Map(policies.map((p) => [p.domain, p])), generation: 1 });
  const log = createLogger({}, "error", () => undefined);

  it("flushes a domain's held mail at once when its hold is removed, and not when one is added or extended", () => {
    const flushed: string[] = [];
    const holds = new MaintenanceHolds((domain) => flushed.push(domain), log);
    holds.update(table(policy("2026-12-06T00:00:00Z"), policy("2026-12-07T00:00:00Z", "other.example")), now);
    holds.update(table(policy(), policy("2026-12-08T00:00:00Z", "other.example")), now);
    assert.deepEqual(flushed, ["example.com"]);
    holds.stop();
  });

  it("flushes at once when a held domain's RelayDomain is deleted", () => {
    const flushed: string[] = [];
    const holds = new MaintenanceHolds((domain) => flushed.push(domain), log);
    holds.update(table(policy("2026-12-06T00:00:00Z")), now);
    holds.update(table(policy("2026-12-06T00:00:00Z", "example.com", "2026-12-05T12:00:00Z")), now);
    assert.deepEqual(flushed, ["example.com"]);
    holds.stop();
  });

  it("flushes when a hold brought forward ends, not before", () => {
    const flushed: string[] = [];
    const holds = new MaintenanceHolds((domain) => flushed.push(domain), log);
    const start = Date.now();
    holds.update(table(policy(new Date(start + DAY).toISOString())), start);
    holds.update(table(policy(new Date(start + 3_600_000).toISOString())), start);
    assert.deepEqual(flushed, []);
    holds.stop();
  });

  it("logs the cap when a hold reaches past four fifths of the queue lifetime", () => {
    const lines: string[] = [];
    const holds = new MaintenanceHolds(
      () => undefined,
      createLogger({}, "info", (line) => lines.push(line)),
    );
    holds.update(table(policy("2027-01-01T00:00:00Z")), now);
    const record = JSON.parse(lines.find((line) => line.includes("reaches past the queue lifetime")) ?? "{}") as Record<string, unknown>;
    assert.equal(record.newMailReleasedBy, new Date(now + 4 * DAY).toISOString());
    holds.stop();
  });
});

describe("a hold written in a domain file", () => {
  it("reads an unquoted until as the string kubectl would send, not as a YAML 1.1 timestamp", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mxw-hold-"));
    try {
      const path = join(dir, "domains.yaml");
      writeFileSync(
        path,
        "apiVersion: mxwarden.io/v1alpha1\nkind: RelayDomain\nmetadata: { name: example }\nspec:\n  domain: example.com\n  hold: { until: 2026-12-24T06:00:00Z }\n  antispam: { enabled: off }\n",
      );
      const { policies, problems } = await loadDomainDocuments(path);
      assert.deepEqual(problems, []);
      assert.deepEqual(policies[0]?.hold, { untilMs: Date.parse("2026-12-24T06:00:00Z") });
      assert.equal(policies[0]?.antispam.enabled, false, "a plain off is still a boolean");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
