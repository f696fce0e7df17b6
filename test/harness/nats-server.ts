// A real nats-server with JetStream for tests, fsyncing every write like production. It can be
// stopped and started again on the same port and store, to cut the queue away from a relay.

import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { TestProcess } from "./child.ts";
import { findNatsServer } from "../../relay/src/queue/embedded-nats.ts";
import { freePort } from "./workspace.ts";

export class TestNatsServer {
  readonly port: number;
  readonly dir: string;
  private process: TestProcess | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  /** `syncAlways: false` keeps nats-server's default fsync interval (2 minutes): for measuring its cost only. */
  static async start(dir: string, options: { syncAlways?: boolean } = {}): Promise<TestNatsServer> {
    const server = new TestNatsServer(await freePort(), dir);
    mkdirSync(join(dir, "jetstream"), { recursive: true });
    writeFileSync(join(dir, "nats.conf"), [
      `listen: "127.0.0.1:${server.port}"`,
      "jetstream {",
      `  store_dir: "${join(dir, "jetstream")}"`,
      ...(options.syncAlways === false ? [] : ["  sync_interval: always"]),
      "}",
      "",
    ].join("\n"));
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
