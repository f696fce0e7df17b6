// A few builders for structural OpenAPI v3 schemas, so the CRDs read like the types they describe.
// Kubernetes requires structural schemas: every field has a type, objects list their properties,
// and free-form maps say so with additionalProperties.

export interface CelRule {
  rule: string;
  message: string;
  /** Field path the error points at, relative to the schema the rule sits on. */
  fieldPath?: string;
}

export interface Schema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: Schema;
  items?: Schema;
  enum?: string[];
  default?: unknown;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-validations"?: CelRule[];
  "x-kubernetes-preserve-unknown-fields"?: boolean;
}

type Extra = Omit<Schema, "type" | "properties" | "items">;

export function object(description: string, properties: Record<string, Schema>, extra: Extra = {}): Schema {
  return { type: "object", description, properties, ...extra };
}

export function string(description: string, extra: Extra = {}): Schema {
  return { type: "string", description, ...extra };
}

export function integer(description: string, extra: Extra = {}): Schema {
  return { type: "integer", description, ...extra };
}

export function number(description: string, extra: Extra = {}): Schema {
  return { type: "number", description, ...extra };
}

export function boolean(description: string, extra: Extra = {}): Schema {
  return { type: "boolean", description, ...extra };
}

export function array(description: string, items: Schema, extra: Extra = {}): Schema {
  return { type: "array", description, items, ...extra };
}

export function oneOf(description: string, values: readonly string[], defaultValue?: string): Schema {
  return { type: "string", description, enum: [...values], ...(defaultValue === undefined ? {} : { default: defaultValue }) };
}

export function stringMap(description: string): Schema {
  return { type: "object", description, additionalProperties: { type: "string" } };
}

/** Durations as the relay reads them: "90s", "1h30m", "5d". */
export const DURATION_PATTERN = "^([0-9]+(ms|s|m|h|d))+$";
export function duration(description: string): Schema {
  return string(description, { pattern: DURATION_PATTERN, maxLength: 32 });
}

/** Byte sizes as Kubernetes quantities ("25Mi") or a plain number of bytes. */
export function byteSize(description: string): Schema {
  return { description, "x-kubernetes-int-or-string": true, pattern: "^[0-9]+(k|M|G|Ki|Mi|Gi)?$" };
}

/** A DNS host name (IDN allowed): labels of letters, digits and inner hyphens, at least two labels. */
export const HOSTNAME_RULE = "self.matches('^([\\\\p{L}\\\\p{N}]([\\\\p{L}\\\\p{N}-]{0,61}[\\\\p{L}\\\\p{N}])?\\\\.)+[\\\\p{L}\\\\p{N}]([\\\\p{L}\\\\p{N}-]{0,61}[\\\\p{L}\\\\p{N}])?$')";
export function hostname(description: string): Schema {
  return string(description, { maxLength: 253, "x-kubernetes-validations": [{ rule: HOSTNAME_RULE, message: "must be a DNS name such as example.com" }] });
}

export function port(description: string, defaultValue?: number): Schema {
  return integer(description, { minimum: 1, maximum: 65535, ...(defaultValue === undefined ? {} : { default: defaultValue }) });
}

/** The metav1.Condition shape, as status.conditions lists it. */
export function conditions(): Schema {
  return array("Observations of the object's state, keyed by type (Kubernetes API conventions)", object("One condition", {
    type: string("CamelCase condition type", { maxLength: 316 }),
    status: oneOf("Whether the condition holds", ["True", "False", "Unknown"]),
    reason: string("CamelCase reason for the last transition", { maxLength: 1024 }),
    message: string("Human-readable detail", { maxLength: 32768 }),
    observedGeneration: integer("metadata.generation this condition was computed from", { minimum: 0 }),
    lastTransitionTime: string("When status last changed", { format: "date-time" }),
  }, { required: ["type", "status", "reason", "lastTransitionTime"] }), { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] });
}
