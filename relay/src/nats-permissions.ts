// What a relay may do on NATS, as a nats-server permissions block: the operator gives the relays'
// nkey user exactly this (operator/src/render/nats-objects.ts), so a leaked relay seed reaches the
// mail queue and the filter state, not the rest of the account nor JetStream's administration.
// test/unit/nats-objects.test.ts checks every subject layout.ts builds against it, and
// test/integration/managed-nats.test.ts runs a relay under it.

import { GREYLIST_BUCKET } from "./filter/greylist.ts";
import { PRIMARY_STATUS_BUCKET } from "./filter/monitoring-mode.ts";
import { RECIPIENT_CACHE_BUCKET } from "./filter/recipient-verify.ts";

export interface NatsPermissions {
  publish: { allow: string[]; deny: string[] };
  subscribe: { allow: string[] };
}

/**
 * Every subject of layout.ts (queue, spool, rate counters), with or without a site token after
 * "mxw.": the relay's own data.
 */
export const RELAY_SUBJECT_ROOT = "mxw.>";

/** The shared filter buckets (greylisting, callout answers, monitoring mode's primary status). */
export const RELAY_KV_BUCKETS = [GREYLIST_BUCKET, RECIPIENT_CACHE_BUCKET, PRIMARY_STATUS_BUCKET] as const;

/**
 * The permissions of a relay of the site `sites.self` (its JetStream domain) sharing filter state
 * with `sites.peers`; without sites, those of a single-site relay.
 */
export function relayNatsPermissions(sites?: { self: string; peers: string[] }): NatsPermissions {
  const kvSubjects = RELAY_KV_BUCKETS.flatMap((bucket) => [
    `$KV.${bucket}.>`,
    // A site writes only its own origin bucket (filter/shared-bucket.ts); the view sources the rest.
    ...(sites ? [`$KV.${bucket}-${sites.self}.>`] : []),
  ]);
  return {
    publish: {
      allow: [
        RELAY_SUBJECT_ROOT,
        ...kvSubjects,
        // Streams, consumers, pull requests, direct gets; the peers' APIs for the shared filter views.
        "$JS.API.>",
        ...(sites ? [sites.self, ...sites.peers].map((domain) => `$JS.${domain}.API.>`) : []),
        // Acknowledgements (ack, nak, in-progress, term) and flow-control replies of consumers.
        "$JS.ACK.>",
        "$JS.FC.>",
      ],
      // What a relay never does: remove a stream or the account's data, or steer the cluster.
      deny: ["$JS.API.STREAM.DELETE.>", "$JS.API.ACCOUNT.PURGE.>", "$JS.API.META.>", "$JS.API.SERVER.>", "$JS.API.STREAM.PEER.>", "$JS.API.STREAM.LEADER.>"],
    },
    // Replies (the reply inbox, pull requests, KV watchers) come on inboxes.
    subscribe: { allow: ["_INBOX.>"] },
  };
}
