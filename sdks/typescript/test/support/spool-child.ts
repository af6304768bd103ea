// A client process for the crash drills: logs entries with a FileSpool, says SPOOLED once they are
// durably queued, then keeps running (sending, if it can) until the test kills it with SIGKILL.

import { AuditClient } from "../../src/index.js";
import { FileSpool } from "../../src/node.js";

const [url, apiKey, dir, count, prefix, concurrency] = process.argv.slice(2) as [string, string, string, string, string, string];

const client = new AuditClient({
  url,
  apiKey,
  spool: new FileSpool(dir),
  concurrency: Number(concurrency),
  maxBatchEntries: 50,
  lingerMs: 10,
  retryBaseMs: 20,
  retryCapMs: 200,
  requestTimeoutMs: 60_000,
  onRejected: () => undefined,
  onError: () => undefined,
});
for (let i = 0; i < Number(count); i++) {
  void client.logCreate("FILE", `${prefix}${i}`, { metadata: { i } });
}
await client.spooled();
process.stdout.write("SPOOLED\n");
setInterval(() => undefined, 1000);
