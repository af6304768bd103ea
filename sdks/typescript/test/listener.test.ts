// Listener drills: every entry once and in id order across forced socket drops (with and without
// the gateway's push faults); filters; whole entries for too-large notices; erasure notices.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { AuditClient, type AuditLogEntry, type ErasureNotice } from "../src/index.js";
import { Gateway, mintToken, waitFor } from "./support/gateway.js";
import { TcpProxy } from "./support/proxy.js";

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function assertOnceInOrder(received: AuditLogEntry[], n: number): void {
  const ids = received.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, "no entry is delivered twice");
  assert.equal(ids.length, n, "every entry is delivered");
  for (let i = 1; i < ids.length; i++) {
    assert.ok(ids[i - 1]! < ids[i]!, `delivered in id order (at ${i}: ${ids[i - 1]} then ${ids[i]})`);
  }
}

async function drill(options: { pushFaultsPerMille: number; drops: number; credential: "token" | "apiKey" }) {
  const gateway = await Gateway.start({
    env: { AUDITLINE_PUSH_FAULTS_PER_MILLE: String(options.pushFaultsPerMille) },
  });
  cleanup.push(() => gateway.stop());
  const proxy = await new TcpProxy(gateway.port).start();
  cleanup.push(() => proxy.close());
  const problems: unknown[] = [];
  const listening = new AuditClient({
    url: proxy.url,
    ...(options.credential === "token" ? { token: gateway.token } : { apiKey: gateway.apiKey }),
    retryBaseMs: 20,
    onError: (e) => problems.push(e),
  });
  cleanup.push(() => listening.close());
  const prefix = `feed-${options.pushFaultsPerMille}-${Date.now()}-`;
  const received: AuditLogEntry[] = [];
  const other: AuditLogEntry[] = [];
  await listening.addListener((entry) => {
    if (entry.entity_id.startsWith(prefix)) received.push(entry);
  });
  // A second listener, on a narrower feed (its own socket): only UPDATEs.
  await listening.addListener((entry) => {
    if (entry.entity_id.startsWith(prefix)) other.push(entry);
  }, { action: "UPDATE" });

  const writer = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, lingerMs: 5, maxBatchEntries: 50 });
  cleanup.push(() => writer.close());
  const N = 2000;
  const dropAt = new Set(Array.from({ length: options.drops }, (_, k) => Math.floor(((k + 1) * (N / 50)) / (options.drops + 1))));
  for (let batch = 0; batch < N / 50; batch++) {
    for (let i = batch * 50; i < (batch + 1) * 50; i++) {
      void writer.log(i % 4 === 0 ? "UPDATE" : "CREATE", "ENTITY", `${prefix}${i}`, { projectId: "feed" });
    }
    if (dropAt.has(batch)) {
      // Both feeds are connected again (since the last drop): cut them, refuse reconnections a while.
      await waitFor(() => proxy.openWebSockets === 2, 10_000, "both feeds connected");
      proxy.dropAll(250);
    }
    await sleep(40);
  }
  await writer.flush();
  await waitFor(() => received.length >= N && other.length >= N / 4, 30_000, `${N} entries at the listener (has ${received.length})`);
  await sleep(500); // anything delivered twice would arrive by now
  assertOnceInOrder(received, N);
  assertOnceInOrder(other, N / 4);
  assert.ok(other.every((e) => e.action === "UPDATE"));
  assert.equal(proxy.drops, options.drops);
  // Each drop cut both feeds' sockets (open, or still opening) and each noticed.
  const reconnects = problems.filter((e) => /live feed (closed|could not connect)/.test(String((e as Error).message))).length;
  assert.ok(reconnects >= 2 * options.drops, `every drop was noticed, by both feeds (${reconnects})`);
}

test("every entry once, in id order, across three forced socket drops (bearer subprotocol)", { timeout: 90_000 }, async () => {
  await drill({ pushFaultsPerMille: 0, drops: 3, credential: "token" });
});

test("the same with AUDITLINE_PUSH_FAULTS_PER_MILLE=150 and a drop (api-key subprotocol)", { timeout: 90_000 }, async () => {
  await drill({ pushFaultsPerMille: 150, drops: 1, credential: "apiKey" });
});

test("filters, a too-large entry fetched whole, erasure notices, a refreshed token, removeListener", { timeout: 60_000 }, async () => {
  const secret = "a-test-secret-that-is-long-enough-for-hs256!";
  const gateway = await Gateway.start({ env: { JWT_SECRET: secret } });
  cleanup.push(() => gateway.stop());
  const writer = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, lingerMs: 0 });
  cleanup.push(() => writer.close());

  // Reads over HTTP, and a project filter: a too-large entry arrives as a notice and is fetched.
  const reader = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey });
  cleanup.push(() => reader.close());
  const inProject: AuditLogEntry[] = [];
  const onProject = (entry: AuditLogEntry) => void inProject.push(entry);
  await reader.addListener(onProject, { projectId: "big" });

  // Only entities:read, from a token provider whose first token has expired: the feed carries ENTITY
  // entries (not REPORT ones) and erasure notices.
  let calls = 0;
  const narrow = new AuditClient({
    url: gateway.url,
    tokenProvider: () => mintToken(secret, { sub: "viewer", scope: "entities:read", expiresIn: ++calls === 1 ? -600 : 3600 }),
  });
  cleanup.push(() => narrow.close());
  const seen: AuditLogEntry[] = [];
  const notices: ErasureNotice[] = [];
  await narrow.addListener((entry) => void seen.push(entry), { onErasure: (notice) => void notices.push(notice) });
  assert.ok(calls >= 2, "the token provider was asked again after the expired token was refused");

  const big = { blob: "x".repeat(200 * 1024) };
  const bigReceipt = await writer.logCreate("FILE", "big-file", { projectId: "big", metadata: big });
  await writer.logCreate("FILE", "small-file", { projectId: "other" });
  const entity = await writer.logUpdate("ENTITY", "erase-me", { metadata: { note: "personal" } });
  await writer.logCreate("REPORT", "not-for-entities-readers");
  await waitFor(() => inProject.length >= 1 && seen.length >= 1, 10_000, "the feeds");
  assert.equal(inProject.length, 1);
  assert.equal(inProject[0]!.id, bigReceipt.id);
  assert.equal((inProject[0]!.metadata as { blob: string }).blob.length, big.blob.length, "the whole entry, fetched");

  // An erasure: connections without audit:read are told by notice.
  const eraser = mintToken(secret, { sub: "dpo", scope: "audit:erase audit:read" });
  const response = await fetch(`${gateway.url}/audit/logs/${entity.id}/erasure`, {
    method: "POST",
    headers: { authorization: `Bearer ${eraser}`, "content-type": "application/json" },
    body: JSON.stringify({ fields: ["metadata"], reason: "test" }),
  });
  assert.equal(response.status, 200, await response.text());
  await waitFor(() => notices.length >= 1, 10_000, "the erasure notice");
  assert.deepEqual(notices[0]!.entries, [entity.id]);
  assert.deepEqual(notices[0]!.fields, ["metadata"]);
  assert.deepEqual(
    seen.map((e) => e.entity_id),
    ["erase-me"],
    "entities:read sees ENTITY entries only",
  );

  // since: the entries from an instant on, read over HTTP first, then live.
  const history: AuditLogEntry[] = [];
  await reader.addListener((entry) => void history.push(entry), { since: new Date(Date.parse(bigReceipt.timestamp)), entityType: "FILE" });
  await writer.logDelete("FILE", "small-file", { projectId: "other" });
  await waitFor(() => history.length >= 3, 10_000, "history, then live");
  assert.deepEqual(
    history.map((e) => `${e.action} ${e.entity_id}`),
    ["CREATE big-file", "CREATE small-file", "DELETE small-file"],
  );

  // removeListener: no more calls.
  reader.removeListener(onProject);
  await writer.logCreate("FILE", "after-remove", { projectId: "big" });
  await sleep(300);
  assert.equal(inProject.length, 1);
});
