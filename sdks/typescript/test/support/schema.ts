// A small validator for the JSON Schema subset docs/openapi.json uses (OpenAPI 3.0 flavour:
// `nullable`), and a matcher from a request to its operation.

import { readFileSync } from "node:fs";
import * as path from "node:path";

import { REPO_DIR } from "./gateway.js";

export type Schema = {
  $ref?: string;
  type?: string;
  nullable?: boolean;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  allOf?: Schema[];
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
};

export interface Parameter {
  name: string;
  in: "query" | "path" | "header";
  required?: boolean;
  schema: Schema;
}

export interface Operation {
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, { schema: Schema }>; headers?: Record<string, unknown> }>;
}

export interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
}

export const OPENAPI_PATH = path.join(REPO_DIR, "docs/openapi.json");

export function loadOpenApi(): OpenApi {
  return JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as OpenApi;
}

export function resolve(doc: OpenApi, schema: Schema): Schema {
  let s = schema;
  while (s.$ref) {
    const name = s.$ref.replace("#/components/schemas/", "");
    const target = doc.components.schemas[name];
    if (!target) throw new Error(`unknown $ref ${s.$ref}`);
    s = target;
  }
  return s;
}

/** Every way `value` departs from `schema` (empty when it conforms). */
export function validate(doc: OpenApi, schema: Schema, value: unknown, at = "$"): string[] {
  const s = resolve(doc, schema);
  if (value === null) return s.nullable || s.type === "null" ? [] : [`${at}: null is not allowed`];
  if (s.allOf) return s.allOf.flatMap((part) => validate(doc, part, value, at));
  if (s.oneOf) {
    const matching = s.oneOf.filter((part) => validate(doc, part, value, at).length === 0).length;
    return matching === 1 ? [] : [`${at}: matches ${matching} of oneOf's ${s.oneOf.length} schemas`];
  }
  if (s.anyOf) {
    return s.anyOf.some((part) => validate(doc, part, value, at).length === 0) ? [] : [`${at}: matches none of anyOf`];
  }
  const problems: string[] = [];
  if (s.enum && !s.enum.includes(value)) problems.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`);
  switch (s.type) {
    case "string":
      if (typeof value !== "string") return [`${at}: not a string`];
      if (s.pattern && !new RegExp(s.pattern, "u").test(value)) problems.push(`${at}: does not match ${s.pattern}`);
      if (s.minLength !== undefined && [...value].length < s.minLength) problems.push(`${at}: shorter than ${s.minLength}`);
      if (s.maxLength !== undefined && [...value].length > s.maxLength) problems.push(`${at}: longer than ${s.maxLength}`);
      if (s.format === "uuid" && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) {
        problems.push(`${at}: not a uuid`);
      }
      if (s.format === "date-time" && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value)) {
        problems.push(`${at}: not a date-time`);
      }
      if (s.format === "date" && !/^\d{4}-\d\d-\d\d$/.test(value)) problems.push(`${at}: not a date`);
      break;
    case "integer":
      if (typeof value !== "number" || !Number.isInteger(value)) return [`${at}: not an integer`];
      break;
    case "number":
      if (typeof value !== "number") return [`${at}: not a number`];
      break;
    case "boolean":
      if (typeof value !== "boolean") return [`${at}: not a boolean`];
      break;
    case "array":
      if (!Array.isArray(value)) return [`${at}: not an array`];
      if (s.minItems !== undefined && value.length < s.minItems) problems.push(`${at}: fewer than ${s.minItems} items`);
      if (s.maxItems !== undefined && value.length > s.maxItems) problems.push(`${at}: more than ${s.maxItems} items`);
      if (s.items) value.forEach((item, i) => problems.push(...validate(doc, s.items!, item, `${at}[${i}]`)));
      break;
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return [`${at}: not an object`];
      const object = value as Record<string, unknown>;
      for (const name of s.required ?? []) if (!(name in object)) problems.push(`${at}.${name}: required`);
      for (const [name, v] of Object.entries(object)) {
        const property = s.properties?.[name];
        if (property) problems.push(...validate(doc, property, v, `${at}.${name}`));
        else if (s.additionalProperties === false) problems.push(`${at}.${name}: not a declared property`);
        else if (typeof s.additionalProperties === "object") {
          problems.push(...validate(doc, s.additionalProperties, v, `${at}.${name}`));
        }
      }
      break;
    }
    default:
      break;
  }
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) problems.push(`${at}: below ${s.minimum}`);
    if (s.maximum !== undefined && value > s.maximum) problems.push(`${at}: above ${s.maximum}`);
  }
  return problems;
}

/** A query or path parameter's text against its schema (integers parsed, the rest as strings). */
export function validateParameter(doc: OpenApi, parameter: Parameter, text: string): string[] {
  const s = resolve(doc, parameter.schema);
  const at = `${parameter.in} parameter ${parameter.name}`;
  if (s.type === "integer") {
    if (!/^-?\d+$/.test(text)) return [`${at}: ${text} is not an integer`];
    return validate(doc, s, Number(text), at);
  }
  return validate(doc, s, text, at);
}

/** The operation a request goes to, and its path parameters. */
export function matchOperation(
  doc: OpenApi,
  method: string,
  pathname: string,
): { template: string; operation: Operation; pathParameters: Record<string, string> } | undefined {
  const candidates: Array<{ template: string; operation: Operation; pathParameters: Record<string, string>; literal: number }> = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    const operation = item[method.toLowerCase()];
    if (!operation) continue;
    const names: string[] = [];
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_, name: string) => {
      names.push(name);
      return "([^/]+)";
    });
    const match = new RegExp(`^${pattern}$`).exec(pathname);
    if (!match) continue;
    const pathParameters: Record<string, string> = {};
    names.forEach((name, i) => (pathParameters[name] = decodeURIComponent(match[i + 1]!)));
    candidates.push({ template, operation, pathParameters, literal: template.replace(/\{[^}]+\}/g, "").length });
  }
  // A literal segment wins over a parameter (/audit/logs/entity/x is not /audit/logs/{id}).
  candidates.sort((a, b) => b.literal - a.literal);
  return candidates[0];
}
