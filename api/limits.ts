// Bounds of RelayDomain fields that other parts of the system are sized for.

/** Upper bound of spec.maxMessageSize; the queue and scanners are sized for it. */
export const MAX_MESSAGE_BYTES_LIMIT = 200 * 1024 * 1024;
/** Upper bound of spec.queue.lifetime (RFC 5321 suggests 4-5 days; services offer up to 30). */
export const MAX_QUEUE_LIFETIME_MS = 30 * 86_400_000;
