// The client's calls against the real gateway: writes and receipts, typed refusals, the queue's
// policies, flush and close, credentials, reads over every page, stats, export, exit flush.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";

import {
  ACTIONS,
  ApiError,
  AuditClient,
  AuthError,
  ClosedError,
  NotFoundError,
  QueueFullError,
  RejectedError,
  TimeoutError,
  type AuditLogEntry,
  type Receipt,
} from "../src/index.js";
import { exportToFile } from "../src/node.js";
import { countByEntity, freePort, Gateway, PACKAGE_DIR, readAll } from "./support/gateway.js";

let gateway: Gateway;
let client: AuditClient;
const cleanup: Array<() => Promise<void>> = [];

before(async () => {
  gateway = await Gateway.start();
  client = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, lingerMs: 5, onRejected: () => undefined });
});

after(async () => {
  await client?.close();
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  await gateway?.stop();
});

const run = `c${Date.now()}`;

describe("writes", () => {
  test("each log* call stores one entry and resolves with its receipt", async () => {
    const entity = `${run}-actions`;
    const receipts = await Promise.all([
      client.logCreate("ENTITY", entity, { projectId: "p-1", changes: { name: "New Entity", type: "person" } }),
      client.logUpdate("ENTITY", entity, { changes: { before: { name: "Old" }, after: { name: "New" } } }),
      client.logDelete("ENTITY", entity),
      client.logLink("ENTITY", entity, { metadata: { target_id: "e-2", target_type: "ENTITY" } }),
      client.logUnlink("ENTITY", entity, { metadata: { target_id: "e-2" } }),
      client.logView("ENTITY", entity),
      client.log("CREATE", "TEMPLATE", `${run}-generic`, { projectId: "p-1" }),
    ]);
    for (const receipt of receipts) {
      assert.match(receipt.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
      assert.match(receipt.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.match(receipt.leafHash!, /^[0-9a-f]{64}$/);
    }
    const stored = await client.getLogsByEntity(entity).toArray();
    assert.deepEqual(stored.map((e) => e.action).sort(), [...ACTIONS].sort());
    const first = await client.getLog(receipts[0]!.id);
    assert.equal(first.integrity.leaf_hash, receipts[0]!.leafHash);
    assert.deepEqual(first.changes, { name: "New Entity", type: "person" });
    assert.equal(first.project_id, "p-1");
    assert.equal(first.user_id, "developer", "the server sets the user from the credential");
  });

  test("an entry the service refuses rejects with a typed RejectedError, the others are stored", async () => {
    const good = client.logCreate("FILE", `${run}-good`);
    const bad = client.logCreate("FILE", "x".repeat(300));
    const error = await bad.then(
      () => assert.fail("should be refused"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof RejectedError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_entry");
    assert.equal(error.parameter, "entity_id");
    assert.match(error.requestId!, /^[0-9a-f-]{36}$/);
    assert.ok((await good).id);
  });

  test("the SDK refuses what cannot be sent: not JSON, larger than a request", async () => {
    await assert.rejects(client.logCreate("FILE", "f", { metadata: { n: 1n } as never }), { code: "not_serializable" });
    await assert.rejects(client.logCreate("FILE", "f", { metadata: { blob: "y".repeat(1024 * 1024) } }), {
      code: "too_large",
      status: 0,
    });
  });

  test("batches stay under 1 MiB; the service refuses an entry over its own limit (256 KiB)", async () => {
    const requests: number[] = [];
    const c = new AuditClient({
      url: gateway.url,
      apiKey: gateway.apiKey,
      onRejected: () => undefined,
      fetch: (input, init) => {
        if (init.method === "POST") requests.push(Buffer.byteLength(String(init.body)));
        return fetch(input, init);
      },
    });
    const blob = "z".repeat(200 * 1024);
    const big = [1, 2, 3, 4, 5, 6].map((i) => c.logCreate("FILE", `${run}-big-${i}`, { metadata: { blob } }));
    const tooBig = c.logCreate("FILE", `${run}-too-big`, { metadata: { blob: blob + blob } });
    const receipts = await Promise.all(big);
    assert.equal(new Set(receipts.map((r) => r.id)).size, 6);
    await assert.rejects(tooBig, { code: "invalid_entry", status: 400 });
    assert.ok(requests.length >= 2 && requests.every((n) => n <= 1024 * 1024), `request sizes ${requests}`);
    await c.close();
  });

  test("a fire-and-forget call that is refused does not become an unhandled rejection", async () => {
    let unhandled = 0;
    const onUnhandled = () => unhandled++;
    process.on("unhandledRejection", onUnhandled);
    void client.logCreate("FILE", "");
    await client.flush();
    await new Promise((r) => setTimeout(r, 50));
    process.off("unhandledRejection", onUnhandled);
    assert.equal(unhandled, 0);
  });
});

describe("the queue", () => {
  const unreachable = async () => `http://127.0.0.1:${await freePort()}`;

  test('onFull "reject" refuses entries beyond maxQueue; close() refuses what was not delivered', async () => {
    const c = new AuditClient({ url: await unreachable(), apiKey: "k", maxQueue: 3, onFull: "reject", onRejected: () => undefined });
    const queued = [1, 2, 3].map((i) => c.logCreate("FILE", `q${i}`));
    await assert.rejects(c.logCreate("FILE", "q4"), (e: unknown) => e instanceof QueueFullError && e.code === "queue_full");
    assert.equal(c.pending, 3);
    await assert.rejects(c.flush({ timeoutMs: 200 }), (e: unknown) => e instanceof TimeoutError && e.pending === 3);
    await c.close({ timeoutMs: 50 });
    for (const p of queued) await assert.rejects(p, ClosedError);
    await assert.rejects(c.logCreate("FILE", "late"), ClosedError);
  });

  test('onFull "dropOldest" refuses the oldest queued entry to make room', async () => {
    const c = new AuditClient({ url: await unreachable(), apiKey: "k", maxQueue: 2, onFull: "dropOldest", lingerMs: 1000, onRejected: () => undefined });
    const first = c.logCreate("FILE", "d1");
    c.logCreate("FILE", "d2").catch(() => undefined);
    c.logCreate("FILE", "d3").catch(() => undefined);
    await assert.rejects(first, (e: unknown) => e instanceof QueueFullError && e.code === "dropped");
    assert.equal(c.pending, 2);
    await c.close({ timeoutMs: 10 });
    const { FileSpool } = await import("../src/node.js");
    assert.throws(() => new AuditClient({ url: "http://x.invalid", apiKey: "k", onFull: "dropOldest", spool: new FileSpool("unused") }), TypeError);
  });

  test('onFull "block" (the default) holds entries until there is room, and stores them all', async () => {
    // The longest linger: entries waiting for room make the queue go out at once, not after it.
    const c = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, maxQueue: 5, maxBatchEntries: 100, lingerMs: 1000 });
    const started = Date.now();
    let most = 0;
    const receipts: Array<Promise<Receipt>> = [];
    for (let i = 0; i < 40; i++) {
      receipts.push(c.logView("REPORT", `${run}-block-${i}`));
      most = Math.max(most, c.pending);
    }
    assert.equal(most, 40, "pending counts the entries waiting for room too");
    await Promise.all(receipts);
    assert.ok(Date.now() - started < 4000, `8 batches took ${Date.now() - started} ms: a full queue waited out its linger`);
    await c.close();
    const counts = await countByEntity(gateway, `${run}-block-`);
    assert.equal(counts.size, 40);
  });

  test('onFull "block" waits blockTimeoutMs for room, then refuses the entry (as Python\'s block_timeout)', async () => {
    const c = new AuditClient({ url: await unreachable(), apiKey: "k", maxQueue: 2, blockTimeoutMs: 300, retryCapMs: 50, onRejected: () => undefined, onError: () => undefined });
    const queued = [1, 2].map((i) => c.logCreate("FILE", `b${i}`));
    const started = Date.now();
    const held = c.logCreate("FILE", "b3");
    assert.equal(c.pending, 3, "the held entry is pending while it waits");
    await assert.rejects(held, (e: unknown) => e instanceof QueueFullError && e.code === "queue_full" && e.status === 0);
    const waited = Date.now() - started;
    assert.ok(waited >= 290 && waited < 3000, `refused after ${waited} ms`);
    assert.equal(c.pending, 2, "the queued entries are kept");
    await c.close({ timeoutMs: 10 });
    for (const p of queued) await assert.rejects(p, ClosedError);
    assert.throws(() => new AuditClient({ url: "http://x.invalid", apiKey: "k", blockTimeoutMs: -1 }), RangeError);
  });

  test("flush() sends partial batches at once and waits for every answer", async () => {
    const c = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, lingerMs: 1000 });
    const started = Date.now();
    const p = c.logCreate("FILE", `${run}-flush`);
    await c.flush();
    assert.ok(Date.now() - started < 900, "did not wait out the linger");
    assert.ok((await p).id);
    await c.close();
  });

  test("Node exits only after the queue is flushed (beforeExit)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-exit-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const script = path.join(dir, "exit.mjs");
    const entry = path.join(PACKAGE_DIR, ".test-build/src/index.js");
    await writeFile(
      script,
      `import { AuditClient } from ${JSON.stringify(entry)};
const client = new AuditClient({ url: process.argv[2], apiKey: process.argv[3] });
for (let i = 0; i < 3; i++) client.logCreate("FILE", process.argv[4] + i);
// no flush, no close: the script just ends
`,
    );
    const child = spawn(process.execPath, [script, gateway.url, gateway.apiKey, `${run}-exit-`], { stdio: "inherit" });
    const code = await new Promise((resolve) => child.on("exit", resolve));
    assert.equal(code, 0);
    assert.equal((await countByEntity(gateway, `${run}-exit-`)).size, 3);
  });
});

test("with the service down, Node still exits: after exitFlushTimeoutMs, the spool keeps the entries", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-exit-down-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const script = path.join(dir, "exit.mjs");
  const entry = path.join(PACKAGE_DIR, ".test-build/src/index.js");
  const node = path.join(PACKAGE_DIR, ".test-build/src/node.js");
  await writeFile(
    script,
    `import { AuditClient } from ${JSON.stringify(entry)};
import { FileSpool } from ${JSON.stringify(node)};
const client = new AuditClient({ url: process.argv[2], apiKey: "k", spool: new FileSpool(process.argv[3]),
  exitFlushTimeoutMs: 300, retryBaseMs: 20, retryCapMs: 100, onError: () => undefined });
for (let i = 0; i < 5; i++) client.logCreate("FILE", "down-" + i);
`,
  );
  const started = Date.now();
  const child = spawn(process.execPath, [script, `http://127.0.0.1:${await freePort()}`, path.join(dir, "spool")], { stdio: "inherit" });
  const code = await new Promise((resolve) => child.on("exit", resolve));
  assert.equal(code, 0);
  assert.ok(Date.now() - started < 8000, `exited after ${Date.now() - started} ms`);
  const { FileSpool } = await import("../src/node.js");
  const spool = new FileSpool(path.join(dir, "spool"));
  const left = await spool.open();
  await spool.close();
  assert.equal(left.entries.length + left.batches.reduce((n, b) => n + b.entries.length, 0), 5);
});

describe("credentials", () => {
  test("a JWT, and a token provider asked again when the service refuses its token", async () => {
    const byToken = new AuditClient({ url: gateway.url, token: gateway.token });
    assert.ok((await byToken.logCreate("FILE", `${run}-token`)).id);
    await byToken.close();

    let calls = 0;
    const byProvider = new AuditClient({
      url: gateway.url,
      tokenProvider: async () => (++calls === 1 ? "not-a-valid-token" : gateway.token),
    });
    assert.ok((await byProvider.logCreate("FILE", `${run}-provider`)).id);
    assert.equal(calls, 2);
    await assert.rejects(byProvider.getLog("00000000-0000-7000-8000-000000000000"), NotFoundError);
    await byProvider.close();
  });

  test("a refused API key is an AuthError; writes report it and the entry stays queued (never dropped) until close", async () => {
    const errors: unknown[] = [];
    const c = new AuditClient({ url: gateway.url, apiKey: "alk_wrong", retryBaseMs: 10, retryCapMs: 50, onError: (e) => errors.push(e) });
    // Today the gateway answers as API Gateway's authorizer does (403 {"message":"Forbidden"}, no
    // envelope); the SDK's answer does not depend on which shape it is.
    const refused = await c.getLog("01900000-0000-7000-8000-000000000000").then(
      () => assert.fail("refused"),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof AuthError && refused instanceof ApiError, String(refused));
    assert.equal(refused.status, 403);
    assert.equal(refused.code, "forbidden");
    const p = c.logCreate("FILE", "never");
    await assert.rejects(c.flush({ timeoutMs: 300 }), TimeoutError);
    assert.ok(errors.some((e) => e instanceof AuthError && e.status === 403));
    await c.close({ timeoutMs: 10 });
    // Without a spool, close() refuses it with the AuthError that held it back.
    await assert.rejects(p, (e: unknown) => e instanceof AuthError && e.status === 403 && e.code === "forbidden");
  });

  test("both shapes of a refusal, AWS's envelope-less 403 and the service's envelope, are an AuthError", async () => {
    const shapes: Array<{ status: number; body: string; code: string; requestId: string | undefined; message: string }> = [
      { status: 403, body: '{"message":"Forbidden"}', code: "forbidden", requestId: undefined, message: "Forbidden" },
      { status: 401, body: '{"message":"Unauthorized"}', code: "unauthenticated", requestId: undefined, message: "Unauthorized" },
      {
        status: 403,
        body: '{"error":{"code":"forbidden","message":"the audit:read scope is required","request_id":"4b8f7a0e-0000-4000-8000-000000000001"}}',
        code: "forbidden",
        requestId: "4b8f7a0e-0000-4000-8000-000000000001",
        message: "the audit:read scope is required",
      },
      {
        status: 401,
        body: '{"error":{"code":"unauthenticated","message":"authentication is required","request_id":"4b8f7a0e-0000-4000-8000-000000000002"}}',
        code: "unauthenticated",
        requestId: "4b8f7a0e-0000-4000-8000-000000000002",
        message: "authentication is required",
      },
    ];
    for (const shape of shapes) {
      const server = await answering(shape.status, shape.body);
      const address = server.address() as { port: number };
      const errors: unknown[] = [];
      const c = new AuditClient({ url: `http://127.0.0.1:${address.port}`, apiKey: "alk_x", retryBaseMs: 10, retryCapMs: 50, onError: (e) => errors.push(e) });
      try {
        for (const read of [() => c.getLog("01900000-0000-7000-8000-000000000000"), () => c.getLogs().toArray(), () => c.getStats()]) {
          const error = await read().then(
            () => assert.fail("refused"),
            (e: unknown) => e,
          );
          assert.ok(error instanceof AuthError, `${shape.body}: ${String(error)}`);
          assert.equal(error.status, shape.status);
          assert.equal(error.code, shape.code);
          assert.equal(error.message, shape.message);
          assert.equal(error.requestId, shape.requestId);
        }
        const p = c.logCreate("FILE", "refused");
        await assert.rejects(c.flush({ timeoutMs: 200 }), TimeoutError);
        assert.ok(errors.some((e) => e instanceof AuthError && e.status === shape.status && e.requestId === shape.requestId), shape.body);
        await c.close({ timeoutMs: 10 });
        const error = await p.then(
          () => assert.fail("refused"),
          (e: unknown) => e,
        );
        assert.ok(error instanceof AuthError, `${shape.body}: ${String(error)}`);
        assert.deepEqual([error.status, error.code, error.requestId], [shape.status, shape.code, shape.requestId]);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    }
  });
});

describe("reads", () => {
  const entity = `${run}-paged`;
  let receipts: Receipt[];

  before(async () => {
    receipts = [];
    for (let i = 0; i < 25; i++) {
      receipts.push(await client.log(i % 2 ? "UPDATE" : "CREATE", "PROJECT", entity, { projectId: `${run}-proj`, metadata: { i } }));
    }
  });

  test("getLogsByEntity iterates every page, newest first", async () => {
    const pages: number[] = [];
    for await (const page of client.getLogsByEntity(entity, { limit: 10 }).pages()) pages.push(page.count);
    assert.deepEqual(pages, [10, 10, 5]);
    const all: AuditLogEntry[] = [];
    for await (const entry of client.getLogsByEntity(entity, { limit: 10 })) all.push(entry);
    assert.deepEqual(
      all.map((e) => e.id),
      receipts.map((r) => r.id).reverse(),
    );
  });

  test("getLogsByProject and getLogs take the filters", async () => {
    const updates = await client.getLogsByProject(`${run}-proj`, { action: "UPDATE", limit: 5 }).toArray();
    assert.equal(updates.length, 12);
    assert.ok(updates.every((e) => e.action === "UPDATE"));
    const since = new Date(Date.parse(receipts[20]!.timestamp));
    const recent = await client.getLogs({ entityType: "PROJECT", startDate: since, limit: 2 }).toArray();
    assert.ok(recent.length >= 5 && recent.length < 25, `${recent.length}`);
    const skipped = await client.getLogsByEntity(entity, { offset: 20 }).toArray();
    assert.equal(skipped.length, 5);
  });

  test("getLog rejects with NotFoundError for an unknown id; bad parameters are typed ApiErrors", async () => {
    const missing = await client.getLog("01900000-0000-7000-8000-000000000000").then(
      () => assert.fail("not found"),
      (e: unknown) => e,
    );
    assert.ok(missing instanceof NotFoundError && missing instanceof ApiError);
    assert.equal(missing.status, 404);
    assert.equal(missing.code, "not_found");
    assert.match(missing.requestId!, /^[0-9a-f-]{36}$/, "the server's request id");
    const error = await client.getLogs({ limit: 5000 }).toArray().then(
      () => assert.fail("refused"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "invalid_parameter");
    assert.equal(error.parameter, "limit");
    assert.ok(error.requestId);
  });

  test("getStats counts, with a series per hour", async () => {
    const stats = await client.getStats({ bucket: "hour" });
    assert.ok(stats.total_entries >= 25);
    assert.ok(stats.by_entity_type.PROJECT >= 25);
    assert.ok(stats.series && stats.series.length >= 1);
    const total = await client.getStats({ startDate: "2000-01-01", endDate: new Date() });
    assert.equal(total.total_entries, stats.total_entries);
  });

  test("getHealth", async () => {
    const health = await client.getHealth();
    assert.equal(health.status, "healthy");
    assert.ok(health.storage?.reachable);
  });

  test("export follows x-next-token; exportToFile writes the pages to a file", async () => {
    const pages = [];
    for await (const page of client.export({ format: "jsonl", entityId: entity })) pages.push(page);
    assert.equal(pages.length, 1);
    assert.equal(pages[0]!.entryCount, 25);
    assert.equal(pages[0]!.text.trim().split("\n").length, 25);

    const dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-export-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, "trail.csv");
    const written = await exportToFile(client, file, { format: "csv", projectId: `${run}-proj`, action: "CREATE" });
    assert.equal(written.entries, 13);
    const lines = (await readFile(file, "utf8")).trim().split("\n");
    assert.equal(lines.length, 14, "a header row and 13 entries");
    assert.match(lines[0]!, /action/);
  });
});

test("the trail holds what the tests wrote, and nothing twice", async () => {
  await client.flush();
  const counts = await countByEntity(gateway, `${run}-block-`);
  assert.ok([...counts.values()].every((n) => n === 1));
  assert.ok((await readAll(gateway)).length > 50);
});

/** A tiny HTTP server answering every request with `status` and `body` (as API Gateway's authorizer would). */
async function answering(status: number, body: string): Promise<Server> {
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      response.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}
