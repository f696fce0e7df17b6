// The Message-ID of an accepted message, for its tracking record (queue/tracking.ts): read from the
// header section the intake already holds, never from the body.

const MAX_MESSAGE_ID = 998;

/** The first Message-ID field's value, unfolded and without its angle brackets; undefined when there is none. */
export function messageIdOf(header: Buffer): string | undefined {
  const text = header.toString("latin1").replace(/\r\n[ \t]+/g, " ");
  const match = /(?:^|\r\n)message-id:[ \t]*<?([^\r\n>]*)>?/i.exec(text);
  const id = match?.[1]?.trim();
  return id ? id.slice(0, MAX_MESSAGE_ID) : undefined;
}
