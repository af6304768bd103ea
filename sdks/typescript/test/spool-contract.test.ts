// The SpoolStore contract, on both stores: FileSpool, and IndexedDbSpool on fake-indexeddb (an
// in-memory IndexedDB for Node: it checks the store's logic, not a browser's durability). Then a
// client on the IndexedDB spool: entries queued while the service is unreachable are sent by the
// next client on the same database, against the real gateway.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";

import { IDBFactory } from "fake-indexeddb";

import { AuditClient, type Receipt, type SpoolStore } from "../src/index.js";
import { IndexedDbSpool } from "../src/indexeddb.js";
import { FileSpool } from "../src/node.js";
import { countByEntity, freePort, Gateway } from "./support/gateway.js";

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

const text = (id: string) => JSON.stringify({ action: "CREATE", entity_type: "FILE", entity_id: id });

async function contract(make: () => Promise<() => SpoolStore>): Promise<void> {
  const open = await make();
  let spool = open();
  assert.deepEqual(await spool.open(), { batches: [], entries: [], nextSeq: 1 });
  await spool.append([1, 2, 3, 4, 5].map((seq) => ({ seq, entry: text(`f${seq}`) })));
  await spool.assign({ key: "k-a", seqs: [1, 2] });
  await spool.assign({ key: "k-b", seqs: [3] });
  await spool.complete([1, 3]);
  await spool.release("k-b");
  await spool.complete([5]);
  await spool.close();

  // What a crash leaves: batch k-a open (1 done, 2 not), entry 4 free; 3 and 5 done and gone.
  spool = open();
  const after = await spool.open();
  assert.equal(after.nextSeq, 6);
  assert.deepEqual(after.entries, [{ seq: 4, entry: text("f4") }]);
  assert.deepEqual(after.batches, [
    {
      key: "k-a",
      entries: [
        { seq: 1, entry: text("f1"), done: true },
        { seq: 2, entry: text("f2"), done: false },
      ],
    },
  ]);
  // The batch is over with 2 not done (a sealed period): 2 is free again, for a new key.
  await spool.release("k-a");
  await spool.close();
  spool = open();
  const released = await spool.open();
  assert.deepEqual(released.entries.map((e) => e.seq), [2, 4]);
  assert.deepEqual(released.batches, []);
  await spool.complete([2, 4]);
  await spool.close();

  spool = open();
  const empty = await spool.open();
  assert.deepEqual([empty.entries, empty.batches], [[], []]);
  assert.ok(empty.nextSeq >= 6, "sequence numbers are not reused");
  await spool.close();
}

describe("the SpoolStore contract", () => {
  test("FileSpool", async () => {
    await contract(async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "auditline-ts-contract-"));
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      return () => new FileSpool(dir);
    });
  });

  test("IndexedDbSpool (fake-indexeddb)", async () => {
    await contract(async () => {
      const indexedDB = new IDBFactory();
      return () => new IndexedDbSpool("contract", { indexedDB });
    });
  });
});

test("a client on IndexedDbSpool: what one client queued while the service was unreachable, the next sends", async () => {
  const gateway = await Gateway.start();
  cleanup.push(() => gateway.stop());
  const indexedDB = new IDBFactory();
  const prefix = `idb-${Date.now()}-`;

  const first = new AuditClient({
    url: `http://127.0.0.1:${await freePort()}`,
    apiKey: gateway.apiKey,
    spool: new IndexedDbSpool("audit", { indexedDB }),
    retryBaseMs: 10,
    retryCapMs: 50,
    onError: () => undefined,
  });
  for (let i = 0; i < 120; i++) void first.logCreate("FILE", `${prefix}${i}`);
  await first.spooled();
  await first.close({ timeoutMs: 200 });

  const stored: Receipt[] = [];
  const second = new AuditClient({
    url: gateway.url,
    apiKey: gateway.apiKey,
    spool: new IndexedDbSpool("audit", { indexedDB }),
    onStored: (receipt) => stored.push(receipt),
  });
  await second.flush({ timeoutMs: 10_000 });
  await second.close();
  assert.equal(stored.length, 120);
  const counts = await countByEntity(gateway, prefix);
  assert.equal(counts.size, 120);
  assert.ok([...counts.values()].every((n) => n === 1));
});
