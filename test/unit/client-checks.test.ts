import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidHelo } from "../../relay/src/filter/client-checks.ts";

describe("HELO names", () => {
  for (const helo of ["mail.example.com", "MAIL.Example.COM.", "xn--bcher-kva.example", "[192.0.2.1]", "[IPv6:2001:db8::1]"]) {
    it(`accepts ${helo}`, () => assert.equal(isValidHelo(helo), true));
  }
  for (const helo of ["localhost", "mail", "[192.0.2.300]", "[mail.example.com]", "exa_mple.com", "", "192.0.2.1", "-bad.example"]) {
    it(`refuses ${JSON.stringify(helo)}`, () => assert.equal(isValidHelo(helo), false));
  }
});
