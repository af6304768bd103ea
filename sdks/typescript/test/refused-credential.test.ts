// A credential the service refuses while entries are being written loses none of them: the entries
// stay queued (and spooled), each refusal reaches onError as an AuthError, and once the credential is
// good again — a token provider that returns a valid token, an authorizer back from an outage, the
// next client on the spool with the new key — every entry is stored exactly once. Only close()
// without a spool gives up on them, refusing their promises with the AuthError. As the Python SDK.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";

import { AuditClient, AuthError, ClosedError, RejectedError, TimeoutError, type Receipt } from "../src/index.js";
import { FileSpool } from "../src/node.js";
import { countByEntity, Gateway, waitFor } from "./support/gateway.js";
import { FaultProxy } from "./support/proxy.js";

let gateway: Gateway;
const cleanup: Array<() => Promise<void>> = [];
const run = `r${Date.now()}`;

before(async () => {
  gateway = await Gateway.start();
});

after(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
  await gateway?.stop();
});

const fast = { lingerMs: 10, retryBaseMs: 10, retryCapMs: 100 };

function expectOnce(counts: Map<string, number>, prefix: string, n: number): void {
  for (let i = 0; i < n; i++) assert.equal(counts.get(`${prefix}${i}`), 1, `${prefix}${i} stored once`);
  assert.equal(counts.size, n);
}

/** Settles as soon as the promise does, or says it is still pending. */
function state(p: Promise<unknown>): Promise<"pending" | "settled"> {
  return Promise.race([p.then(() => "settled" as const, () => "settled" as const), new Promise<"pending">((r) => setImmediate(() => r("pending")))]);
}

test("refused writes wait for a valid token, reported to onError, and are stored once", async () => {
  let valid = false;
  const asked: boolean[] = [];
  const errors: unknown[] = [];
  const c = new AuditClient({
    url: gateway.url,
    tokenProvider: async () => {
      asked.push(valid);
      return valid ? gateway.token : "an-expired-token";
    },
    maxBatchEntries: 10,
    onError: (e) => errors.push(e),
    ...fast,
  });
  cleanup.push(() => c.close({ timeoutMs: 100 }));
  const prefix = `${run}-tok-`;
  const promises = Array.from({ length: 25 }, (_, i) => c.logCreate("FILE", `${prefix}${i}`));
  await waitFor(() => errors.length >= 4, 10_000, "refusals reported");
  assert.ok(errors.every((e) => e instanceof AuthError && e.status === 403 && e.code === "forbidden"), String(errors));
  await assert.rejects(c.flush({ timeoutMs: 300 }), TimeoutError);
  for (const p of promises) assert.equal(await state(p), "pending");
  assert.equal(c.pending, 25);
  assert.ok(asked.length >= 5, "each attempt asks the provider again (once) before waiting");

  valid = true; // the provider's token is good again
  await c.flush({ timeoutMs: 30_000 });
  const receipts: Receipt[] = await Promise.all(promises);
  assert.equal(new Set(receipts.map((r) => r.id)).size, 25);
  assert.equal(c.pending, 0);

  // A 400 is still a rejection of that entry, at once (not a retry).
  await assert.rejects(c.logCreate("FILE", "tab\tinside"), (e: unknown) => e instanceof RejectedError && e.status === 400 && e.parameter === "entity_id");
  await c.close();
  expectOnce(await countByEntity(gateway, prefix), prefix, 25);
});

test("an authorizer outage answering 403 delays writes and loses none", async () => {
  const proxy = await new FaultProxy(gateway.url, { unavailable: 0, cut: 0, late: 0, lateMs: 0, forbidden: true }).start();
  cleanup.push(() => proxy.close());
  const errors: unknown[] = [];
  const c = new AuditClient({ url: proxy.url, apiKey: gateway.apiKey, maxBatchEntries: 10, onError: (e) => errors.push(e), ...fast });
  cleanup.push(() => c.close({ timeoutMs: 100 }));
  const prefix = `${run}-outage-`;
  const promises = Array.from({ length: 30 }, (_, i) => c.logUpdate("REPORT", `${prefix}${i}`));
  await assert.rejects(c.flush({ timeoutMs: 1000 }), TimeoutError);
  for (const p of promises) assert.equal(await state(p), "pending");
  assert.ok(errors.length >= 3 && errors.every((e) => e instanceof AuthError && e.status === 403 && e.requestId === undefined));

  proxy.faults = { ...proxy.faults, forbidden: false }; // the authorizer is back
  await c.flush({ timeoutMs: 30_000 });
  assert.equal((await Promise.all(promises)).length, 30);
  await c.close();
  expectOnce(await countByEntity(gateway, prefix), prefix, 30);
});

test("close() without a spool refuses the entries a refused credential held back with its AuthError", async () => {
  const c = new AuditClient({ url: gateway.url, apiKey: "alk_revoked", onError: () => undefined, ...fast });
  const prefix = `${run}-gone-`;
  const promises = Array.from({ length: 12 }, (_, i) => c.logCreate("FILE", `${prefix}${i}`));
  await assert.rejects(c.flush({ timeoutMs: 500 }), TimeoutError);
  for (const p of promises) assert.equal(await state(p), "pending");
  await c.close({ timeoutMs: 100 });
  const failures = await Promise.all(promises.map((p) => p.then(() => assert.fail("refused"), (e: unknown) => e)));
  assert.ok(failures.every((e) => e instanceof AuthError && e.status === 403 && e.code === "forbidden"), String(failures));
  assert.equal(new Set(failures).size, 12, "each promise has its own error");
  assert.equal((await countByEntity(gateway, prefix)).size, 0);
});

test("with a spool, refused entries wait there for the next client with a valid key", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-refused-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const errors: unknown[] = [];
  const first = new AuditClient({ url: gateway.url, apiKey: "alk_rotated-away", spool: new FileSpool(dir), maxBatchEntries: 10, onError: (e) => errors.push(e), ...fast });
  const prefix = `${run}-spooled-`;
  const promises = Array.from({ length: 25 }, (_, i) => first.logCreate("FILE", `${prefix}${i}`));
  await waitFor(() => errors.some((e) => e instanceof AuthError), 10_000, "a refusal reported");
  await assert.rejects(first.flush({ timeoutMs: 300 }), TimeoutError);
  await first.close({ timeoutMs: 100 });
  for (const p of promises) await assert.rejects(p, (e: unknown) => e instanceof ClosedError && /kept in the spool/.test(e.message));

  const second = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, spool: new FileSpool(dir) }); // the new key
  await second.flush({ timeoutMs: 30_000 });
  assert.equal(second.pending, 0);
  await second.close();
  expectOnce(await countByEntity(gateway, prefix), prefix, 25);
});

test("a write refused in either shape asks the token provider again (once) at every attempt", async () => {
  for (const body of ['{"message":"Forbidden"}', '{"error":{"code":"forbidden","message":"the audit:write scope is required","request_id":"4b8f7a0e-0000-4000-8000-000000000003"}}']) {
    const server = createServer((request, response) => {
      request.resume();
      request.on("end", () => {
        response.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        response.end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    let asked = 0;
    const errors: unknown[] = [];
    const c = new AuditClient({ url: `http://127.0.0.1:${port}`, tokenProvider: () => `token-${++asked}`, onError: (e) => errors.push(e), ...fast });
    try {
      const p = c.logCreate("FILE", "refused");
      await waitFor(() => errors.length >= 3, 10_000, "refusals reported");
      assert.ok(asked >= errors.length + 1, `${asked} tokens asked for ${errors.length} refused attempts (${body})`);
      assert.equal(await state(p), "pending");
      await c.close({ timeoutMs: 10 });
      await assert.rejects(p, (e: unknown) => e instanceof AuthError && e.status === 403);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }
});
