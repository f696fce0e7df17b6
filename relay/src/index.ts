// What the rest of mxwarden (the operator) may use of the relay, imported as "#relay": one logger
// and one health server for every process of the product. Nothing else reaches into relay/src.

export { createLogger } from "./log.ts";
export type { Logger } from "./log.ts";
export { startHealthServer } from "./health-server.ts";
