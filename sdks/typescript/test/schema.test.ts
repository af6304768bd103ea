// The SDK's types against docs/openapi.json: (1) each exported wire type, read with the TypeScript
// compiler, has exactly the schema's properties, optional where the schema does not require them,
// nullable where it is, with the same enums; the call options map onto the routes' parameters;
// (2) every request the SDK sends and every JSON answer it reads, in a live session with the
// gateway, validates against the document.

import assert from "node:assert/strict";
import * as path from "node:path";
import { after, before, test } from "node:test";

import ts from "typescript";

import { ACTIONS, AuditClient, ENTITY_TYPES, NotFoundError, SERVICE_ENTITY_TYPES, type AuditLogEntry, type FetchLike } from "../src/index.js";
import { Gateway, PACKAGE_DIR, waitFor } from "./support/gateway.js";
import { loadOpenApi, matchOperation, resolve, validate, validateParameter, type OpenApi, type Schema } from "./support/schema.js";

const doc: OpenApi = loadOpenApi();
const schemas = doc.components.schemas;

// ---- (1) the types, read by the compiler ------------------------------------------------------

const program = ts.createProgram([path.join(PACKAGE_DIR, "src/index.ts")], {
  strict: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
  types: ["node"],
});
const checker = program.getTypeChecker();
const index = program.getSourceFile(path.join(PACKAGE_DIR, "src/index.ts"))!;
const exported = new Map(
  checker.getExportsOfModule(checker.getSymbolAtLocation(index)!).map((s) => [s.name, s] as const),
);

function exportedType(name: string): ts.Type {
  const symbol = exported.get(name);
  assert.ok(symbol, `${name} is exported`);
  const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
  return checker.getDeclaredTypeOfSymbol(target);
}

/** Wire type names by schema name: a $ref must be typed as the matching interface. */
const TYPE_FOR_SCHEMA: Record<string, string> = {
  AuditLogEntry: "AuditLogEntry",
  NewEntry: "NewEntry",
  Page: "Page",
  BatchItem: "BatchItem",
  BatchResult: "BatchResult",
  ErrorBody: "ErrorBody",
  Error: "ErrorEnvelope",
  Integrity: "Integrity",
  Stats: "Stats",
  Health: "Health",
  Disabled: "Disabled",
};

function parts(type: ts.Type): ts.Type[] {
  return type.isUnion() ? type.types : [type];
}

function literalSet(type: ts.Type): string[] | undefined {
  const values = parts(type).filter((t) => !(t.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
  if (!values.every((t) => t.isStringLiteral())) return undefined;
  return values.map((t) => (t as ts.StringLiteralType).value).sort();
}

function checkType(type: ts.Type, schema: Schema, at: string, problems: string[]): void {
  const s = resolve(doc, schema);
  const all = parts(type);
  const hasNull = all.some((t) => t.flags & ts.TypeFlags.Null);
  const rest = all.filter((t) => !(t.flags & (ts.TypeFlags.Null | ts.TypeFlags.Undefined)));
  if (Boolean(s.nullable) !== hasNull) problems.push(`${at}: nullable is ${Boolean(s.nullable)} in the schema, ${hasNull} in the type`);
  if (s.enum) {
    const literals = rest.every((t) => t.isStringLiteral())
      ? rest.map((t) => (t as ts.StringLiteralType).value).sort()
      : undefined;
    const expected = (s.enum as string[]).slice().sort();
    if (JSON.stringify(literals) !== JSON.stringify(expected)) {
      problems.push(`${at}: enum ${JSON.stringify(expected)} is typed ${checker.typeToString(type)}`);
    }
    return;
  }
  if (s.type === "boolean") {
    if (!rest.every((t) => t.flags & (ts.TypeFlags.Boolean | ts.TypeFlags.BooleanLiteral))) {
      problems.push(`${at}: boolean typed ${checker.typeToString(type)}`);
    }
    return;
  }
  if (rest.length !== 1) {
    problems.push(`${at}: typed as a union ${checker.typeToString(type)}`);
    return;
  }
  const inner = rest[0]!;
  if (schema.$ref) {
    const wanted = TYPE_FOR_SCHEMA[schema.$ref.replace("#/components/schemas/", "")];
    const name = inner.aliasSymbol?.name ?? inner.getSymbol()?.name;
    if (wanted && name !== wanted) problems.push(`${at}: a ${schema.$ref} is typed ${name}, not ${wanted}`);
  }
  switch (s.type) {
    case "string":
      if (!(inner.flags & ts.TypeFlags.String)) problems.push(`${at}: string typed ${checker.typeToString(inner)}`);
      break;
    case "integer":
    case "number":
      if (!(inner.flags & ts.TypeFlags.Number)) problems.push(`${at}: ${s.type} typed ${checker.typeToString(inner)}`);
      break;
    case "array": {
      if (!checker.isArrayType(inner)) {
        problems.push(`${at}: array typed ${checker.typeToString(inner)}`);
        break;
      }
      const element = checker.getTypeArguments(inner as ts.TypeReference)[0]!;
      if (s.items) checkType(element, s.items, `${at}[]`, problems);
      break;
    }
    case "object":
      if (!(inner.flags & ts.TypeFlags.Object)) {
        problems.push(`${at}: object typed ${checker.typeToString(inner)}`);
        break;
      }
      if (s.properties) checkObject(inner, s, at, problems);
      break;
    default:
      break;
  }
}

function checkObject(type: ts.Type, schema: Schema, at: string, problems: string[]): void {
  const s = resolve(doc, schema);
  const properties = checker.getPropertiesOfType(type);
  const names = properties.map((p) => p.name).sort();
  const expected = Object.keys(s.properties ?? {}).sort();
  if (JSON.stringify(names) !== JSON.stringify(expected)) {
    problems.push(`${at}: properties ${JSON.stringify(names)}, the schema has ${JSON.stringify(expected)}`);
  }
  for (const property of properties) {
    const propertySchema = s.properties?.[property.name];
    if (!propertySchema) continue;
    const optional = Boolean(property.flags & ts.SymbolFlags.Optional);
    const required = (s.required ?? []).includes(property.name);
    if (optional === required) problems.push(`${at}.${property.name}: ${required ? "required" : "optional"} in the schema`);
    checkType(checker.getTypeOfSymbol(property), propertySchema, `${at}.${property.name}`, problems);
  }
}

test("each wire type has the schema's properties, optionality, nullability and enums", () => {
  const problems: string[] = [];
  for (const [schemaName, typeName] of Object.entries(TYPE_FOR_SCHEMA)) {
    const schema = schemas[schemaName];
    assert.ok(schema, `schema ${schemaName}`);
    checkObject(exportedType(typeName), schema, typeName, problems);
  }
  assert.deepEqual(problems, []);
});

test("the enums: actions, entity types, export formats", () => {
  const entry = schemas["AuditLogEntry"]!.properties!;
  const newEntry = schemas["NewEntry"]!.properties!;
  const sorted = (values: readonly unknown[]) => [...values].map(String).sort();
  assert.deepEqual(literalSet(exportedType("Action")), sorted(entry["action"]!.enum!));
  assert.deepEqual(literalSet(exportedType("EntityType")), sorted(newEntry["entity_type"]!.enum!));
  assert.deepEqual(literalSet(exportedType("AnyEntityType")), sorted(entry["entity_type"]!.enum!));
  assert.deepEqual(sorted(ACTIONS), sorted(entry["action"]!.enum!));
  assert.deepEqual(sorted(ENTITY_TYPES), sorted(newEntry["entity_type"]!.enum!));
  assert.deepEqual(sorted([...ENTITY_TYPES, ...SERVICE_ENTITY_TYPES]), sorted(entry["entity_type"]!.enum!));
  const format = doc.paths["/audit/export"]!["get"]!.parameters!.find((p) => p.name === "format")!;
  assert.deepEqual(literalSet(exportedType("ExportFormat")), sorted(resolve(doc, format.schema).enum!));
});

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function optionNames(typeName: string): string[] {
  return checker.getPropertiesOfType(exportedType(typeName)).map((p) => snake(p.name)).sort();
}

function queryNames(route: string): string[] {
  return doc.paths[route]!["get"]!.parameters!.filter((p) => p.in === "query").map((p) => p.name).sort();
}

test("the call options are the routes' parameters (camelCase)", () => {
  assert.deepEqual(optionNames("LogFilters"), queryNames("/audit/logs"));
  assert.deepEqual(optionNames("LogFilters"), queryNames("/audit/logs/entity/{entity_id}"));
  assert.deepEqual(optionNames("LogFilters"), queryNames("/audit/logs/project/{project_id}"));
  assert.deepEqual(optionNames("StatsFilters"), queryNames("/audit/stats"));
  assert.deepEqual(optionNames("ExportOptions"), queryNames("/audit/export"));
  // log(action, entityType, entityId, { projectId, changes, metadata }) is a NewEntry.
  assert.deepEqual(
    ["action", "entity_type", "entity_id", ...optionNames("LogOptions")].sort(),
    Object.keys(schemas["NewEntry"]!.properties!).sort(),
  );
  // Option values typed as the parameters' enums.
  const filters = exportedType("LogFilters");
  for (const name of ["action", "entityType"]) {
    const property = checker.getPropertyOfType(filters, name)!;
    const parameter = doc.paths["/audit/logs"]!["get"]!.parameters!.find((p) => p.name === snake(name))!;
    assert.deepEqual(literalSet(checker.getTypeOfSymbol(property)), (resolve(doc, parameter.schema).enum as string[]).slice().sort());
  }
});

// ---- (2) live traffic ---------------------------------------------------------------------------

let gateway: Gateway;
before(async () => {
  gateway = await Gateway.start();
});
after(async () => {
  await gateway?.stop();
});

test("every request the SDK sends and every JSON answer it reads validates against the document", async () => {
  const problems: string[] = [];
  const seen = new Set<string>();
  // Set while the test sends a request that breaks the document on purpose (to see the answer).
  let invalidOnPurpose = false;
  const recording: FetchLike = async (input, init) => {
    const url = new URL(input);
    const method = String(init.method ?? "GET");
    const match = matchOperation(doc, method, url.pathname);
    if (!match) {
      problems.push(`${method} ${url.pathname}: no such operation`);
      return fetch(input, init);
    }
    const where = `${method} ${match.template}`;
    const parameters = match.operation.parameters ?? [];
    const requestProblems: string[] = [];
    for (const [name, value] of url.searchParams) {
      const parameter = parameters.find((p) => p.in === "query" && p.name === name);
      if (!parameter) requestProblems.push(`${where}: query parameter ${name} is not declared`);
      else requestProblems.push(...validateParameter(doc, parameter, value).map((p) => `${where}: ${p}`));
    }
    for (const [name, value] of Object.entries(match.pathParameters)) {
      const parameter = parameters.find((p) => p.in === "path" && p.name === name);
      if (!parameter) requestProblems.push(`${where}: path parameter ${name} is not declared`);
      else requestProblems.push(...validateParameter(doc, parameter, value).map((p) => `${where}: ${p}`));
    }
    for (const [name, value] of Object.entries((init.headers ?? {}) as Record<string, string>)) {
      const parameter = parameters.find((p) => p.in === "header" && p.name.toLowerCase() === name.toLowerCase());
      if (parameter) requestProblems.push(...validateParameter(doc, parameter, value).map((p) => `${where}: ${p}`));
    }
    if (init.body !== undefined && init.body !== null) {
      const schema = match.operation.requestBody?.content["application/json"]?.schema;
      if (!schema) requestProblems.push(`${where}: sends a body the document does not declare`);
      else requestProblems.push(...validate(doc, schema, JSON.parse(String(init.body)), `${where} body`));
      // A batch's entries are judged one by one against NewEntry (the document says so).
      const sent: unknown = JSON.parse(String(init.body));
      if (where === "POST /audit/logs" && Array.isArray(sent)) {
        sent.forEach((item, i) =>
          requestProblems.push(...validate(doc, { $ref: "#/components/schemas/NewEntry" }, item, `${where} body[${i}]`)));
      }
    }
    if (!invalidOnPurpose) problems.push(...requestProblems);
    else if (!requestProblems.length) problems.push(`${where}: was meant to break the document, and does not`);
    const response = await fetch(input, init);
    const text = await response.clone().text();
    const declared = match.operation.responses[String(response.status)];
    seen.add(`${where} ${response.status}`);
    if (!declared) problems.push(`${where}: answered ${response.status}, which the document does not declare`);
    const schema = declared?.content?.["application/json"]?.schema;
    if (schema && (response.headers.get("content-type") ?? "").includes("application/json")) {
      problems.push(...validate(doc, schema, JSON.parse(text), `${where} ${response.status}`));
    }
    return response;
  };

  const client = new AuditClient({ url: gateway.url, token: gateway.token, fetch: recording, lingerMs: 5, onRejected: () => undefined });
  const live: AuditLogEntry[] = [];
  await client.addListener((entry) => void live.push(entry));
  const receipt = await client.logCreate("ENTITY", "e-1", { projectId: "p-1", changes: { a: 1 }, metadata: { b: [1, 2] } });
  await client.logUpdate("REPORT", "r-1", { changes: { before: { x: null }, after: { x: "y" } } });
  await client.flush();
  invalidOnPurpose = true;
  const refused = client.logDelete("FILE", "").catch(() => undefined); // a 207 with a refusal
  const accepted = client.logDelete("FILE", "f-1");
  await Promise.all([refused, accepted]);
  invalidOnPurpose = false;
  await client.logLink("ENTITY", "e-1", { metadata: { target_id: "e-2", target_type: "ENTITY" } });
  await client.flush();
  await client.getLogs({ action: "CREATE", entityType: "ENTITY", userId: "developer", startDate: "2020-01-01", endDate: new Date(), limit: 1 }).toArray();
  await client.getLogsByEntity("e-1", { offset: 1 }).toArray();
  await client.getLogsByProject("p-1").toArray();
  await client.getLog(receipt.id);
  await assert.rejects(client.getLog("01900000-0000-7000-8000-000000000000"), NotFoundError);
  await client.getStats({ startDate: "2020-01-01T00:00:00Z", bucket: "day" });
  await client.getHealth();
  for await (const page of client.export({ format: "ocsf", entityId: "e-1" })) assert.ok(page.text.length > 0);
  invalidOnPurpose = true;
  await client.getLogs({ limit: 5000 }).toArray().catch(() => undefined);
  invalidOnPurpose = false;
  await waitFor(() => live.length >= 4, 10_000, "the live feed");
  await client.close();

  for (const entry of live) problems.push(...validate(doc, { $ref: "#/components/schemas/AuditLogEntry" }, entry, "live feed entry"));
  assert.deepEqual(problems, []);
  for (const expected of [
    "POST /audit/logs 201",
    "POST /audit/logs 207",
    "GET /audit/logs 200",
    "GET /audit/logs 400",
    "GET /audit/logs/{id} 200",
    "GET /audit/logs/{id} 404",
    "GET /audit/logs/entity/{entity_id} 200",
    "GET /audit/logs/project/{project_id} 200",
    "GET /audit/stats 200",
    "GET /audit/health 200",
    "GET /audit/export 200",
  ]) {
    assert.ok(seen.has(expected), `exercised ${expected} (saw ${[...seen].join(", ")})`);
  }
});
