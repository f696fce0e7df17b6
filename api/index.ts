// mxwarden's API, shared by the relay and the operator: the RelayDomain, RelaySite and RelayQueueRequest resources
// (types, CRD schemas, validation), the one domain key, and the quantities their specs use.
// Import it as "#api" (package.json "imports"); nothing outside api/ reaches into its files.

export {
  API_VERSION,
  DEFAULT_DELETION_GRACE,
  DEFAULT_QUEUE_LIFETIME,
  GROUP,
  OPERATOR_ONLY_SPEC_FIELDS,
  VERSION,
  recipientsPolicy,
  relayDomainSpecSchema,
  relayDomainStatusSchema,
} from "./relay-domain.ts";
export type { DomainSiteStatus, ObjectMeta, RelayDomain, RelayDomainSpec, RelayDomainStatus } from "./relay-domain.ts";
export {
  DEFAULT_RELAY_REPLICAS,
  DEFAULT_SITE_NAMESPACE,
  RELAY_CONTAINER_SMTP_PORT,
  RELAY_METRICS_PORT,
  relaySiteSpecSchema,
  relaySiteStatusSchema,
  DEFAULT_LEAFNODE_PORT,
  DEFAULT_NATS_REPLICAS,
  DEFAULT_NATS_STORAGE,
  DEFAULT_CLAMD_REPLICAS,
  DEFAULT_FRESHCLAM_CHECKS,
  DEFAULT_RSPAMD_REPLICAS,
  DEFAULT_RSPAMD_WORKERS,
} from "./relay-site.ts";
export type { RelaySite, RelaySiteSpec, RelaySiteStatus } from "./relay-site.ts";
export {
  acceptWhenPolicy,
  accessPolicy,
  antispamPolicy,
  antivirusPolicy,
  authenticationPolicy,
  clientChecksPolicy,
  dnsblPolicy,
  greylistingPolicy,
  rateLimitsPolicy,
} from "./filter-policies.ts";
export { findCondition, setCondition } from "./conditions.ts";
export type { Condition, ConditionInput, ConditionStatus } from "./conditions.ts";
export {
  DEFAULT_QUEUE_REQUEST_TTL_SECONDS,
  MAX_LISTED_IN_STATUS,
  MAX_QUEUE_IDS,
  MAX_RECIPIENTS_IN_STATUS,
  MUTATING_QUEUE_ACTIONS,
  QUEUE_REQUEST_ACTIONS,
  relayQueueRequestSpecSchema,
  relayQueueRequestStatusSchema,
} from "./relay-queue-request.ts";
export type {
  ListedMessage,
  ListedRecord,
  MutatingQueueAction,
  QueueRequestAction,
  QueueRequestPhase,
  QueueRequestSelector,
  RelayQueueRequest,
  RelayQueueRequestSpec,
  RelayQueueRequestStatus,
  SiteQueueResult,
} from "./relay-queue-request.ts";
export { allCrds, relayDomainCrd, relayQueueRequestCrd, relaySiteCrd } from "./crds.ts";
export type { CustomResourceDefinition, Schema } from "./crds.ts";
export { domainKey, normaliseDomain } from "./domain-name.ts";
export { HOLD_MAX_SHARE_OF_LIFETIME, holdEnd, maxHoldMs } from "./hold.ts";
export { MAX_MESSAGE_BYTES_LIMIT, MAX_QUEUE_LIFETIME_MS } from "./limits.ts";
export { parseByteSize, parseDuration } from "./quantities.ts";
export { formatDuration, parseCidr, YAML11_BOOLEAN_WORDS } from "./schema.ts";
export { ConfigError, isObject, validate, withAllDefaults } from "./validate.ts";
export { encodeQueueReport, parseQueueReport, queueReportKey } from "./queue-report.ts";
export type { DomainPrimaryFigures, DomainQueueFigures, QueueReport } from "./queue-report.ts";
