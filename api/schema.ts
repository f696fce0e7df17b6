// The builders every mxwarden API schema is written with. One definition gives three things:
// - the TypeScript type, through TypeBox's Static;
// - the CRD's structural OpenAPI schema (crds.ts), defaults and CEL rules included;
// - the relay's validation of the same document (validate.ts).
// A cross-field or range rule is written twice on purpose, side by side: in CEL for the API server
// and as a TypeScript predicate for the relay. test/integration/contract-parity.test.ts runs one
// table of documents through kubectl and through the relay and fails when the two disagree.

import {
  Type,
  type TSchema,
  type TString,
  type TUnsafe,
  type TBoolean,
  type TInteger,
  type TNumber,
  type TArray,
  type TObject,
  type TProperties,
} from "@sinclair/typebox";
import { normaliseDomain } from "./domain-name.ts";
import { parseByteSize, parseDuration } from "./quantities.ts";

/** A CEL rule as the CRD carries it (x-kubernetes-validations). */
export interface CelRule {
  rule: string;
  message: string;
  /** Field path the error points at, relative to the schema the rule sits on. */
  fieldPath?: string;
}

/** A CEL rule with the relay's predicate for the same condition. */
export interface Rule extends CelRule {
  /** Applied to the defaulted value the rule sits on; true when the value is acceptable. */
  holds(self: unknown): boolean;
  /** Checked by the relay only, where CEL has no equivalent (IDNA conversion). */
  relayOnly?: true;
}

/** What only the relay's validator reads; a symbol key, so it never reaches the CRD. */
export const RELAY_CHECKS = Symbol("mxwarden.relayChecks");

export interface RelayChecks {
  /** Message for a value of the wrong type or shape (pattern, length, enum, range). */
  message?: string;
  rules?: Rule[];
}

export type Annotated<T extends TSchema> = T & { [RELAY_CHECKS]?: RelayChecks };

function annotate<T extends TSchema>(schema: T, checks: RelayChecks): Annotated<T> {
  const annotated = schema as Annotated<T>;
  annotated[RELAY_CHECKS] = checks;
  if (checks.rules) {
    const cel = checks.rules.filter((rule) => !rule.relayOnly);
    if (cel.length > 0)
      (annotated as TSchema)["x-kubernetes-validations"] = cel.map(({ rule, message, fieldPath }) =>
        fieldPath === undefined ? { rule, message } : { rule, message, fieldPath },
      );
  }
  return annotated;
}

/** A rule whose predicate sees the value with its schema's type. */
export function rule<T>(cel: string, message: string, holds: (self: T) => boolean, fieldPath?: string): Rule {
  return { rule: cel, message, holds: holds as (self: unknown) => boolean, ...(fieldPath === undefined ? {} : { fieldPath }) };
}

// kubectl and helm read YAML 1.1 (sigs.k8s.io/yaml), where these plain words are booleans: an enum
// value among them could not be written unquoted by users, nor installed with a plain default.
export const YAML11_BOOLEAN_WORDS = new Set(["y", "yes", "n", "no", "true", "false", "on", "off"]);

export function object<P extends TProperties>(description: string, properties: P, rules: Rule[] = []): Annotated<TObject<P>> {
  return annotate(Type.Object(properties, { description }), { rules });
}

export function string(
  description: string,
  options: { pattern?: string; minLength?: number; maxLength?: number; format?: string; message?: string; rules?: Rule[] } = {},
): Annotated<TString> {
  const { message, rules, ...schema } = options;
  return annotate(Type.String({ description, ...schema }), { ...(message === undefined ? {} : { message }), rules: rules ?? [] });
}

export function oneOf<const V extends readonly string[]>(description: string, values: V, defaultValue?: V[number]): Annotated<TUnsafe<V[number]>> {
  for (const value of values) {
    if (YAML11_BOOLEAN_WORDS.has(value.toLowerCase()))
      throw new Error(`enum value ${JSON.stringify(value)} is a boolean in YAML 1.1: kubectl would read it as one`);
  }
  const schema = Type.Unsafe<V[number]>({ type: "string", description, enum: [...values], ...(defaultValue === undefined ? {} : { default: defaultValue }) });
  return annotate(schema, { message: `must be one of ${values.join(", ")}` });
}

export function boolean(description: string, defaultValue?: boolean): Annotated<TBoolean> {
  return annotate(Type.Boolean({ description, ...(defaultValue === undefined ? {} : { default: defaultValue }) }), { message: "must be true or false" });
}

export function integer(description: string, options: { minimum?: number; maximum?: number; default?: number } = {}): Annotated<TInteger> {
  const range =
    options.minimum !== undefined && options.maximum !== undefined
      ? ` from ${options.minimum} to ${options.maximum}`
      : options.minimum !== undefined
        ? ` of at least ${options.minimum}`
        : "";
  return annotate(Type.Integer({ description, ...options }), { message: `must be an integer${range}` });
}

export function number(description: string, options: { minimum?: number; maximum?: number; message?: string } = {}): Annotated<TNumber> {
  const { message, ...schema } = options;
  return annotate(Type.Number({ description, ...schema }), { message: message ?? "must be a number" });
}

export function port(description: string, defaultValue?: number): Annotated<TInteger> {
  return integer(description, { minimum: 1, maximum: 65535, ...(defaultValue === undefined ? {} : { default: defaultValue }) });
}

export function array<T extends TSchema>(
  description: string,
  items: T,
  options: { maxItems?: number; minItems?: number; listType?: "atomic" | "set" | "map"; listMapKeys?: string[]; message?: string; rules?: Rule[] } = {},
): Annotated<TArray<T>> {
  const { listType, listMapKeys, message, rules, ...schema } = options;
  return annotate(
    Type.Array(items, {
      description,
      ...schema,
      ...(listType === undefined ? {} : { "x-kubernetes-list-type": listType }),
      ...(listMapKeys === undefined ? {} : { "x-kubernetes-list-map-keys": listMapKeys }),
    }),
    { message: message ?? "must be a list", rules: rules ?? [] },
  );
}

export function stringMap(description: string): Annotated<TUnsafe<Record<string, string>>> {
  // additionalProperties, not TypeBox's Record (patternProperties): CRDs must be structural.
  return annotate(Type.Unsafe<Record<string, string>>({ type: "object", description, additionalProperties: { type: "string" } }), {
    message: "must be a map of strings",
  });
}

// --- Quantities ---------------------------------------------------------------------------------

/** Durations as the relay reads them: "90s", "1h30m", "5d". */
export const DURATION_PATTERN = "^([0-9]+(ms|s|m|h|d))+$";
const DAY_MS = 86_400_000;

/** CEL: milliseconds in a duration string that matches DURATION_PATTERN (quantities.ts's parseDuration). */
export function celDurationMs(expression: string): string {
  return `${expression}.findAll('[0-9]+(ms|s|m|h|d)').map(p, int(p.find('[0-9]+')) * (p.endsWith('ms') ? 1 : p.endsWith('s') ? 1000 : p.endsWith('m') ? 60000 : p.endsWith('h') ? 3600000 : 86400000)).sum()`;
}

/** A human duration for messages: whole days, hours, minutes or seconds. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", DAY_MS],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const durationMs = (value: unknown): number => parseDuration(value as string) ?? Number.NaN;

export function duration(description: string, options: { default?: string; maxMs?: number } = {}): Annotated<TString> {
  const message = `must be a duration such as "90s", "1h" or "5d"`;
  const rules = [rule<string>("self.matches('[1-9]')", message, (self) => durationMs(self) > 0)];
  if (options.maxMs !== undefined) {
    const max = options.maxMs;
    rules.push(rule<string>(`${celDurationMs("self")} <= ${max}`, `must be at most ${formatDuration(max)}`, (self) => durationMs(self) <= max));
  }
  return annotate(
    Type.String({ description, pattern: DURATION_PATTERN, maxLength: 32, ...(options.default === undefined ? {} : { default: options.default }) }),
    { message, rules },
  );
}

/** "100/1m": a count of 1 to 999,999,999 per window of 1s to 1d. */
export function rate(description: string): Annotated<TString> {
  const message = `must be a rate such as "100/1m" (recipients per window of 1s to 1d)`;
  const parts = (self: string): [number, number] => {
    const [count = "", window = ""] = self.split("/");
    return [Number(count), durationMs(window)];
  };
  return annotate(Type.String({ description, pattern: "^[0-9]{1,9}/([0-9]+(ms|s|m|h|d))+$", maxLength: 48 }), {
    message,
    rules: [
      rule<string>("int(self.split('/')[0]) >= 1", message, (self) => parts(self)[0] >= 1),
      rule<string>(
        `${celDurationMs("self.split('/')[1]")} >= 1000 && ${celDurationMs("self.split('/')[1]")} <= ${DAY_MS}`,
        message,
        (self) => parts(self)[1] >= 1000 && parts(self)[1] <= DAY_MS,
      ),
    ],
  });
}

/** Byte sizes as Kubernetes quantities ("25Mi", "20M") or a plain number of bytes. */
export const BYTE_SIZE_PATTERN = "^[0-9]+(k|M|G|Ki|Mi|Gi)?$";

export function byteSize(description: string, options: { default?: string; min: number; max: number; message: string }): Annotated<TUnsafe<string | number>> {
  const bytes = (self: unknown): number => (typeof self === "number" || typeof self === "string" ? parseByteSize(self) : undefined) ?? Number.NaN;
  const cel = "(type(self) == int ? self : quantity(string(self)).asInteger())";
  // An int-or-string field: TypeBox has no such type, so its JSON Schema is written by hand.
  const schema = Type.Unsafe<string | number>({
    description,
    "x-kubernetes-int-or-string": true,
    pattern: BYTE_SIZE_PATTERN,
    ...(options.default === undefined ? {} : { default: options.default }),
  });
  return annotate(schema, {
    message: options.message,
    rules: [
      rule<unknown>(
        `${cel} >= ${options.min} && ${cel} <= ${options.max}`,
        options.message,
        (self) => bytes(self) >= options.min && bytes(self) <= options.max,
      ),
    ],
  });
}

// --- Names and addresses -------------------------------------------------------------------------

// Labels of letters and digits (any script) with inner hyphens, at least two labels. The relay
// also converts each label to its A-label (domain-name.ts), which this pattern cannot do.
const HOSTNAME_PATTERN = "^([\\p{L}\\p{N}]([\\p{L}\\p{N}-]{0,61}[\\p{L}\\p{N}])?\\.)+[\\p{L}\\p{N}]([\\p{L}\\p{N}-]{0,61}[\\p{L}\\p{N}])?$";

/** A DNS host name (IDN allowed). */
export function hostname(description: string, message = "must be a DNS name such as example.com"): Annotated<TString> {
  // The pattern, not a CEL rule: OpenAPI patterns cost nothing against the CRD's CEL budget, which
  // lists of names (allowSenderDomains) would exceed. The A-label conversion has no CEL equivalent:
  // it is the relay's alone, and refuses only names such as "xn--zz.example" that the pattern lets by.
  return annotate(Type.String({ description, maxLength: 253, pattern: HOSTNAME_PATTERN }), {
    message,
    rules: [relayOnly(message, (self) => normaliseDomain(self as string) !== undefined)],
  });
}

/** A check the relay makes that no CEL expression can: it never reaches the CRD. */
function relayOnly(message: string, holds: (self: unknown) => boolean): Rule {
  return { rule: "", message, holds, relayOnly: true };
}

// A mail address as an envelope carries it: a local part of 1 to 64 characters without @, space or
// control characters (no quoted forms), then a host name as HOSTNAME_PATTERN has it. Written with
// \x escapes, which RE2 (the API server) and JavaScript read alike; their \s classes differ.
const MAIL_ADDRESS_PATTERN = `^[^@\\x00-\\x20\\x7f]{1,64}@${HOSTNAME_PATTERN.slice(1)}`;

/**
 * A mail address such as alice@example.com (IDN domain allowed). An OpenAPI pattern, which the API
 * server and the relay apply alike, rather than a CEL rule: lists of addresses would cost the CRD's
 * CEL budget more than it has.
 */
export function mailAddress(description: string): Annotated<TString> {
  return annotate(Type.String({ description, maxLength: 320, pattern: MAIL_ADDRESS_PATTERN }), { message: "must be a mail address such as alice@example.com" });
}

/** An IPv4 or IPv6 address, or a CIDR block. */
export function addressOrCidr(description: string): Annotated<TString> {
  const message = "must be an address or CIDR such as 192.0.2.0/24";
  return annotate(Type.String({ description, maxLength: 64 }), {
    message,
    rules: [rule<string>("isIP(self) || isCIDR(self)", message, (self) => parseCidr(self) !== undefined)],
  });
}

/** "address/bits" for an address or CIDR block, or undefined when it is neither. */
export function parseCidr(value: string): string | undefined {
  const [address = "", prefix, ...rest] = value.split("/");
  const family = isIPAddress(address);
  if (family === 0 || rest.length > 0) return undefined;
  const max = family === 6 ? 128 : 32;
  if (prefix !== undefined && !/^(0|[1-9][0-9]{0,2})$/.test(prefix)) return undefined;
  const bits = prefix === undefined ? max : Number(prefix);
  return bits <= max ? `${address}/${bits}` : undefined;
}

// Kubernetes' isIP()/isCIDR() take canonical forms only: no zone, no leading zeros, no IPv4-mapped
// IPv6 written with a dotted quad. The relay accepts exactly those.
function isIPAddress(text: string): 0 | 4 | 6 {
  if (/^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/.test(text)) return 4;
  if (!/^[0-9a-fA-F:]+$/.test(text) || !text.includes(":")) return 0;
  const halves = text.split("::");
  if (halves.length > 2) return 0;
  const groups = halves.map((half) => (half === "" ? [] : half.split(":")));
  if (groups.some((list) => list.some((group) => !/^[0-9a-fA-F]{1,4}$/.test(group)))) return 0;
  const count = groups.reduce((sum, list) => sum + list.length, 0);
  return (halves.length === 2 ? count < 8 : count === 8) ? 6 : 0;
}

/** The metav1.Condition shape, as status.conditions lists it. */
export function conditions(): Annotated<TArray> {
  return array(
    "Observations of the object's state, keyed by type (Kubernetes API conventions)",
    Type.Object(
      {
        type: string("CamelCase condition type", { maxLength: 316 }),
        // Written by the operator as JSON, never by users in YAML: Kubernetes' own True/False words.
        status: Type.Unsafe<"True" | "False" | "Unknown">({ type: "string", description: "Whether the condition holds", enum: ["True", "False", "Unknown"] }),
        reason: string("CamelCase reason for the last transition", { maxLength: 1024 }),
        message: Type.Optional(string("Human-readable detail", { maxLength: 32768 })),
        observedGeneration: Type.Optional(integer("metadata.generation this condition was computed from", { minimum: 0 })),
        lastTransitionTime: string("When status last changed", { format: "date-time" }),
      },
      { description: "One condition" },
    ),
    { listType: "map", listMapKeys: ["type"] },
  );
}
