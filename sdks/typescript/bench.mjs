#!/usr/bin/env node
// Benchmarks of the TypeScript SDK against the local gateway (in memory):
//   - the overhead of a log* call (enqueue only: what the application's code waits for), median;
//   - sustained entries/s, batched (100 per request) vs one POST per entry, from the same client.
// Prints a Markdown table.
//
//   node bench.mjs [GATEWAY_BINARY]     (default: ../../target/debug/auditline-local)

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { cpus, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.argv[2] ?? path.resolve(here, "../../target/debug/auditline-local");
if (!existsSync(binary)) {
  console.error(`bench.mjs: the gateway binary ${binary} does not exist: cargo build -p auditline-local`);
  process.exit(1);
}
if (!existsSync(path.join(here, "dist/index.js"))) {
  const built = spawnSync(process.execPath, [path.join(here, "node_modules/typescript/bin/tsc"), "-p", path.join(here, "tsconfig.json")], { stdio: "inherit" });
  if (built.status !== 0) process.exit(1);
}
const { AuditClient } = await import("./dist/index.js");
const { FileSpool } = await import("./dist/node.js");

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startGateway() {
  const port = await freePort();
  const child = spawn(binary, ["--memory", "--port", String(port)], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
  let output = "";
  child.stdout.on("data", (c) => (output += c));
  child.stderr.on("data", (c) => (output += c));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const key = /^ {2}api key +(\S+)/m.exec(output)?.[1];
    if (key) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/audit/health`);
        if (r.ok) return { url: `http://127.0.0.1:${port}`, apiKey: key, child };
      } catch {
        // not yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`the gateway did not start:\n${output}`);
}

const gateway = await startGateway();
const spoolDirs = [];
const quiet = { onRejected: () => undefined, onError: () => undefined };
const entry = (i) => ({ projectId: "bench", changes: { before: { n: i - 1 }, after: { n: i } }, metadata: { i } });

/** Per-call time of logUpdate, enqueue only (ns), over `rounds` rounds of `calls` calls each. */
async function enqueueOverhead(options, rounds = 20, calls = 5_000) {
  const client = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, maxQueue: 1_000_000, ...quiet, ...options });
  const samples = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < calls; i++) {
      const t0 = process.hrtime.bigint();
      client.logUpdate("ENTITY", `bench-${round}-${i}`, entry(i));
      const t1 = process.hrtime.bigint();
      if (round > 0) samples.push(Number(t1 - t0));
    }
    await client.flush();
  }
  await client.close();
  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] / 1000;
  const mean = samples.reduce((s, x) => s + x, 0) / samples.length / 1000;
  return { median: at(0.5), p99: at(0.99), mean, n: samples.length };
}

/** Entries per second from logging `n` entries to the moment the service has answered for all. */
async function throughput(n, options) {
  const client = new AuditClient({ url: gateway.url, apiKey: gateway.apiKey, ...quiet, ...options });
  // Warm up the connection.
  await client.logCreate("ENTITY", "warm-up");
  const started = performance.now();
  const receipts = [];
  for (let i = 0; i < n; i++) {
    receipts.push(client.logCreate("ENTITY", `through-${i}`, entry(i)));
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await client.flush();
  const seconds = (performance.now() - started) / 1000;
  const settled = await Promise.allSettled(receipts);
  await client.close();
  const stored = settled.filter((s) => s.status === "fulfilled").length;
  if (stored !== n) throw new Error(`only ${stored} of ${n} stored`);
  return n / seconds;
}

function spool() {
  const dir = mkdtempSync(path.join(tmpdir(), "auditline-bench-spool-"));
  spoolDirs.push(dir);
  return new FileSpool(dir);
}

const rows = [];
try {
  const plain = await enqueueOverhead({});
  rows.push(["`log*` call overhead (enqueue), in memory", `**${plain.median.toFixed(2)} µs** median (p99 ${plain.p99.toFixed(1)} µs, mean ${plain.mean.toFixed(2)} µs; ${plain.n.toLocaleString("en")} calls)`]);
  const spooled = await enqueueOverhead({ spool: spool() }, 10, 5_000);
  rows.push(["`log*` call overhead (enqueue), with `FileSpool`", `${spooled.median.toFixed(2)} µs median (p99 ${spooled.p99.toFixed(1)} µs, mean ${spooled.mean.toFixed(2)} µs)`]);

  const batched = await throughput(50_000, {});
  rows.push(["batched (100 per POST, 1 in flight, the default)", `**${Math.round(batched).toLocaleString("en")} entries/s** (50,000 entries)`]);
  const batched4 = await throughput(50_000, { concurrency: 4 });
  rows.push(["batched (100 per POST, 4 in flight)", `${Math.round(batched4).toLocaleString("en")} entries/s (50,000 entries)`]);
  const batchedSpool = await throughput(20_000, { spool: spool() });
  rows.push(["batched, with `FileSpool` (fsync'd)", `${Math.round(batchedSpool).toLocaleString("en")} entries/s (20,000 entries)`]);
  const single = await throughput(3_000, { maxBatchEntries: 1 });
  rows.push(["one POST per entry (1 in flight)", `${Math.round(single).toLocaleString("en")} entries/s (3,000 entries)`]);
  const single16 = await throughput(10_000, { maxBatchEntries: 1, concurrency: 16 });
  rows.push(["one POST per entry (16 in flight)", `${Math.round(single16).toLocaleString("en")} entries/s (10,000 entries)`]);
} finally {
  gateway.child.kill("SIGTERM");
  for (const dir of spoolDirs) rmSync(dir, { recursive: true, force: true });
}

console.log(`TypeScript SDK (@auditline/client), Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "CPU"}; local gateway \`--memory\` (${path.basename(binary)}, ${binary.includes("/release/") ? "release" : "debug"} build), same machine\n`);
console.log("| measure | result |");
console.log("|---|---|");
for (const [what, result] of rows) console.log(`| ${what} | ${result} |`);
