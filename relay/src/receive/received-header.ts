// The RFC 5321 §4.4 trace header this relay prepends to every accepted message.

import type { CipherNameAndProtocol } from "node:tls";
import { rfc5322Date } from "../smtp/index.ts";

export interface ReceivedInfo {
  heloName: string;
  clientHostname: string;
  clientAddress: string;
  byHostname: string;
  protocol: "ESMTP" | "ESMTPS" | "SMTP" | "UTF8SMTP" | "UTF8SMTPS";
  queueId: string;
  /** The "for" clause is only written for a single recipient, to not disclose the others. */
  recipients: readonly string[];
  tls?: { protocol: string; cipher: string } | undefined;
  date: Date;
}

function clean(value: string): string {
  return value.replace(/[^\x21-\x7e]/g, "?").slice(0, 255);
}

/**
 * The TLS clause from what node:tls reports for the session (TLSSocket#getCipher()): the protocol
 * version and OpenSSL's cipher name, as Postfix writes them ("using TLSv1.3 with cipher ...").
 */
export function receivedTls(cipher: CipherNameAndProtocol): { protocol: string; cipher: string } {
  return { protocol: cipher.version, cipher: cipher.name };
}

export function receivedHeader(info: ReceivedInfo): string {
  // Without a verified reverse name smtp-server reports "[address]"; RFC 5321 §4.4 and Postfix say "unknown".
  const verifiedName = info.clientHostname && !info.clientHostname.startsWith("[") ? info.clientHostname : "unknown";
  const from = `from ${clean(info.heloName || "unknown")} (${clean(verifiedName)} [${clean(info.clientAddress)}])`;
  const tls = info.tls ? `\r\n\t(using ${clean(info.tls.protocol)} with cipher ${clean(info.tls.cipher)})` : "";
  const recipient = info.recipients.length === 1 ? `\r\n\tfor <${clean(info.recipients[0] as string)}>` : "";
  return `Received: ${from}\r\n\tby ${clean(info.byHostname)} (mxwarden) with ${info.protocol} id ${info.queueId}${tls}${recipient};\r\n\t${rfc5322Date(info.date)}\r\n`;
}
