import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { relayDomainSpecSchema } from "#api";
import { FILTERS } from "../../relay/src/filter/filters.ts";

describe("the filter list", () => {
  it("names each filter once", () => {
    const names = FILTERS.map((filter) => filter.name);
    assert.deepEqual(names, [...new Set(names)]);
  });

  it("each filter's policy section is the RelayDomain spec's field of that name, defaults included", () => {
    const properties = relayDomainSpecSchema.properties as Record<string, unknown>;
    for (const filter of FILTERS) {
      const field = properties[filter.spec.field];
      assert.ok(field, `${filter.name}: spec.${filter.spec.field} exists`);
      assert.equal(JSON.stringify(field), JSON.stringify(filter.spec.schema), `${filter.name}: spec.${filter.spec.field} is its section`);
    }
  });

  it("runs every RCPT-stage filter before any DATA-stage one, as the SMTP dialogue does", () => {
    const stages = FILTERS.map((filter) => filter.stage);
    assert.equal(stages.lastIndexOf("rcpt") < stages.indexOf("data"), true, stages.join(", "));
  });
});
