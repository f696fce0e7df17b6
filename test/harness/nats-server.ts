// A real nats-server with JetStream for tests, fsyncing every write like production. It can be
// stopped and started again on the same port and store, to cut the queue away from a relay.

import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { findNatsServer } from "../../relay/src/queue/index.ts";
import { freePort } from "./workspace.ts";

export class TestNatsServer {
  readonly port: number;
  readonly dir: string;
  private process: TestProcess | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  /**
   * `syncAlways: false` keeps nats-server's default fsync interval (2 minutes): for measuring its cost only.
   * `domain` makes the server one site's JetStream domain; `leafnodePort` lets other sites' servers
   * connect to it as leafnodes, and `leafnodeRemote` connects this one to such a server.
   */
  static async start(
    dir: string,
    options: { syncAlways?: boolean; domain?: string; leafnodePort?: number; leafnodeRemote?: string } = {},
  ): Promise<TestNatsServer> {
    const server = new TestNatsServer(await freePort(), dir);
    mkdirSync(join(dir, "jetstream"), { recursive: true });
    writeFileSync(
      join(dir, "nats.conf"),
      [
        `server_name: ${options.domain ?? "nats"}-${server.port}`,
        `listen: "127.0.0.1:${server.port}"`,
        "jetstream {",
        `  store_dir: "${join(dir, "jetstream")}"`,
        ...(options.syncAlways === false ? [] : ["  sync_interval: always"]),
        ...(options.domain ? [`  domain: ${options.domain}`] : []),
        "}",
        ...(options.leafnodePort ? [`leafnodes { listen: "127.0.0.1:${options.leafnodePort}" }`] : []),
        ...(options.leafnodeRemote ? [`leafnodes { remotes: [ { url: "${options.leafnodeRemote}" } ] }`] : []),
        "",
      ].join("\n"),
    );
    await server.resume();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** (Re)start the server on its port with its store. */
  async resume(): Promise<void> {
    this.process = new TestProcess(findNatsServer(), ["-c", join(this.dir, "nats.conf")], { logFile: join(this.dir, "nats.log") });
    await this.process.waitForLine(/Server is ready/);
  }

  /** Stop the server (the relay loses its queue until resume()). */
  async pause(): Promise<void> {
    await this.process?.stop();
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }
}

/** A three-server JetStream cluster on loopback: what one site runs, with streams at R3. */
export class TestNatsCluster {
  readonly servers: Array<{ name: string; port: number; process: TestProcess | undefined; config: string; dir: string }>;

  private constructor(servers: TestNatsCluster["servers"]) {
    this.servers = servers;
  }

  static async start(dir: string, size = 3): Promise<TestNatsCluster> {
    const clientPorts: number[] = [];
    const routePorts: number[] = [];
    for (let i = 0; i < size; i++) {
      clientPorts.push(await freePort());
      routePorts.push(await freePort());
    }
    const routes = routePorts.map((port) => `nats-route://127.0.0.1:${port}`).join(", ");
    const servers = clientPorts.map((port, i) => {
      const name = `n${i + 1}`;
      const serverDir = join(dir, name);
      mkdirSync(join(serverDir, "jetstream"), { recursive: true });
      const config = join(serverDir, "nats.conf");
      writeFileSync(
        config,
        [
          `server_name: ${name}`,
          `listen: "127.0.0.1:${port}"`,
          "jetstream {",
          `  store_dir: "${join(serverDir, "jetstream")}"`,
          "  sync_interval: always",
          "}",
          "cluster {",
          "  name: mxw-site",
          `  listen: "127.0.0.1:${routePorts[i] ?? 0}"`,
          `  routes: [${routes}]`,
          "}",
          "",
        ].join("\n"),
      );
      return { name, port, process: undefined as TestProcess | undefined, config, dir: serverDir };
    });
    const cluster = new TestNatsCluster(servers);
    await Promise.all(servers.map((server) => cluster.resume(server.name)));
    return cluster;
  }

  get urls(): string {
    return this.servers.map((server) => `nats://127.0.0.1:${server.port}`).join(",");
  }

  async resume(name: string): Promise<void> {
    const server = this.servers.find((s) => s.name === name);
    if (!server) throw new Error(`no server ${name}`);
    server.process = new TestProcess(findNatsServer(), ["-c", server.config], { logFile: join(server.dir, "nats.log") });
    await server.process.waitForLine(/Server is ready/);
  }

  /** Kill one server outright, as a node loss would. */
  async kill9(name: string): Promise<void> {
    await this.servers.find((s) => s.name === name)?.process?.kill9();
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.process?.stop()));
  }
}
