// The names that must differ between sites joined by a leafnode, and the ones that must not change.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { QueueLayout } from "../../relay/src/queue/layout.ts";

describe("QueueLayout", () => {
  const a = new QueueLayout("site-a");
  const b = new QueueLayout("site-b");
  const unscoped = new QueueLayout();

  it("gives each site its own subjects", () => {
    assert.notEqual(a.readySubject("x.example", "Q"), b.readySubject("x.example", "Q"));
    assert.notEqual(a.spoolMessageSubject("Q"), b.spoolMessageSubject("Q"));
    assert.notEqual(a.rateSubjects, b.rateSubjects);
    assert.notEqual(a.shadowCopySubject("Q"), b.shadowCopySubject("Q"));
  });

  // Acks travel on $JS.ACK.<stream>.<consumer>.… without the JetStream domain, across the leafnode.
  it("gives each site its own consumer names, so one site's acks never match the other's consumers", () => {
    assert.notEqual(a.deliverConsumer, b.deliverConsumer);
    assert.notEqual(a.flushConsumerName("x.example"), b.flushConsumerName("x.example"));
  });

  it("keeps the names of a site without --site as they were", () => {
    assert.equal(unscoped.deliverConsumer, "mxw-deliver");
    assert.equal(unscoped.flushConsumerName("x.example"), "mxw-drain-x_example");
    assert.equal(unscoped.readySubject("x.example", "Q"), "mxw.queue.ready.x_example.Q");
  });

  it("refuses site names that would overlap the unscoped subjects", () => {
    for (const name of ["queue", "spool", "rate", "a.b", ""]) assert.throws(() => new QueueLayout(name), /site name/);
  });
});
