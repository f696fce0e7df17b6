// A self-signed certificate made with openssl, for the relay's STARTTLS or a test primary's.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface TestCertificate {
  /** The files, for the relay's --tls-key and --tls-cert. */
  keyPath: string;
  certPath: string;
  /** Their PEM, as TestPrimary.start takes it. */
  pem: { key: Buffer; cert: Buffer };
}

/** Writes key.pem and cert.pem into `dir`: for `commonName`, valid for `days` days from now. */
export function selfSignedCertificate(dir: string, commonName: string, days: number): TestCertificate {
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", String(days), "-subj", `/CN=${commonName}`, "-keyout", keyPath, "-out", certPath],
    { stdio: "ignore" },
  );
  return { keyPath, certPath, pem: { key: readFileSync(keyPath), cert: readFileSync(certPath) } };
}
