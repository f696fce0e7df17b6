// The certificates the tests' clusters and servers need, made with openssl: a CA of their own,
// certificates it signs, and self-signed ones. EC P-256 keys, which openssl makes in milliseconds.

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * `<name>.key` and a self-signed `<name>.crt` in `dir`, for `subject` (such as "/CN=ca"), valid for
 * `days` days: a CA (ca.key/ca.crt for issue()) or a server's own certificate, with `extensions`
 * (openssl -addext values, such as "subjectAltName=DNS:mx.example").
 */
export function selfSigned(dir: string, name: string, subject: string, days: number, extensions: string[] = []): void {
  openssl(
    [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.crt`,
      "-days",
      String(days),
      "-subj",
      subject,
      ...extensions.flatMap((e) => ["-addext", e]),
    ],
    dir,
  );
}

/** `<name>.key` and `<name>.crt` signed by ca.key/ca.crt in `dir`, with the X.509 extensions in `ext` (an openssl extfile's lines). */
export function issue(dir: string, name: string, subject: string, days: number, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(["req", "-new", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      String(days),
      "-out",
      `${name}.crt`,
      "-extfile",
      `${name}.ext`,
    ],
    dir,
  );
}

/** An RSA key for signing service account tokens (sa.key). */
export function serviceAccountKey(dir: string): void {
  openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"], dir);
}

export const SERVER_AUTH = "extendedKeyUsage=serverAuth\n";
export const CLIENT_AUTH = "extendedKeyUsage=clientAuth\n";
