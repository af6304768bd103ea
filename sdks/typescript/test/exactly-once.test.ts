// Exactly-once drill: a proxy answers 503 to ~30 % of requests, and cuts or delays some answers
// after the gateway has stored the batch. Every entry logged must be stored exactly once, and every
// receipt must name the stored entry.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { AuditClient, type Receipt } from "../src/index.js";
import { countByEntity, Gateway, readAll } from "./support/gateway.js";
import { FaultProxy } from "./support/proxy.js";

const N = Number(process.env["AUDITLINE_DRILL_ENTRIES"] ?? 2000);

let gateway: Gateway;
let proxy: FaultProxy;

before(async () => {
  gateway = await Gateway.start();
  proxy = await new FaultProxy(gateway.url, { unavailable: 0.3, cut: 0.1, late: 0.05, lateMs: 900 }).start();
});

after(async () => {
  await proxy?.close();
  await gateway?.stop();
});

test(`${N} entries through 503s, cut and late answers are each stored exactly once`, async () => {
  const errors: unknown[] = [];
  const client = new AuditClient({
    url: proxy.url,
    apiKey: gateway.apiKey,
    maxBatchEntries: 20,
    concurrency: 4,
    lingerMs: 20,
    retryBaseMs: 10,
    retryCapMs: 200,
    requestTimeoutMs: 600,
    onError: (e) => errors.push(e),
    onRejected: (e) => assert.fail(`an entry was refused: ${e.code} ${e.message}`),
  });
  const run = `once-${Date.now()}-`;
  const receipts: Array<Promise<Receipt>> = [];
  for (let i = 0; i < N; i++) {
    const changes = { before: { n: i - 1 }, after: { n: i, text: "é ✓ ".repeat(i % 7) } };
    receipts.push(client.logUpdate("ENTITY", `${run}${i}`, { projectId: "drill", changes, metadata: { i } }));
    if (i % 250 === 0) await new Promise((r) => setImmediate(r));
  }
  await client.flush();
  const stored = await Promise.all(receipts);
  await client.close();

  // Counted through the gateway directly.
  const counts = await countByEntity(gateway, run);
  assert.equal(counts.size, N, "every entry is stored");
  const twice = [...counts].filter(([, n]) => n !== 1);
  assert.deepEqual(twice, [], "no entry is stored twice");

  // Each receipt names the stored entry, with its leaf hash.
  const byId = new Map((await readAll(gateway)).map((e) => [e["id"] as string, e]));
  stored.forEach((receipt, i) => {
    const entry = byId.get(receipt.id) as { entity_id: string; timestamp: string; integrity: { leaf_hash: string } };
    assert.ok(entry, `receipt ${i} names a stored entry`);
    assert.equal(entry.entity_id, `${run}${i}`);
    assert.equal(receipt.timestamp, entry.timestamp);
    assert.equal(receipt.leafHash, entry.integrity.leaf_hash);
  });

  // The drill did what it says.
  assert.ok(proxy.counts.unavailable >= 10, `503s injected: ${JSON.stringify(proxy.counts)}`);
  assert.ok(proxy.counts.cut >= 3, `answers cut: ${JSON.stringify(proxy.counts)}`);
  assert.ok(proxy.counts.late >= 1, `answers late: ${JSON.stringify(proxy.counts)}`);
  console.log(`drill: ${JSON.stringify(proxy.counts)}; ${errors.length} errors reported and retried`);
});
