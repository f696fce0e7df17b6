import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { removeForgedAuthResults } from "../../relay/src/receive/forged-auth-results.ts";

const strip = (header: string): { header: string; removed: number } => {
  const result = removeForgedAuthResults(Buffer.from(header, "latin1"), "backup-mx.test");
  return { header: result.header.toString("latin1"), removed: result.removed };
};

describe("forged Authentication-Results", () => {
  it("removes fields that claim our authserv-id, folded ones whole, in any case", () => {
    const header = [
      "Subject: hi\r\n",
      "Authentication-Results: backup-mx.test; dmarc=pass\r\n",
      "authentication-results:   BACKUP-MX.TEST;\r\n  spf=pass\r\n  smtp.mailfrom=x@y\r\n",
      "Authentication-Results: (comment) backup-mx.test; dkim=pass\r\n",
      "From: a@b\r\n",
    ].join("");
    assert.deepEqual(strip(header), { header: "Subject: hi\r\nFrom: a@b\r\n", removed: 3 });
  });

  it("keeps other servers' results and look-alike ids", () => {
    const header = [
      "Authentication-Results: mx.elsewhere.test; dmarc=fail\r\n",
      "Authentication-Results: backup-mx.test.evil.test; dmarc=pass\r\n",
      "X-Authentication-Results: backup-mx.test; dmarc=pass\r\n",
    ].join("");
    assert.deepEqual(strip(header), { header, removed: 0 });
  });

  it("leaves a header section it cannot split into fields untouched", () => {
    const odd = "not a field line without CRLF";
    assert.deepEqual(strip(odd), { header: odd, removed: 0 });
  });
});
