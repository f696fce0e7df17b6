import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clientNetwork } from "../../relay/src/filter/greylist.ts";

describe("greylisting client networks", () => {
  const cases: Array<[string, string]> = [
    ["192.0.2.77", "192.0.2.0/24"],
    ["::ffff:192.0.2.77", "192.0.2.0/24"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0000:0002::9", "2001:db8:0:2::/64"],
  ];
  for (const [address, network] of cases) {
    it(`${address} belongs to ${network}`, () => assert.equal(clientNetwork(address), network));
  }
  it("puts neighbours of a sending pool together and strangers apart", () => {
    assert.equal(clientNetwork("198.51.100.1"), clientNetwork("198.51.100.254"));
    assert.notEqual(clientNetwork("198.51.100.1"), clientNetwork("198.51.101.1"));
  });
});
