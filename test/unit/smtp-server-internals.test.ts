// relay/src/receive/prompt-greeting.ts replaces two methods of the pinned smtp-server with copies
// that leave out the 100 ms wait before the greeting. These tests fail when the library's
// originals change, so that the copies are compared again, and check what the copies must keep.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection";
import { PromptGreetingServer } from "../../relay/src/receive/prompt-greeting.ts";

function normalised(source: string): string {
  return source.replace(/\s+/g, " ").trim();
}

/** The pinned smtp-server's originals (3.21.6), whitespace collapsed. */
const pinned = {
  connect:
    "connect(socket, socketOptions) { let connection = new SMTPConnection(this, socket, socketOptions); this.connections.add(connection); connection.on('error', err => this._onError(err)); connection.on('connect', data => this._onClientConnect(data)); connection.init(); }",
  init: "init() { // Setup event handlers for the socket this._setListeners(() => { // Check that connection limit is not exceeded if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) { return this.send(421, this.name + ' Too many connected clients, try again in a moment', false); } // Keep a small delay for detecting early talkers let readyTimer = setTimeout(() => this.connectionReady(), 100); // Unref timer so connection init delay doesn't prevent process exit readyTimer.unref(); }); }",
};

/** The first line a client gets from `server`, and the milliseconds it took. */
function firstLine(port: number): Promise<{ line: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host: "127.0.0.1", port });
    let text = "";
    socket.setEncoding("utf8");
    socket.on("error", reject);
    socket.on("data", (data: string) => {
      text += data;
      const end = text.indexOf("\r\n");
      if (end < 0) return;
      resolve({ line: text.slice(0, end), ms: performance.now() - started });
      socket.destroy();
    });
  });
}

async function listening(server: SMTPServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.server.address();
  if (address === null || typeof address === "string") throw new Error("not listening");
  return address.port;
}

function closed(server: SMTPServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const options: SMTPServerOptions = { logger: false, disabledCommands: ["AUTH", "STARTTLS"], disableReverseLookup: true, closeTimeout: 1 };

describe("smtp-server internals that prompt-greeting.ts copies", () => {
  it("SMTPServer#connect is the pinned one", () => {
    assert.equal(normalised(SMTPServer.prototype.connect.toString()), pinned.connect);
  });

  it("SMTPConnection#init is the pinned one, with its 100 ms timer", () => {
    assert.equal(normalised(SMTPConnection.prototype.init.toString()), pinned.init);
  });

  it("the methods the copies call are still there", () => {
    assert.equal(typeof SMTPConnection.prototype._setListeners, "function");
    assert.equal(typeof SMTPConnection.prototype.connectionReady, "function");
    assert.equal(typeof SMTPConnection.prototype.send, "function");
    assert.equal(typeof SMTPServer.prototype._onError, "function");
    assert.equal(typeof SMTPServer.prototype._onClientConnect, "function");
  });
});

describe("PromptGreetingServer", () => {
  it("greets at once, where the library's own server waits 100 ms", async () => {
    const library = new SMTPServer(options);
    const prompt = new PromptGreetingServer(options);
    try {
      const slow = await firstLine(await listening(library));
      const fast = await firstLine(await listening(prompt));
      assert.match(slow.line, /^220 /);
      assert.match(fast.line, /^220 /);
      assert.ok(slow.ms >= 95, `library greeted after ${slow.ms.toFixed(1)} ms`);
      assert.ok(fast.ms < 50, `prompt server greeted after ${fast.ms.toFixed(1)} ms`);
    } finally {
      await Promise.all([closed(library), closed(prompt)]);
    }
  });

  it("keeps the connection limit: one client too many gets 421", async () => {
    const server = new PromptGreetingServer({ ...options, maxClients: 1 });
    const port = await listening(server);
    const held = connect({ host: "127.0.0.1", port });
    try {
      await new Promise((resolve) => held.once("data", resolve));
      const { line } = await firstLine(port);
      assert.match(line, /^421 .*Too many connected clients/);
    } finally {
      held.destroy();
      await closed(server);
    }
  });

  it("runs onConnect before the greeting, and its refusal still answers the client", async () => {
    const server = new PromptGreetingServer({
      ...options,
      onConnect: (_session, callback) => callback(Object.assign(new Error("go away"), { responseCode: 421 })),
    });
    try {
      const { line } = await firstLine(await listening(server));
      assert.match(line, /^421 .*go away/);
    } finally {
      await closed(server);
    }
  });
});
