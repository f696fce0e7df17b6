// The relay's validation of an mxwarden document against the same schema the CRD is generated
// from: defaults first, as the API server applies them, then types, shapes and the paired rules.
// The first problem found is thrown as a ConfigError naming the field path users see
// ("spec.recipients.list[0]").

import type { TSchema } from "@sinclair/typebox";
import { RELAY_CHECKS, type Annotated } from "./schema.ts";

export class ConfigError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "ConfigError";
    this.path = path;
  }
}

type Obj = Record<string, unknown>;

export function isObject(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

interface JsonSchema {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  "x-kubernetes-int-or-string"?: boolean;
}

const view = (schema: TSchema): JsonSchema => schema as JsonSchema;

/** A copy of `value` with the schema's defaults filled in where a field is absent. */
export function withDefaults(schema: TSchema, value: unknown): unknown {
  const s = view(schema);
  if (s.properties && isObject(value)) {
    const out: Obj = { ...value };
    for (const [key, child] of Object.entries(s.properties)) {
      // The API server prunes a null in a non-nullable field before defaulting: so does the relay.
      if (out[key] === null) delete out[key];
      if (out[key] === undefined && child.default !== undefined) out[key] = structuredClone(child.default);
      if (out[key] !== undefined) out[key] = withDefaults(child as TSchema, out[key]);
    }
    return out;
  }
  if (s.items && Array.isArray(value)) return value.map((item) => withDefaults(s.items as TSchema, item));
  return value;
}

/**
 * Every default the schema has, also inside absent sections: what a reader of a valid document
 * relies on. (The API server fills defaults only into objects that are present.)
 */
export function withAllDefaults(schema: TSchema, value: unknown): unknown {
  const s = view(schema);
  if (!s.properties || !isObject(value)) return withDefaults(schema, value);
  const out: Obj = { ...value };
  for (const [key, child] of Object.entries(s.properties)) {
    if ((out[key] === undefined || out[key] === null) && child.properties) out[key] = {};
  }
  const filled = withDefaults(schema, out) as Obj;
  for (const [key, child] of Object.entries(s.properties)) {
    if (child.properties && isObject(filled[key])) filled[key] = withAllDefaults(child as TSchema, filled[key]);
  }
  return filled;
}

const patterns = new Map<string, RegExp>();
function matches(pattern: string, text: string): boolean {
  let re = patterns.get(pattern);
  if (!re) {
    re = new RegExp(pattern, "u");
    patterns.set(pattern, re);
  }
  return re.test(text);
}

/** Throws the first problem of `value` (already defaulted) under `schema`, at `path`. */
export function check(schema: TSchema, value: unknown, path: string): void {
  const s = view(schema);
  const checks = (schema as Annotated<TSchema>)[RELAY_CHECKS];
  const fail = (generic: string): never => {
    // kubectl reads a plain off/on/yes/no as a boolean (YAML 1.1); say so where a word was expected.
    const hint = typeof value === "boolean" && s.type === "string" ? " (quote it: YAML 1.1 reads a plain off, on, yes or no as a boolean)" : "";
    throw new ConfigError(path, `${checks?.message ?? generic}${hint}`);
  };
  if (s["x-kubernetes-int-or-string"]) {
    if (typeof value === "string") {
      if (s.pattern && !matches(s.pattern, value)) fail("must be an integer or a string");
    } else if (!Number.isSafeInteger(value)) fail("must be an integer or a string");
  } else if (s.enum) {
    if (!s.enum.includes(value)) fail(`must be one of ${s.enum.join(", ")}`);
  } else {
    switch (s.type) {
      case "object":
        checkObject(s, value, path, fail);
        break;
      case "array": {
        if (!Array.isArray(value)) return fail("must be a list");
        if (s.maxItems !== undefined && value.length > s.maxItems) fail(`must have at most ${s.maxItems} entries`);
        if (s.minItems !== undefined && value.length < s.minItems) fail(`must have at least ${s.minItems} entries`);
        for (const [index, item] of value.entries()) check(s.items as TSchema, item, `${path}[${index}]`);
        break;
      }
      case "string": {
        if (typeof value !== "string") return fail("must be a string");
        const length = [...value].length;
        if ((s.minLength !== undefined && length < s.minLength) || (s.maxLength !== undefined && length > s.maxLength))
          fail(`must be ${s.minLength ?? 0} to ${s.maxLength ?? "any number of"} characters long`);
        if (s.pattern && !matches(s.pattern, value)) fail(`must match ${s.pattern}`);
        break;
      }
      case "integer":
      case "number": {
        if (typeof value !== "number" || !Number.isFinite(value) || (s.type === "integer" && !Number.isInteger(value)))
          return fail(`must be ${s.type === "integer" ? "an integer" : "a number"}`);
        if ((s.minimum !== undefined && value < s.minimum) || (s.maximum !== undefined && value > s.maximum)) fail(`must be from ${s.minimum} to ${s.maximum}`);
        break;
      }
      case "boolean":
        if (typeof value !== "boolean") fail("must be true or false");
        break;
    }
  }
  for (const rule of checks?.rules ?? []) {
    if (!rule.holds(value)) throw new ConfigError(`${path}${rule.fieldPath ?? ""}`, rule.message);
  }
}

function checkObject(s: JsonSchema, value: unknown, path: string, fail: (generic: string) => never): void {
  if (!isObject(value)) return fail("must be an object");
  if (s.properties) {
    for (const key of Object.keys(value)) {
      if (!(key in s.properties)) throw new ConfigError(`${path}.${key}`, "is not a known field");
    }
    for (const key of s.required ?? []) {
      if (value[key] === undefined || value[key] === null) throw new ConfigError(`${path}.${key}`, "is required");
    }
    for (const [key, child] of Object.entries(s.properties)) {
      if (value[key] !== undefined && value[key] !== null) check(child as TSchema, value[key], `${path}.${key}`);
    }
  } else if (typeof s.additionalProperties === "object") {
    for (const [key, item] of Object.entries(value)) check(s.additionalProperties as TSchema, item, `${path}.${key}`);
  }
}

/** Defaults applied, then checked: the document as the API server would store it. */
export function validate(schema: TSchema, value: unknown, path: string): unknown {
  const defaulted = withDefaults(schema, value);
  check(schema, defaulted, path);
  return defaulted;
}
