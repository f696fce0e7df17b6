// The queue-admin library's public surface (re-exported by relay/src/index.ts as "#relay").

export type {
  QueueAction,
  QueueActionResult,
  QueueAdminOptions,
  QueuedMessage,
  QueuedState,
  QueueHistoryEvent,
  QueueSelector,
  ShownMessage,
  TrackingQuery,
  TrackingRecord,
} from "./types.ts";
export { QueueAdmin, QueueAdminError } from "./queue-admin.ts";
export { formatQueueTable, formatTrackingTable } from "./tables.ts";
