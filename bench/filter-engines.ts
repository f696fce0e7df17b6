// The filter engines of scenario 6, started fresh for each run of each server: clamd as the tests
// start it (test/harness/clamd.ts: our own signatures, nothing downloaded), rspamd with the stock
// rules, and the local DNS server that stands in for the Internet.
//
// Both servers get the same rspamd configuration, the tests' (test/harness/rspamd.ts: the stock
// rules, hyperscan off, fixed action thresholds) but for two things a backup MX's rspamd has:
// - it resolves through the local DNS server, as it would through a real one: its SPF, DKIM,
//   DMARC and DNS-list lookups get answers (NXDOMAIN for everything here). The tests mean to point
//   rspamd at a port where nothing listens, but their `dns` object comes after the stock one, and
//   rspamd reads the first: it uses the system's resolver there;
// - it checks the load's address, 127.0.0.1, as it would check a public one (`check_local`, and
//   the RBL module's `exclude_local` off): by default its modules skip local senders.
// For the filtering Postfix, rspamd also does what the relay does itself: its proxy worker speaks
// milter (self-scan, so no second hop to a normal worker), its antivirus module sends each whole
// message to clamd, and its RBL module looks the client up in the relay's DNS list, with a score
// above the reject threshold.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestProcess } from "../test/harness/child.ts";
import { TestClamd } from "../test/harness/clamd.ts";
import { startDnsServer, type TestDnsServer, type Zones } from "../test/harness/dns-server.ts";
import { eventually, freePort, portOpen, repoRoot } from "../test/harness/workspace.ts";
import { listeningPids } from "./cpu.ts";

/**
 * Where rspamd keeps the hyperscan databases it builds for its multi-pattern rules (even with
 * hyperscan off for regular expressions), kept from one start to the next: building them takes
 * 20 s to a minute on a busy 2-core machine, loading them about a second.
 */
const RSPAMD_CACHE = join(repoRoot, ".tmp", "bench", "rspamd-cache");

/** The DNS list both servers consult (empty: every lookup is NXDOMAIN, the cost is the lookup). */
export const DNSBL_ZONE = "bl.bench.test";

export interface FilterEngines {
  clamd: TestClamd;
  /** rspamd's normal worker (HTTP, /checkv2), which the relay asks. */
  rspamdUrl: string;
  dns: TestDnsServer;
  /** Port of rspamd's milter (the proxy worker), when started for an MTA. */
  milterPort: number | undefined;
  /** The engines' processes (clamd, and rspamd's main process, parent of its workers): their CPU is the server's. */
  pids(): number[];
  /** rspamd's main process alone. */
  rspamdPid: number;
  stop(): Promise<void>;
}

interface RspamdSetup {
  normal: number;
  dns: number;
  /** With a milter: its port, and clamd's for the antivirus module. */
  milter?: { port: number; clamd: number };
  /** rspamd's http_headers module: SPF, DKIM and DMARC results a client sends replace rspamd's own checks. */
  trustAuthHeaders?: boolean;
}

/** rspamd's own configuration files, under its $LOCAL_CONFDIR. */
function rspamdFiles(dir: string, ports: RspamdSetup): Record<string, string> {
  const proxy = ports.milter
    ? [
        'worker "rspamd_proxy" {',
        `  bind_socket = "127.0.0.1:${ports.milter.port}";`,
        "  milter = yes;",
        '  upstream "local" { default = yes; self_scan = yes; }',
        "  timeout = 120s;",
        "  count = 1;",
        "  discard_on_reject = false;",
        "  quarantine_on_reject = false;",
        '  reject_message = "Message rejected as spam";',
        "}",
      ]
    : [];
  const files: Record<string, string> = {
    "rspamd.conf": [
      '.include "$CONFDIR/common.conf"',
      "options {",
      `  pidfile = "${join(dir, "rspamd.pid")}";`,
      // Before the stock options: of two `dns` objects at one level, rspamd reads the first.
      `  dns { nameserver = ["127.0.0.1:${ports.dns}"]; timeout = 1s; sockets = 16; retransmits = 2; }`,
      "  check_local = true;",
      `  hs_cache_dir = "${RSPAMD_CACHE}";`,
      '  .include "$CONFDIR/options.inc"',
      "  disable_hyperscan = true;",
      "}",
      `logging { type = "file"; filename = "${join(dir, "rspamd.log")}"; level = "warning"; }`,
      'worker "normal" {',
      `  bind_socket = "127.0.0.1:${ports.normal}";`,
      '  .include "$CONFDIR/worker-normal.inc"',
      "  count = 1;",
      "}",
      ...proxy,
      "",
    ].join("\n"),
    // As the tests' rspamd: fixed thresholds, no greylisting (greylisting is not part of scenario 6).
    "local.d/actions.conf": "reject = 15;\nadd_header = 3;\ngreylist = null;\nrewrite_subject = null;\n",
    "local.d/rbl.conf": "default_exclude_local = false;\ndefault_exclude_private_ips = false;\n",
    // A backup MX signs nothing; rspamd would try to sign mail from a local address.
    "local.d/dkim_signing.conf": "enabled = false;\n",
    ...(ports.trustAuthHeaders ? { "local.d/http_headers.conf": "enabled = true;\n" } : {}),
  };
  if (!ports.milter) return files;
  return {
    ...files,
    // The whole message, as the relay sends it to clamd; rspamd's default scans attachments only.
    "local.d/antivirus.conf": [
      "clamav {",
      '  type = "clamav";',
      `  servers = "127.0.0.1:${ports.milter.clamd}";`,
      "  scan_mime_parts = false;",
      '  action = "reject";',
      '  symbol = "CLAM_VIRUS";',
      "  max_size = 62914560;",
      "  log_clean = false;",
      "}",
      "",
    ].join("\n"),
    "local.d/rbl.conf": [
      files["local.d/rbl.conf"],
      "rbls {",
      "  bench_dnsbl {",
      '    symbol = "BENCH_DNSBL";',
      `    rbl = "${DNSBL_ZONE}";`,
      "    from = true;",
      "    received = false;",
      "    ipv6 = true;",
      "  }",
      "}",
      "",
    ].join("\n"),
    "local.d/rbl_group.conf": 'symbols {\n  "BENCH_DNSBL" { weight = 20.0; description = "Listed in the bench\'s DNS list"; }\n}\n',
  };
}

async function startRspamd(dir: string, ports: RspamdSetup): Promise<TestProcess> {
  for (const sub of [join(dir, "local.d"), join(dir, "db"), RSPAMD_CACHE]) mkdirSync(sub, { recursive: true });
  for (const [name, text] of Object.entries(rspamdFiles(dir, ports))) writeFileSync(join(dir, name), text);
  const vars = [`CONFDIR=/etc/rspamd`, `LOCAL_CONFDIR=${dir}`, `DBDIR=${join(dir, "db")}`, `RUNDIR=${dir}`, `LOGDIR=${dir}`];
  const child = new TestProcess("rspamd", ["-f", "-i", "-u", "root", "-g", "root", "-c", join(dir, "rspamd.conf"), ...vars.flatMap((v) => ["--var", v])], {
    logFile: join(dir, "rspamd.out"),
  });
  // rspamd compiles its rules before it listens: tens of seconds on a small machine.
  try {
    await eventually(
      "rspamd to listen",
      async () => (await portOpen(ports.normal)) && (ports.milter === undefined || (await portOpen(ports.milter.port))),
      120_000,
      200,
    );
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

export interface EngineOptions {
  /** rspamd also does the antivirus and DNS-list work, over milter (for the filtering Postfix). */
  milter?: boolean;
  /** rspamd takes SPF, DKIM and DMARC results from its HTTP client's headers (rspamd-auth-results.ts). */
  trustAuthHeaders?: boolean;
  /** What the local DNS server answers (none: NXDOMAIN for every name). */
  zones?: Zones;
}

/** Starts the engines in `dir`. */
export async function startFilterEngines(dir: string, options: EngineOptions = {}): Promise<FilterEngines> {
  const [clamd, dns] = await Promise.all([TestClamd.start(join(dir, "clamd")), startDnsServer(options.zones ?? {})]);
  let rspamd: TestProcess;
  const normal = await freePort();
  const milterPort = options.milter ? await freePort() : undefined;
  try {
    rspamd = await startRspamd(join(dir, "rspamd"), {
      normal,
      dns: dns.port,
      milter: milterPort === undefined ? undefined : { port: milterPort, clamd: clamd.port },
      trustAuthHeaders: options.trustAuthHeaders,
    });
  } catch (err) {
    await Promise.all([clamd.stop(), dns.close()]);
    throw err;
  }
  return {
    clamd,
    rspamdUrl: `http://127.0.0.1:${normal}`,
    dns,
    milterPort,
    pids: () => [...listeningPids(clamd.port), rspamd.pid],
    rspamdPid: rspamd.pid,
    stop: async () => {
      await Promise.all([clamd.stop(), rspamd.stop(), dns.close()]);
    },
  };
}
