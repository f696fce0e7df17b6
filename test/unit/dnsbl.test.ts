import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isListing, reversedAddress } from "../../relay/src/filter/dnsbl.ts";

describe("DNS list queries", () => {
  it("reverse IPv4 octets and IPv6 nibbles (RFC 5782)", () => {
    assert.equal(reversedAddress("192.0.2.99"), "99.2.0.192");
    assert.equal(reversedAddress("::ffff:192.0.2.99"), "99.2.0.192");
    assert.equal(reversedAddress("2001:db8:1:2:3:4:567:89ab"), "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2");
    assert.equal(reversedAddress("2001:db8::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2");
  });

  it("take only 127.0.0.0/8 answers for listings, never the lists' error codes", () => {
    for (const answer of ["127.0.0.2", "127.0.0.4", "127.0.0.10", "127.0.1.3"]) assert.equal(isListing(answer), true, answer);
    for (const answer of ["127.255.255.252", "127.255.255.254", "127.255.255.255", "127.0.0.1", "192.0.2.1", "10.0.0.2"]) {
      assert.equal(isListing(answer), false, answer);
    }
  });
});
