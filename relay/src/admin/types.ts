// The queue-admin API shared by mxwarden-queue (this folder) and the operator's RelayQueueRequest
// and kubectl plugin: both print the same tables and JSON from these shapes.

export type { TrackingRecord } from "../queue/tracking.ts";

export type QueuedState = "ready" | "deferred" | "held";

export interface QueuedMessage {
  queueId: string;
  domain: string;
  sender: string;
  recipients: string[];
  state: QueuedState;
  /** ISO 8601 */
  arrivedAt: string;
  size: number;
  attempts: number;
  nextAttemptAt?: string;
  lastError?: string;
}

export interface QueueSelector {
  queueIds?: string[];
  domain?: string;
  sender?: string;
  recipient?: string;
  olderThanMs?: number;
  state?: QueuedState;
  all?: boolean;
}

export type QueueAction = "retry" | "hold" | "release" | "delete" | "bounce";

export interface QueueActionResult {
  action: QueueAction;
  matched: number;
  done: string[];
  skipped: Array<{ queueId: string; reason: string }>;
}

export interface TrackingQuery {
  messageId?: string;
  sender?: string;
  recipient?: string;
  sinceMs?: number;
}

export interface QueueAdminOptions {
  servers: string[];
  /** Who acts, for the audit log. */
  actor: string;
  user?: string;
  pass?: string;
  credsFile?: string;
  /** An nkey user's seed (the operator's way into a NATS it runs); never logged. */
  nkeySeed?: string;
  caFile?: string;
  timeoutMs?: number;
  /** Reporting-MTA of the DSNs `bounce` sends; the local host name by default. */
  hostname?: string;
}

export interface QueueHistoryEvent {
  at: string;
  event: string;
  detail?: string;
}

export interface ShownMessage {
  message: QueuedMessage;
  headers?: string;
  history: QueueHistoryEvent[];
}
