// smtp-server waits a fixed 100 ms before every greeting ("a small delay for detecting early
// talkers", SMTPConnection#init), whatever the options. An MX mostly gets one message per
// connection, so at a fixed number of senders that wait alone capped the relay at about 190 msg/s
// with 20 of them (issue 19). This server greets as soon as the connection is set up; the
// early-talker check is the relay's own --greet-pause, which holds the greeting in onConnect.
//
// It replaces SMTPServer#connect and SMTPConnection#init of the pinned smtp-server with copies
// that differ only in that wait. test/unit/smtp-server-internals.test.ts fails when either
// changes upstream, so that the copies are compared again before an upgrade.

import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { SMTPServer } from "smtp-server";
import { SMTPConnection, type SMTPConnectionOptions } from "smtp-server/lib/smtp-connection";

type ClientConnectEvent = Parameters<SMTPServer["_onClientConnect"]>[0];

export class PromptGreetingServer extends SMTPServer {
  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new SMTPConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on("error", (err: Error) => this._onError(err));
    connection.on("connect", (data: ClientConnectEvent) => this._onClientConnect(data));
    this.greet(connection);
  }

  /** SMTPConnection#init without its timer: the connection limit, then reverse lookup, onConnect and the 220. */
  private greet(connection: SMTPConnection): void {
    connection._setListeners(() => {
      if (this.options.maxClients && this.connections.size > this.options.maxClients) {
        connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      connection.connectionReady();
    });
  }
}
