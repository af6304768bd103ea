// Spool drills with FileSpool: the gateway down (and restarted on its data directory) while the
// application logs; the application killed with entries spooled, and killed with batches in flight.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { AuditClient, type FetchLike, type Receipt } from "../src/index.js";
import { FileSpool } from "../src/node.js";
import { countByEntity, freePort, Gateway, waitFor } from "./support/gateway.js";
import { FaultProxy } from "./support/proxy.js";

const DOWNTIME_MS = Number(process.env["AUDITLINE_SPOOL_DOWNTIME_MS"] ?? 30_000);
const here = path.dirname(fileURLToPath(import.meta.url));
const cleanup: Array<() => Promise<void>> = [];

after(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `auditline-ts-${name}-`));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function expectOnce(counts: Map<string, number>, prefix: string, n: number): void {
  const missing: string[] = [];
  const twice: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = counts.get(`${prefix}${i}`) ?? 0;
    if (c === 0) missing.push(`${prefix}${i}`);
    if (c > 1) twice.push(`${prefix}${i}`);
  }
  assert.deepEqual(missing, [], "nothing is lost");
  assert.deepEqual(twice, [], "nothing is stored twice");
  assert.equal(counts.size, n);
}

test(`gateway down for ${DOWNTIME_MS / 1000} s, then restarted on its data directory: nothing spooled is lost`, async () => {
  const dataDir = await tempDir("data");
  const spoolDir = await tempDir("spool");
  const port = await freePort();
  let gateway = await Gateway.start({ dataDir, port });
  cleanup.push(() => gateway.stop());
  const client = new AuditClient({
    url: gateway.url,
    apiKey: gateway.apiKey,
    spool: new FileSpool(spoolDir),
    lingerMs: 50,
    retryBaseMs: 50,
    retryCapMs: 1000,
    onRejected: (e) => assert.fail(`refused: ${e.code}`),
  });
  cleanup.push(() => client.close({ timeoutMs: 100 }));
  const prefix = `down-${Date.now()}-`;
  const receipts: Array<Promise<Receipt>> = [];
  for (let i = 0; i < 100; i++) receipts.push(client.logCreate("REPORT", `${prefix}${i}`, { projectId: "spool" }));
  await client.flush();

  await gateway.stop();
  const downSince = Date.now();
  // Logged while the service is down: at once, then a few at a time.
  for (let i = 100; i < 200; i++) receipts.push(client.logUpdate("REPORT", `${prefix}${i}`, { changes: { i } }));
  for (let step = 0; step < 10; step++) {
    await new Promise((r) => setTimeout(r, Math.min(1000, DOWNTIME_MS / 20)));
    for (let i = 200 + step * 10; i < 210 + step * 10; i++) receipts.push(client.logView("REPORT", `${prefix}${i}`));
  }
  await client.spooled();
  assert.equal(client.pending, 200, "the entries logged while down are queued");
  const spooledText = await readFile(path.join(spoolDir, "spool.log"), "utf8");
  assert.ok(spooledText.includes(`${prefix}199`), "and written to the spool file");
  const rest = DOWNTIME_MS - (Date.now() - downSince);
  if (rest > 0) await new Promise((r) => setTimeout(r, rest));

  gateway = await Gateway.start({ dataDir, port });
  await client.flush({ timeoutMs: 30_000 });
  const stored = await Promise.all(receipts);
  assert.equal(new Set(stored.map((r) => r.id)).size, 300);
  expectOnce(await countByEntity(gateway, prefix), prefix, 300);
  await client.close();

  // Nothing is left in the spool.
  const reopened = new FileSpool(spoolDir);
  const contents = await reopened.open();
  await reopened.close();
  assert.deepEqual([contents.entries.length, contents.batches.length], [0, 0]);
});

function startChild(url: string, apiKey: string, dir: string, count: number, prefix: string, concurrency: number): {
  child: ChildProcess;
  spooled: Promise<void>;
} {
  const child = spawn(
    process.execPath,
    [path.join(here, "support/spool-child.js"), url, apiKey, dir, String(count), prefix, String(concurrency)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  cleanup.push(async () => {
    child.kill("SIGKILL");
  });
  const spooled = new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.includes("SPOOLED")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`the client process exited (${code}) before spooling`)));
  });
  return { child, spooled };
}

async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

test("an application killed while the service is unreachable: the next client on the spool sends its entries", async () => {
  const gateway = await Gateway.start();
  cleanup.push(() => gateway.stop());
  const spoolDir = await tempDir("crash");
  const deadPort = await freePort();
  const prefix = `crash-${Date.now()}-`;
  const { child, spooled } = startChild(`http://127.0.0.1:${deadPort}`, gateway.apiKey, spoolDir, 300, prefix, 1);
  await spooled;
  await killHard(child);

  const stored: Receipt[] = [];
  const client = new AuditClient({
    url: gateway.url,
    apiKey: gateway.apiKey,
    spool: new FileSpool(spoolDir),
    onStored: (receipt) => stored.push(receipt),
    onRejected: (e) => assert.fail(`refused: ${e.code}`),
  });
  await client.flush({ timeoutMs: 20_000 });
  await client.close();
  assert.equal(stored.length, 300, "onStored hears of every entry carried over");
  expectOnce(await countByEntity(gateway, prefix), prefix, 300);
});

test("an application killed with batches in flight: they are sent again under their keys and stored once", async () => {
  const gateway = await Gateway.start();
  cleanup.push(() => gateway.stop());
  // The gateway stores each batch; the proxy never answers, so the client never learns.
  const proxy = await new FaultProxy(gateway.url, { unavailable: 0, cut: 0, late: 0, lateMs: 0, hold: true }).start();
  cleanup.push(() => proxy.close());
  const spoolDir = await tempDir("inflight");
  const prefix = `inflight-${Date.now()}-`;
  const { child, spooled } = startChild(proxy.url, gateway.apiKey, spoolDir, 300, prefix, 3);
  await spooled;
  await waitFor(() => proxy.counts.held >= 3, 15_000, "three batches stored and unanswered");
  await killHard(child);
  const before = await countByEntity(gateway, prefix);
  assert.equal(before.size, 150, "three batches of 50 were stored before the crash");

  let replayed = 0;
  const counting: FetchLike = async (input, init) => {
    const response = await fetch(input, init);
    if (response.headers.get("idempotent-replayed") === "true") replayed++;
    return response;
  };
  const client = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, spool: new FileSpool(spoolDir), fetch: counting });
  await client.flush({ timeoutMs: 20_000 });
  await client.close();
  assert.equal(replayed, 3, "the three batches were answered by replay: same key, same body");
  expectOnce(await countByEntity(gateway, prefix), prefix, 300);
});

test("FileSpool: a torn last line is ignored, and a second process cannot open a spool in use", async () => {
  const dir = await tempDir("torn");
  const spool = new FileSpool(dir);
  const first = await spool.open();
  assert.deepEqual(first, { batches: [], entries: [], nextSeq: 1 });
  await spool.append([
    { seq: 1, entry: '{"action":"CREATE","entity_type":"FILE","entity_id":"a"}' },
    { seq: 2, entry: '{"action":"CREATE","entity_type":"FILE","entity_id":"b"}' },
  ]);
  await spool.assign({ key: "k-1", seqs: [1, 2] });
  await spool.complete([1]);
  await assert.rejects(new FileSpool(dir).open(), /already open in this process/);
  await spool.close();
  // A torn write at the end (a crash mid-append): no newline, so the line is ignored.
  const { appendFile } = await import("node:fs/promises");
  await appendFile(path.join(dir, "spool.log"), '1234abcd ["e",3,"{\\"act');
  const again = new FileSpool(dir);
  const contents = await again.open();
  assert.equal(contents.nextSeq, 3);
  assert.deepEqual(contents.entries, []);
  assert.equal(contents.batches.length, 1);
  assert.deepEqual(
    contents.batches[0]!.entries.map((e) => [e.seq, e.done]),
    [
      [1, true],
      [2, false],
    ],
  );
  await again.release("k-1");
  await again.close();
  const last = new FileSpool(dir);
  const after = await last.open();
  await last.close();
  assert.deepEqual(after.entries.map((e) => e.seq), [2], "released: the entry not done is free again");
});
