// smtp-server picks the enhanced status code of a hook's error reply from the numeric code alone
// (550 always becomes 5.1.1), which would mislabel "relay denied" (5.7.1) or "too big" (5.3.4).
// Our replies carry their own enhanced code at the start of the text; this adapter sends them
// as written and leaves every other reply to smtp-server.

import { SMTPConnection } from "smtp-server/lib/smtp-connection";

const withEnhancedCode = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

type SendFn = (code: number, data: unknown, context?: unknown) => void;

export function installEnhancedReplies(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as { send: SendFn };
  const original = proto.send;
  proto.send = function send(this: unknown, code: number, data: unknown, context?: unknown): void {
    if (context === undefined && typeof data === "string" && withEnhancedCode.test(data)) {
      original.call(this, code, data, false);
      return;
    }
    original.call(this, code, data, context);
  };
}
