// What the rest of mxwarden (the operator) may use of the relay, imported as "#relay": one logger
// and one health server for every process of the product, the queue-admin library that
// mxwarden-queue and the RelayQueueRequest share (admin/), and the NATS permissions its relays need
// (the operator writes them into the nats-servers it runs). Nothing else reaches into relay/src.

export { createLogger } from "./log.ts";
export type { Logger } from "./log.ts";
export { startHealthServer } from "./health-server.ts";
export * from "./admin/index.ts";
export { relayNatsPermissions, type NatsPermissions } from "./nats-permissions.ts";
