// The write protocol's rarer answers, which the local gateway cannot be made to give on demand
// (a period sealed between a batch's first attempt and its retry; a compact replay of an answer
// over 300 KiB; a 207 with a storage failure on some items; logging disabled). A scripted `fetch`
// answers as the ingest handler does (shared/src/apigw/http/ingest.rs); everything else in the
// suite runs against the real gateway binary.

import assert from "node:assert/strict";
import { test } from "node:test";

import { AuditClient, type FetchLike, type NewEntry } from "../src/index.js";

interface Call {
  key: string;
  body: NewEntry[];
  path: string;
  method: string;
}

function scripted(answers: Array<(call: Call) => { status: number; body: unknown; headers?: Record<string, string> }>) {
  const calls: Call[] = [];
  const fetch: FetchLike = async (input, init) => {
    const headers = init.headers as Record<string, string>;
    const call: Call = {
      key: headers["idempotency-key"] ?? "",
      body: init.body ? (JSON.parse(String(init.body)) as NewEntry[]) : [],
      path: new URL(input).pathname,
      method: String(init.method),
    };
    calls.push(call);
    const answer = answers[calls.length - 1];
    if (!answer) throw new Error(`unexpected request ${calls.length}: ${call.method} ${call.path}`);
    const { status, body, headers: extra } = answer(call);
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...extra } });
  };
  return { fetch, calls };
}

const leaf = (n: number) => n.toString(16).padStart(64, "0");
const entry = (id: string, e: NewEntry, n: number) => ({
  id,
  timestamp: "2026-12-06T12:00:00.000Z",
  ...e,
  project_id: null,
  user_id: "u",
  changes: null,
  ip_address: "127.0.0.1",
  metadata: null,
  tenant_id: "local",
  expires_at: 1,
  integrity: { format: "auditline-leaf/1", leaf_hash: leaf(n) },
});
const ID = (n: number) => `01900000-0000-7000-8000-${n.toString().padStart(12, "0")}`;
const err = (code: string) => ({ code, message: code, request_id: "r" });

test("an item refused with period_sealed is sent again alone, under a new key", async () => {
  const { fetch, calls } = scripted([
    (c) => ({
      status: 207,
      body: {
        results: [
          { index: 0, status: 201, entry: entry(ID(1), c.body[0]!, 1) },
          { index: 1, status: 409, error: err("period_sealed") },
          { index: 2, status: 201, entry: entry(ID(3), c.body[2]!, 3) },
        ],
        stored: 2,
        rejected: 1,
      },
    }),
    (c) => ({ status: 201, body: { results: [{ index: 0, status: 201, entry: entry(ID(2), c.body[0]!, 2) }], stored: 1, rejected: 0 } }),
  ]);
  const client = new AuditClient({ url: "http://service.invalid", apiKey: "k", fetch, lingerMs: 50 });
  const receipts = await Promise.all(["a", "b", "c"].map((id) => client.logCreate("FILE", id)));
  await client.close();
  assert.deepEqual(receipts.map((r) => r.id), [ID(1), ID(2), ID(3)]);
  assert.equal(calls.length, 2);
  assert.notEqual(calls[1]!.key, calls[0]!.key, "a new key");
  assert.deepEqual(calls[1]!.body.map((e) => e.entity_id), ["b"], "only the sealed entry");
});

test("a 207 with items failed retryably: the same body again under the same key, until all are answered", async () => {
  const { fetch, calls } = scripted([
    (c) => ({
      status: 207,
      headers: { "retry-after": "0" },
      body: {
        results: [
          { index: 0, status: 201, entry: entry(ID(1), c.body[0]!, 1) },
          { index: 1, status: 503, error: err("unavailable") },
          { index: 2, status: 400, error: { ...err("invalid_entry"), parameter: "entity_id" } },
        ],
        stored: 1,
        rejected: 2,
      },
    }),
    (c) => ({
      status: 207,
      body: {
        results: [
          { index: 0, status: 201, entry: entry(ID(1), c.body[0]!, 1) },
          { index: 1, status: 201, entry: entry(ID(2), c.body[1]!, 2) },
          { index: 2, status: 400, error: { ...err("invalid_entry"), parameter: "entity_id" } },
        ],
        stored: 2,
        rejected: 1,
      },
    }),
  ]);
  const client = new AuditClient({ url: "http://service.invalid", apiKey: "k", fetch, lingerMs: 50, retryBaseMs: 1, onRejected: () => undefined });
  const results = await Promise.allSettled(["a", "b", "c"].map((id) => client.logCreate("FILE", id)));
  await client.close();
  assert.equal(calls.length, 2);
  assert.equal(calls[1]!.key, calls[0]!.key, "the same key");
  assert.deepEqual(calls[1]!.body, calls[0]!.body, "the same body");
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled", "rejected"]);
  const refused = (results[2] as PromiseRejectedResult).reason as { parameter: string; code: string };
  assert.equal(refused.parameter, "entity_id");
});

test("a 409 idempotency_in_progress is retried under the same key; a 422 refuses the batch", async () => {
  const ok = (c: Call) => ({ status: 201, body: { results: c.body.map((e, i) => ({ index: i, status: 201, entry: entry(ID(i + 1), e, i) })), stored: c.body.length, rejected: 0 } });
  const { fetch, calls } = scripted([
    () => ({ status: 409, headers: { "retry-after": "0" }, body: { error: err("idempotency_in_progress") } }),
    ok,
    () => ({ status: 422, body: { error: err("idempotency_key_reused") } }),
  ]);
  const client = new AuditClient({ url: "http://service.invalid", apiKey: "k", fetch, lingerMs: 50, retryBaseMs: 1, onRejected: () => undefined });
  assert.equal((await client.logCreate("FILE", "a")).id, ID(1));
  assert.equal(calls[0]!.key, calls[1]!.key);
  await assert.rejects(client.logCreate("FILE", "b"), { code: "idempotency_key_reused", status: 422 });
  await client.close();
});

test("a compact replay (ids only) is completed by reading the entry back", async () => {
  const { fetch, calls } = scripted([
    () => ({ status: 201, body: { results: [{ index: 0, status: 201, entry: { id: ID(7) } }], stored: 1, rejected: 0 }, headers: { "idempotent-replayed": "true" } }),
    () => ({ status: 200, body: entry(ID(7), { action: "CREATE", entity_type: "FILE", entity_id: "a" }, 7) }),
  ]);
  const client = new AuditClient({ url: "http://service.invalid", apiKey: "k", fetch, lingerMs: 50 });
  const receipt = await client.logCreate("FILE", "a");
  await client.close();
  assert.deepEqual(receipt, { id: ID(7), timestamp: "2026-12-06T12:00:00.000Z", leafHash: leaf(7) });
  assert.equal(calls[1]!.path, `/audit/logs/${ID(7)}`);
});

test("logging disabled on the service (202): the entry is refused with code disabled", async () => {
  const { fetch } = scripted([
    () => ({ status: 202, body: { status: "disabled", message: "audit logging is disabled" } }),
  ]);
  const client = new AuditClient({ url: "http://service.invalid", apiKey: "k", fetch, lingerMs: 50, onRejected: () => undefined });
  await assert.rejects(client.logCreate("FILE", "a"), { code: "disabled", status: 202 });
  await client.close();
});
