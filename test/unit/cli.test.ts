import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseRelayArgs, UsageError, type RelayConfig } from "../../relay/src/cli.ts";

function parse(args: string[]): RelayConfig {
  const config = parseRelayArgs(args, "relay-0.mx.test");
  assert.notEqual(config, "help");
  return config as RelayConfig;
}

describe("relay command line", () => {
  it("accepts the documented contract and fills in defaults", () => {
    const config = parse([
      "--listen",
      "127.0.0.1:2525",
      "--hostname",
      "Backup-MX.test",
      "--domains",
      "/etc/mxwarden/domains",
      "--nats",
      "nats://127.0.0.1:4222",
      "--metrics",
      "127.0.0.1:9464",
      "--data",
      "/var/lib/mxwarden",
    ]);
    assert.deepEqual(config.listen, { host: "127.0.0.1", port: 2525 });
    assert.equal(config.hostname, "backup-mx.test");
    assert.deepEqual(config.natsServers, ["nats://127.0.0.1:4222"]);
    assert.equal(config.dataDir, "/var/lib/mxwarden");
    assert.equal(config.replicas, 1);
    assert.equal(config.probeIntervalMs, 5000);
    assert.equal(config.shutdownGraceMs, 30_000);
    assert.equal(config.bareNewline, "normalize");
    assert.equal(config.tls, undefined);
  });

  it("defaults to all interfaces, the machine's host name and an embedded nats-server", () => {
    const config = parse(["--domains", "d.yaml"]);
    assert.deepEqual(config.listen, { host: "0.0.0.0", port: 2525 });
    assert.deepEqual(config.metrics, { host: "0.0.0.0", port: 9464 });
    assert.equal(config.hostname, "relay-0.mx.test");
    assert.deepEqual(config.natsServers, []);
    assert.equal(config.clamd, undefined);
    assert.equal(config.senderAuth, false);
    assert.equal(config.greetPauseMs, 0);
    assert.equal(config.maxConnectionsPerClient, 50);
    assert.equal(config.postmasterDomain, undefined);
  });

  it("takes the postmaster domain in its A-label form", () => {
    assert.equal(parse(["--domains", "d", "--postmaster-domain", "Bücher.Example"]).postmasterDomain, "xn--bcher-kva.example");
  });

  it("parses lists, IPv6 listeners and durations", () => {
    const config = parse([
      "--domains",
      "d",
      "--listen",
      "[::1]:25",
      "--nats",
      "nats://a:4222, nats://b:4222",
      "--replicas",
      "3",
      "--mx-name",
      "MX2.example.net,mx3.example.net",
      "--probe-interval",
      "1m30s",
      "--bounce-relay",
      "smarthost.test:587",
      "--clamd",
      "127.0.0.1:3310",
      "--rspamd",
      "http://127.0.0.1:11333",
      "--sender-auth",
    ]);
    assert.equal(config.senderAuth, true);
    assert.equal(config.rspamd?.href, "http://127.0.0.1:11333/");
    assert.deepEqual(config.clamd, { host: "127.0.0.1", port: 3310 });
    assert.deepEqual(config.listen, { host: "::1", port: 25 });
    assert.deepEqual(config.natsServers, ["nats://a:4222", "nats://b:4222"]);
    assert.deepEqual(config.mxNames, ["mx2.example.net", "mx3.example.net"]);
    assert.equal(config.probeIntervalMs, 90_000);
    assert.deepEqual(config.bounceRelay, { host: "smarthost.test", port: 587 });
  });

  const invalid: Array<[string, string[], RegExp]> = [
    ["missing --domains", [], /exactly one of --domains and --domains-configmaps/],
    ["both sources", ["--domains", "d", "--domains-configmaps", "a=b", "--status-namespace", "ns"], /exactly one of/],
    ["bad selector", ["--domains-configmaps", "a b", "--status-namespace", "ns"], /not a label selector/],
    ["selector without namespace", ["--domains-configmaps", "mxwarden.io/domain-config=site-a"], /needs --status-namespace/],
    ["unknown flag", ["--domains", "d", "--open-relay"], /open-relay/],
    ["port out of range", ["--domains", "d", "--listen", "127.0.0.1:70000"], /--listen/],
    ["no port", ["--domains", "d", "--metrics", "localhost"], /--metrics/],
    ["bad duration", ["--domains", "d", "--shutdown-grace", "soon"], /--shutdown-grace/],
    ["zero duration", ["--domains", "d", "--probe-interval", "0s"], /--probe-interval/],
    ["bad concurrency", ["--domains", "d", "--delivery-concurrency", "0"], /--delivery-concurrency/],
    ["cert without key", ["--domains", "d", "--tls-cert", "c.pem"], /go together/],
    ["bad bare-newline mode", ["--domains", "d", "--bare-newline", "ignore"], /--bare-newline/],
    ["replicas without a cluster", ["--domains", "d", "--replicas", "3"], /--nats/],
    ["not a NATS URL", ["--domains", "d", "--nats", "http://x"], /--nats/],
    ["rspamd over something other than http", ["--domains", "d", "--rspamd", "ftp://127.0.0.1:11333"], /--rspamd/],
    ["a greet pause over a minute", ["--domains", "d", "--greet-pause", "2m"], /--greet-pause/],
    ["rspamd not a URL", ["--domains", "d", "--rspamd", "127.0.0.1:11333"], /--rspamd/],
    ["bad hostname", ["--domains", "d", "--hostname", "mx\r\nX-Evil: 1"], /--hostname/],
    ["peer sites without a site", ["--domains", "d", "--peer-sites", "b"], /--peer-sites needs --site/],
    ["a site that is not a JetStream domain", ["--domains", "d", "--site", "site.a"], /--site/],
    ["a postmaster domain that is no mail domain", ["--domains", "d", "--postmaster-domain", "localhost"], /--postmaster-domain/],
    ["itself as a peer", ["--domains", "d", "--site", "a", "--peer-sites", "b,a"], /--peer-sites/],
    ["two ways to log in to NATS", ["--domains", "d", "--nats", "nats://n:4222", "--nats-nkey-file", "k", "--nats-creds-file", "c"], /choose one/],
    ["a NATS user without a password file", ["--domains", "d", "--nats", "nats://n:4222", "--nats-user", "relay"], /go together/],
    ["a password file without a user", ["--domains", "d", "--nats", "nats://n:4222", "--nats-password-file", "p"], /go together/],
    ["NATS credentials for the embedded server", ["--domains", "d", "--nats-nkey-file", "k"], /needs --nats/],
    ["a NATS CA for the embedded server", ["--domains", "d", "--nats-ca-file", "ca.crt"], /needs --nats/],
  ];
  for (const [name, args, message] of invalid) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => parseRelayArgs(args, "h.test"),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
      );
    });
  }

  it("takes one way to log in to NATS, and a CA", () => {
    const nats = ["--domains", "d", "--nats", "tls://n:4222"];
    assert.deepEqual(parse([...nats, "--nats-nkey-file", "/s/nkey.seed"]).natsAuth, { nkeyFile: "/s/nkey.seed" });
    assert.deepEqual(parse([...nats, "--nats-creds-file", "/s/relay.creds"]).natsAuth, { credsFile: "/s/relay.creds" });
    assert.deepEqual(parse([...nats, "--nats-user", "relay", "--nats-password-file", "/s/pw"]).natsAuth, { user: "relay", passwordFile: "/s/pw" });
    assert.equal(parse([...nats, "--nats-ca-file", "/s/ca.crt"]).natsCaFile, "/s/ca.crt");
    assert.equal(parse(nats).natsAuth, undefined);
  });

  it("answers --help", () => {
    assert.equal(parseRelayArgs(["--help"], "h.test"), "help");
  });
});

describe("parseRelayArgs: the operator's queue report", () => {
  it("is off by default and needs a namespace when asked for", () => {
    const plain = parseRelayArgs(["--domains=/d"], "relay.test");
    assert.ok(plain !== "help" && plain.statusReport === undefined);
    const saved = process.env.POD_NAMESPACE;
    delete process.env.POD_NAMESPACE;
    try {
      assert.throws(() => parseRelayArgs(["--domains=/d", "--status-configmap=mxwarden-relay-status"], "relay.test"), /POD_NAMESPACE/);
    } finally {
      if (saved !== undefined) process.env.POD_NAMESPACE = saved;
    }
    const on = parseRelayArgs(["--domains=/d", "--status-configmap=mxwarden-relay-status", "--status-namespace=mx", "--status-interval=5s"], "relay.test");
    assert.ok(on !== "help");
    assert.deepEqual(on.statusReport, { name: "mxwarden-relay-status", namespace: "mx", kubeconfig: undefined, intervalMs: 5000 });
  });
});

describe("parseRelayArgs: per-domain metrics", () => {
  it("are off by default and capped when asked for", () => {
    const plain = parseRelayArgs(["--domains=/d"], "relay.test");
    assert.ok(plain !== "help" && plain.domainMetrics === 0);
    const on = parseRelayArgs(["--domains=/d", "--domain-metrics=200"], "relay.test");
    assert.ok(on !== "help" && on.domainMetrics === 200);
    assert.throws(() => parseRelayArgs(["--domains=/d", "--domain-metrics=all"], "relay.test"), /--domain-metrics: expected an integer from 1 to 10000/);
    assert.throws(() => parseRelayArgs(["--domains=/d", "--domain-metrics=20000"], "relay.test"), /--domain-metrics/);
  });
});

describe("parseRelayArgs: sites", () => {
  it("shares filter state between sites only when asked", () => {
    const alone = parseRelayArgs(["--domains=/d"], "relay.test");
    assert.ok(alone !== "help" && alone.sites === undefined);
    const shared = parseRelayArgs(["--domains=/d", "--site=site-a", "--peer-sites=site-b, site-c,site-b"], "relay.test");
    assert.ok(shared !== "help");
    assert.deepEqual(shared.sites, { self: "site-a", peers: ["site-b", "site-c"] });
  });
});
