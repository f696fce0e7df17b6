// NextHopResolver against a real authoritative DNS server (dns2, in-process) reached through
// node:dns like the relay does: RFC 5321 §5.1 MX selection for a backup MX (only hosts that rank
// above us, random order among equal preferences), implicit MX, RFC 7505 null MX, explicit
// primary hosts and the bounce relay, and which failures are permanent.

import assert from "node:assert/strict";
import { Resolver } from "node:dns/promises";
import { after, before, describe, it } from "node:test";
import { parseRelayDomain } from "../../relay/src/config/relay-domain.ts";
import type { DomainPolicy } from "../../relay/src/config/relay-domain.ts";
import { NextHopResolver, RouteError } from "../../relay/src/deliver/next-hop.ts";
import type { NextHop, NextHopOptions } from "../../relay/src/deliver/next-hop.ts";
import { NULL_MX, startDnsServer } from "../harness/dns-server.ts";
import type { TestDnsServer, Zones } from "../harness/dns-server.ts";

const MX_PORT = 2525;
const US = "backup-mx.test";
const ALIAS = "mx2.alias.test";

const zones: Zones = {
  // This relay and its alias, with addresses, so that excluding them is the code's choice.
  [US]: { a: ["192.0.2.2"] },
  [ALIAS]: { a: ["192.0.2.2"] },

  // 1: one primary above us, one backup below us.
  "one.test": {
    mx: [
      { preference: 10, exchange: "primary.example.test" },
      { preference: 20, exchange: US },
      { preference: 30, exchange: "other-backup.test" },
    ],
  },
  "primary.example.test": { a: ["192.0.2.10"] },
  "other-backup.test": { a: ["192.0.2.30"] },

  // Two hosts above us at different preferences, listed out of order, us in upper case with a
  // trailing dot.
  "ordered.test": {
    mx: [
      { preference: 20, exchange: "second.ordered.test" },
      { preference: 30, exchange: "BACKUP-MX.TEST." },
      { preference: 10, exchange: "first.ordered.test" },
    ],
  },
  "first.ordered.test": { a: ["192.0.2.41"], aaaa: ["2001:db8::41"] },
  "second.ordered.test": { a: ["192.0.2.42"] },

  // 2: we share the best preference with another host.
  "tie-us.test": {
    mx: [
      { preference: 10, exchange: US },
      { preference: 10, exchange: "peer.tie-us.test" },
    ],
  },
  "peer.tie-us.test": { a: ["192.0.2.11"] },

  // 3: two primaries at equal preference.
  "two.test": {
    mx: [
      { preference: 5, exchange: "p1.two.test" },
      { preference: 5, exchange: "p2.two.test" },
      { preference: 20, exchange: US },
    ],
  },
  "p1.two.test": { a: ["192.0.2.21"] },
  "p2.two.test": { a: ["192.0.2.22"] },

  // 4: explicit primary hosts (the domain's MX must not be consulted).
  "explicit.test": { mx: [{ preference: 10, exchange: "mx.explicit.test" }] },
  "mx.explicit.test": { a: ["192.0.2.50"] },
  "mail1.explicit.test": { a: ["192.0.2.51"], aaaa: ["2001:db8::51"] },
  "mail2.explicit.test": { a: ["192.0.2.52"] },

  // 5: no MX, an address: implicit MX.
  "implicit.test": { a: ["192.0.2.61"] },

  // 6: RFC 7505 null MX (with an address, which must not be used as an implicit MX).
  "nomail.test": { mx: NULL_MX, a: ["192.0.2.62"] },

  // An MX host without addresses is skipped in favour of the next one.
  "dead-first.test": {
    mx: [
      { preference: 10, exchange: "gone.dead-first.test" },
      { preference: 20, exchange: "alive.dead-first.test" },
      { preference: 30, exchange: US },
    ],
  },
  "alive.dead-first.test": { a: ["192.0.2.71"] },

  // The zone's servers fail.
  "broken.test": { servfail: true },

  // 8: our --mx-name alias in the MX set.
  "alias.test": {
    mx: [
      { preference: 10, exchange: "primary.alias.test" },
      { preference: 20, exchange: ALIAS },
    ],
  },
  "primary.alias.test": { a: ["192.0.2.81"] },
  "alias-best.test": {
    mx: [
      { preference: 10, exchange: ALIAS },
      { preference: 20, exchange: "later.alias-best.test" },
    ],
  },
  "later.alias-best.test": { a: ["192.0.2.82"] },

  // 9: a bounce's sender domain and the configured bounce relay.
  "sender.test": { mx: [{ preference: 10, exchange: "mx.sender.test" }] },
  "mx.sender.test": { a: ["192.0.2.91"] },
  "smarthost.test": { a: ["192.0.2.99"] },
  // nx.test and anything else not listed: NXDOMAIN.
};

function policy(domain: string, primary?: Record<string, unknown>): DomainPolicy {
  const spec: Record<string, unknown> = { domain };
  if (primary) spec.primary = primary;
  return parseRelayDomain({ apiVersion: "mxwarden.io/v1alpha1", kind: "RelayDomain", metadata: { name: domain.replace(/\./g, "-") }, spec });
}

function hop(host: string, address: string, port = MX_PORT): NextHop {
  return { host, address, port };
}

/** Asserts the promise rejects with a RouteError of the given permanence, message matching. */
async function assertRouteError(promise: Promise<unknown>, permanent: boolean, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RouteError, `expected a RouteError, got ${String(err)}`);
    assert.equal(err.permanent, permanent, `permanent for ${JSON.stringify(err.message)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe("NextHopResolver against an authoritative DNS server", () => {
  let dns: TestDnsServer;
  let resolver: Resolver;

  function nextHops(options: Partial<NextHopOptions> = {}): NextHopResolver {
    return new NextHopResolver(resolver, { ourNames: [US], mxPort: MX_PORT, ...options });
  }

  before(async () => {
    dns = await startDnsServer(zones);
    resolver = new Resolver({ timeout: 2000, tries: 2 });
    resolver.setServers([`127.0.0.1:${dns.port}`]);
  });

  after(async () => {
    resolver.cancel();
    await dns.close();
  });

  describe("MX-derived hops for a relayed domain (RFC 5321 §5.1)", () => {
    it("uses only the MX hosts ranked above us, never us nor a worse backup", async () => {
      dns.queries.length = 0;
      const route = await nextHops().forDomain(policy("one.test"));
      assert.deepEqual(route.hops, [hop("primary.example.test", "192.0.2.10")]);
      assert.deepEqual(route.tls, { mode: "opportunistic", verifyCertificate: false });
      // Hosts at or below our preference are not even looked up.
      assert.ok(!dns.queries.some((q) => q.endsWith(` ${US}`) || q.endsWith(" other-backup.test")), dns.queries.join(", "));
    });

    it("orders hops by preference, all addresses of a host together, and matches our name case-insensitively", async () => {
      const route = await nextHops().forDomain(policy("ordered.test"));
      assert.deepEqual(route.hops, [
        hop("first.ordered.test", "192.0.2.41"),
        hop("first.ordered.test", "2001:db8::41"),
        hop("second.ordered.test", "192.0.2.42"),
      ]);
    });

    it("refuses, temporarily, when we share the best preference: a backup must not deliver to itself", async () => {
      // §5.1: MX records at our own preference or worse are discarded, so nothing is left. The
      // error is temporary, so the mail waits in the queue (the MX set may be fixed) rather
      // than being bounced or looping back to us or to a peer backup.
      await assertRouteError(nextHops().forDomain(policy("tie-us.test")), false, /no MX of tie-us\.test ranks above this relay/);
    });

    it("returns all primaries at an equal preference, in random order (§5.1)", async () => {
      const resolverForTies = nextHops();
      const orders = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const { hops } = await resolverForTies.forDomain(policy("two.test"));
        assert.deepEqual(new Set(hops.map((h) => `${h.host} ${h.address} ${h.port}`)), new Set(["p1.two.test 192.0.2.21 2525", "p2.two.test 192.0.2.22 2525"]));
        assert.equal(hops.length, 2);
        orders.add(hops.map((h) => h.host).join(","));
      }
      // Each call picks either order with probability 1/2: both missing in 50 calls is ~1e-15.
      assert.deepEqual(orders, new Set(["p1.two.test,p2.two.test", "p2.two.test,p1.two.test"]));
    });

    it("skips an MX host that has no address and uses the next one above us", async () => {
      const route = await nextHops().forDomain(policy("dead-first.test"));
      assert.deepEqual(route.hops, [hop("alive.dead-first.test", "192.0.2.71")]);
    });

    it("uses the domain itself as an implicit MX when it has an address but no MX records", async () => {
      const route = await nextHops().forDomain(policy("implicit.test"));
      assert.deepEqual(route.hops, [hop("implicit.test", "192.0.2.61")]);
    });

    it("fails permanently for a null MX (RFC 7505), without falling back to the domain's address", async () => {
      await assertRouteError(nextHops().forDomain(policy("nomail.test")), true, /nomail\.test accepts no mail \(null MX\)/);
    });

    it("fails temporarily for a relayed domain that does not exist (DNS may be wrong for a while)", async () => {
      await assertRouteError(nextHops().forDomain(policy("nx.test")), false, /domain nx\.test does not exist/);
    });

    it("fails temporarily when the MX lookup fails (SERVFAIL)", async () => {
      await assertRouteError(nextHops().forDomain(policy("broken.test")), false, /MX lookup for broken\.test failed/);
    });
  });

  describe("--mx-name aliases", () => {
    it("excludes an alias like our own name", async () => {
      const withAlias = nextHops({ ourNames: [US, ALIAS] });
      assert.deepEqual((await withAlias.forDomain(policy("alias.test"))).hops, [hop("primary.alias.test", "192.0.2.81")]);
      // Without the alias the same MX set would hand mail to ourselves under the other name.
      const withoutAlias = nextHops();
      assert.deepEqual((await withoutAlias.forDomain(policy("alias.test"))).hops, [hop("primary.alias.test", "192.0.2.81"), hop(ALIAS, "192.0.2.2")]);
    });

    it("refuses when the alias is the best MX, ignoring hosts below it", async () => {
      await assertRouteError(nextHops({ ourNames: [US, ALIAS] }).forDomain(policy("alias-best.test")), false, /ranks above this relay/);
    });

    it("matches aliases configured in upper case or with a trailing dot", async () => {
      const route = await nextHops({ ourNames: [US, "MX2.Alias.Test."] }).forDomain(policy("alias.test"));
      assert.deepEqual(route.hops, [hop("primary.alias.test", "192.0.2.81")]);
    });
  });

  describe("explicit primary.hosts", () => {
    it("uses the configured hosts in order with their ports, resolved through DNS, instead of the MX", async () => {
      dns.queries.length = 0;
      const domain = policy("explicit.test", {
        hosts: [{ host: "mail1.explicit.test", port: 2526 }, { host: "Mail2.Explicit.Test", port: 2527 }, { host: "192.0.2.200" }],
        tls: { mode: "required" },
      });
      const route = await nextHops().forDomain(domain);
      assert.deepEqual(route.hops, [
        hop("mail1.explicit.test", "192.0.2.51", 2526),
        hop("mail1.explicit.test", "2001:db8::51", 2526),
        hop("mail2.explicit.test", "192.0.2.52", 2527),
        hop("192.0.2.200", "192.0.2.200", 25),
      ]);
      assert.deepEqual(route.tls, { mode: "required", verifyCertificate: true });
      assert.ok(!dns.queries.some((q) => q.startsWith("MX ")), dns.queries.join(", "));
    });

    it("fails temporarily when no configured host has an address", async () => {
      await assertRouteError(nextHops().forDomain(policy("explicit.test", { hosts: [{ host: "missing.explicit.test" }] })), false, /no address/);
    });

    it("skips a configured host without an address and uses the next one", async () => {
      const domain = policy("explicit.test", {
        hosts: [
          { host: "missing.explicit.test", port: 2526 },
          { host: "mail2.explicit.test", port: 2527 },
        ],
      });
      const route = await nextHops().forDomain(domain);
      assert.deepEqual(route.hops, [hop("mail2.explicit.test", "192.0.2.52", 2527)]);
    });
  });

  describe("bounces (forBounce)", () => {
    it("uses the sender domain's MX, opportunistic TLS without certificate checks", async () => {
      const route = await nextHops().forBounce("sender.test");
      assert.deepEqual(route.hops, [hop("mx.sender.test", "192.0.2.91")]);
      assert.deepEqual(route.tls, { mode: "opportunistic", verifyCertificate: false });
    });

    it("uses the configured bounce relay instead of the sender domain's MX", async () => {
      dns.queries.length = 0;
      const route = await nextHops({ bounceRelay: { host: "smarthost.test", port: 587 } }).forBounce("sender.test");
      assert.deepEqual(route.hops, [hop("smarthost.test", "192.0.2.99", 587)]);
      assert.deepEqual(route.tls, { mode: "opportunistic", verifyCertificate: false });
      assert.ok(!dns.queries.includes("MX sender.test"), dns.queries.join(", "));
    });

    it("fails permanently when the sender domain does not exist", async () => {
      await assertRouteError(nextHops().forBounce("nx.test"), true, /domain nx\.test does not exist/);
    });

    it("fails permanently for a null MX sender domain", async () => {
      await assertRouteError(nextHops().forBounce("nomail.test"), true, /null MX/);
    });

    it("fails temporarily when the sender domain's MX lookup fails (SERVFAIL)", async () => {
      await assertRouteError(nextHops().forBounce("broken.test"), false, /MX lookup for broken\.test failed/);
    });

    it("uses the implicit MX of a sender domain without MX records", async () => {
      assert.deepEqual((await nextHops().forBounce("implicit.test")).hops, [hop("implicit.test", "192.0.2.61")]);
    });
  });
});
