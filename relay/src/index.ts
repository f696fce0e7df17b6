// What the rest of mxwarden (the operator) may use of the relay, imported as "#relay": one logger
// and one health server for every process of the product, and the queue-admin library that
// mxwarden-queue and the RelayQueueRequest share (admin/). Nothing else reaches into relay/src.

export { createLogger } from "./log.ts";
export type { Logger } from "./log.ts";
export { startHealthServer } from "./health-server.ts";
export * from "./admin/index.ts";
