// RelayQueueRequest (namespaced): one queue operation asked for by the team that owns a
// RelayDomain, carried out by the operator at every site serving that domain (docs/operator.md,
// "Queue operations from Kubernetes"). It names its RelayDomain by name only: there is no namespace
// field, so a request reaches the mail of the RelayDomains in its own namespace and nothing else.
// Namespace RBAC decides who may create one, and the Kubernetes audit log records who did.

import { Type, type Static } from "@sinclair/typebox";
import type { Condition } from "./conditions.ts";
import type { API_VERSION, ObjectMeta } from "./relay-domain.ts";
import { array, boolean, conditions, duration, integer, object, oneOf, rule, string } from "./schema.ts";

const { Optional } = Type;

export const QUEUE_REQUEST_ACTIONS = ["list", "retry", "hold", "release", "delete", "bounce", "find"] as const;
export type QueueRequestAction = (typeof QUEUE_REQUEST_ACTIONS)[number];
/** The actions that change the queue; each is carried out at most once per request. */
export const MUTATING_QUEUE_ACTIONS = ["retry", "hold", "release", "delete", "bounce"] as const;
export type MutatingQueueAction = (typeof MUTATING_QUEUE_ACTIONS)[number];

export const QUEUED_STATES = ["ready", "deferred", "held"] as const;
export const QUEUE_REQUEST_PHASES = ["Pending", "Running", "Succeeded", "Failed"] as const;
export type QueueRequestPhase = (typeof QUEUE_REQUEST_PHASES)[number];

/** Default spec.ttlSecondsAfterFinished: a finished request stays an hour for its owners to read. */
export const DEFAULT_QUEUE_REQUEST_TTL_SECONDS = 3600;
/** The longest a finished request may be kept (30 days), so old envelopes do not pile up in etcd. */
export const MAX_QUEUE_REQUEST_TTL_SECONDS = 30 * 86_400;
/** Messages or tracking records a request's status lists at most; `truncated` counts the rest. */
export const MAX_LISTED_IN_STATUS = 200;
/** Queue ids a request may name. */
export const MAX_QUEUE_IDS = 1000;
/** Recipients each listed message or record shows at most (an envelope may have hundreds). */
export const MAX_RECIPIENTS_IN_STATUS = 100;

const MUTATING_CEL = `[${MUTATING_QUEUE_ACTIONS.map((a) => `'${a}'`).join(", ")}]`;
const isMutating = (action: string): boolean => (MUTATING_QUEUE_ACTIONS as readonly string[]).includes(action);

interface SelectorView {
  queueIds?: string[];
  sender?: string;
  recipient?: string;
  olderThan?: string;
  state?: string;
  all?: boolean;
  messageId?: string;
  since?: string;
}

const selectorSchema = object("Which messages: always only those of the referenced RelayDomain's mail domain", {
  queueIds: Optional(
    array(
      "Queue ids, as `list` shows them",
      string("A queue id", { pattern: "^[0-9A-Z]{25}$", message: "must be a queue id such as LZ3X0A1B2C3D4E5F6A7B8C9D0" }),
      {
        maxItems: MAX_QUEUE_IDS,
        listType: "set",
      },
    ),
  ),
  sender: Optional(string("Envelope sender, as in mxwarden-queue --sender", { maxLength: 320 })),
  recipient: Optional(string("Envelope recipient, as in mxwarden-queue --recipient", { maxLength: 320 })),
  olderThan: Optional(duration("Only messages queued longer than this, such as 2h")),
  state: Optional(oneOf("Only messages in this state", QUEUED_STATES)),
  all: Optional(boolean("Every message of the domain that the other fields match (retry, hold, release, delete, bounce)")),
  messageId: Optional(string("find: the Message-ID header, with or without angle brackets", { maxLength: 998 })),
  since: Optional(duration("find: only messages accepted within this time, such as 2d")),
});

export const relayQueueRequestSpecSchema = object(
  "One queue operation on the mail of a RelayDomain in this namespace",
  {
    domainRef: string("Name of a RelayDomain in the request's own namespace", {
      minLength: 1,
      maxLength: 253,
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
      message: "must be the name of a RelayDomain in this namespace",
    }),
    action: oneOf(
      "What to do: list, retry (deliver now), hold, release, delete (silently), bounce (DSN to the sender) or find (message tracking)",
      QUEUE_REQUEST_ACTIONS,
    ),
    selector: Optional(selectorSchema),
    requestedBy: string("Who asks: the creating user's name (kubectl auth whoami); the chart's admission policy refuses any other", {
      minLength: 1,
      maxLength: 512,
    }),
    ttlSecondsAfterFinished: Optional(
      integer("Seconds a finished request is kept before the operator deletes it", {
        minimum: 0,
        maximum: MAX_QUEUE_REQUEST_TTL_SECONDS,
        default: DEFAULT_QUEUE_REQUEST_TTL_SECONDS,
      }),
    ),
  },
  [
    { rule: "self == oldSelf", message: "a RelayQueueRequest cannot be changed; create a new one", holds: () => true },
    rule<{ action: string; selector?: SelectorView }>(
      `!(self.action in ${MUTATING_CEL}) || (has(self.selector) && ((has(self.selector.queueIds) && size(self.selector.queueIds) > 0) != (has(self.selector.all) && self.selector.all)))`,
      "retry, hold, release, delete and bounce need either queueIds or all: true",
      (self) => !isMutating(self.action) || (self.selector?.queueIds?.length ?? 0) > 0 !== (self.selector?.all === true),
      ".selector",
    ),
    rule<{ action: string; selector?: SelectorView }>(
      "self.action != 'find' || (has(self.selector) && (has(self.selector.messageId) || has(self.selector.sender) || has(self.selector.recipient)))",
      "find needs messageId, sender or recipient",
      (self) =>
        self.action !== "find" || self.selector?.messageId !== undefined || self.selector?.sender !== undefined || self.selector?.recipient !== undefined,
      ".selector",
    ),
    rule<{ action: string; selector?: SelectorView }>(
      "self.action != 'find' || !has(self.selector) || (!has(self.selector.queueIds) && !has(self.selector.olderThan) && !has(self.selector.state) && !has(self.selector.all))",
      "find takes messageId, sender, recipient and since only",
      (self) =>
        self.action !== "find" ||
        (self.selector?.queueIds === undefined &&
          self.selector?.olderThan === undefined &&
          self.selector?.state === undefined &&
          self.selector?.all === undefined),
      ".selector",
    ),
    rule<{ action: string; selector?: SelectorView }>(
      "self.action == 'find' || !has(self.selector) || (!has(self.selector.messageId) && !has(self.selector.since))",
      "messageId and since are for find",
      (self) => self.action === "find" || (self.selector?.messageId === undefined && self.selector?.since === undefined),
      ".selector",
    ),
    rule<{ action: string; selector?: SelectorView }>(
      "self.action != 'list' || !has(self.selector) || !has(self.selector.all)",
      "list shows every matching message already: all is for retry, hold, release, delete and bounce",
      (self) => self.action !== "list" || self.selector?.all === undefined,
      ".selector.all",
    ),
  ],
);

export type RelayQueueRequestSpec = Static<typeof relayQueueRequestSpecSchema>;
export type QueueRequestSelector = NonNullable<RelayQueueRequestSpec["selector"]>;

const time = (description: string) => string(description, { format: "date-time" });
const recipients = () => array("Envelope recipients (at most 100 shown)", string("A recipient"), { maxItems: MAX_RECIPIENTS_IN_STATUS });

export const relayQueueRequestStatusSchema = object("What the operator did, written by it", {
  phase: Optional(oneOf("Pending, Running, Succeeded (at every site) or Failed", QUEUE_REQUEST_PHASES)),
  conditions: Optional(conditions()),
  domain: Optional(string("The mail domain acted on: the referenced RelayDomain's spec.domain, as the relays key it")),
  startedAt: Optional(time("When the operator began")),
  completedAt: Optional(time("When the request finished, at every site; the TTL counts from here")),
  results: Optional(
    array(
      "Per site: how many messages matched, were acted on or skipped, or why the site could not be asked",
      object("One site", {
        site: string("RelaySite name"),
        matched: integer("Messages (or tracking records) of the domain that matched", { minimum: 0 }),
        done: integer("Messages acted on (list, find: those listed)", { minimum: 0 }),
        skipped: integer("Messages left alone, each with its reason in skippedMessages", { minimum: 0 }),
        error: Optional(string("Why the site could not be asked, or failed part-way", { maxLength: 4096 })),
      }),
      { listType: "map", listMapKeys: ["site"], maxItems: 64 },
    ),
  ),
  messages: Optional(
    array(
      "list: the matching messages, oldest first, at most 200 (see truncated)",
      object("A queued message, as mxwarden-queue list --json shows it, and its site", {
        site: string("RelaySite holding it"),
        queueId: string("Queue id"),
        domain: string("Mail domain"),
        sender: string("Envelope sender (empty for the null sender)"),
        recipients: recipients(),
        state: oneOf("ready, deferred or held", QUEUED_STATES),
        arrivedAt: time("When it was accepted"),
        size: integer("Bytes", { minimum: 0 }),
        attempts: integer("Delivery attempts so far", { minimum: 0 }),
        nextAttemptAt: Optional(time("Next delivery attempt (deferred)")),
        lastError: Optional(string("The primary's last reply or the connection error", { maxLength: 4096 })),
      }),
      { maxItems: MAX_LISTED_IN_STATUS },
    ),
  ),
  records: Optional(
    array(
      "find: the matching tracking records, at most 200 (see truncated)",
      object("A tracking record, as mxwarden-queue find --json shows it", {
        site: string("RelaySite whose tracking bucket holds it"),
        queueId: string("Queue id"),
        messageId: Optional(string("Message-ID header", { maxLength: 998 })),
        sender: string("Envelope sender"),
        recipients: recipients(),
        domain: string("Mail domain"),
        client: Optional(string("Address of the client that handed it over")),
        arrivedAt: time("When it was accepted"),
        outcome: oneOf("Where it went", ["queued", "delivered", "bounced", "deleted", "expired"]),
        remoteReply: Optional(string("The primary's reply", { maxLength: 4096 })),
        updatedAt: time("When the outcome was recorded"),
      }),
      { maxItems: MAX_LISTED_IN_STATUS },
    ),
  ),
  queueIds: Optional(
    array(
      "retry, hold, release, delete, bounce: the messages acted on, at most 200 (see truncated)",
      object("One message acted on", { site: string("RelaySite"), queueId: string("Queue id") }),
      { maxItems: MAX_LISTED_IN_STATUS },
    ),
  ),
  skippedMessages: Optional(
    array(
      "Messages left alone and why (such as: being delivered right now), at most 200",
      object("One message", {
        site: Optional(string("RelaySite; absent for a named queue id that no site holds for the domain")),
        queueId: string("Queue id"),
        reason: string("Why", { maxLength: 1024 }),
      }),
      { maxItems: MAX_LISTED_IN_STATUS },
    ),
  ),
  truncated: Optional(integer("Entries left out of messages, records, queueIds or skippedMessages by the 200 limit", { minimum: 0 })),
});

export type RelayQueueRequestStatus = Omit<Static<typeof relayQueueRequestStatusSchema>, "conditions"> & { conditions?: Condition[] };
export type ListedMessage = NonNullable<RelayQueueRequestStatus["messages"]>[number];
export type ListedRecord = NonNullable<RelayQueueRequestStatus["records"]>[number];
export type SiteQueueResult = NonNullable<RelayQueueRequestStatus["results"]>[number];

export interface RelayQueueRequest {
  apiVersion: typeof API_VERSION;
  kind: "RelayQueueRequest";
  metadata: ObjectMeta & { generateName?: string };
  spec: RelayQueueRequestSpec;
  status?: RelayQueueRequestStatus;
}
