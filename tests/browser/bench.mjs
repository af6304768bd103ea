// The viewer's figures for BENCHMARKS.md (scripts/bench.sh viewer): time from navigation to the
// first painted rows with 10,000 entries in the store, live-tail latency from POST to the row on
// screen over 100 entries, and the page's weight. Measured in the browser with the Navigation and
// Performance APIs, against the local gateway binary (release build when AUDITLINE_BIN_DIR says so).

import { startGateway, launchBrowser } from './harness.mjs';

const ENTRIES = Number(process.env.VIEWER_BENCH_ENTRIES || 10000);
const LIVE = 100;
const RUNS = 7;

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};

const gateway = await startGateway();
const browser = await launchBrowser();
try {
  for (let i = 0; i < ENTRIES; i += 100) {
    const batch = Array.from({ length: Math.min(100, ENTRIES - i) }, (_, j) => ({
      action: ['CREATE', 'UPDATE', 'DELETE', 'VIEW'][(i + j) % 4], entity_type: 'FILE', entity_id: `doc-${i + j}`,
      project_id: 'apollo', changes: { before: { n: i + j }, after: { n: i + j + 1 } },
    }));
    const response = await fetch(`${gateway.url}/audit/logs`, {
      method: 'POST', headers: { 'x-api-key': gateway.key, 'content-type': 'application/json' }, body: JSON.stringify(batch),
    });
    if (!response.ok) throw new Error(`batch POST answered ${response.status}`);
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Signed in already (the credential in sessionStorage), and a probe that notes when rows appear.
  await context.addInitScript(({ key }) => {
    sessionStorage.setItem('auditline.credential', JSON.stringify({ kind: 'api_key', value: key }));
    window.__rows = {};
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) {
        if (n.nodeName === 'TR' && n.dataset.id) {
          const at = Date.now();
          if (window.__firstRow === undefined) requestAnimationFrame(() => { window.__firstRow = performance.now(); });
          window.__rows[n.dataset.id] = at;
        }
      }
    }).observe(document, { childList: true, subtree: true });
  }, { key: gateway.key });
  const page = await context.newPage();

  const firstRows = [];
  let weight = 0;
  for (let run = 0; run < RUNS; run += 1) {
    await page.goto(`${gateway.url}/`, { waitUntil: 'load' });
    await page.waitForFunction(() => window.__firstRow !== undefined);
    firstRows.push(await page.evaluate(() => window.__firstRow));
    weight = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return performance.getEntriesByType('resource').reduce((sum, r) => sum + r.encodedBodySize, nav.encodedBodySize);
    });
  }

  await page.check('#live');
  await page.waitForFunction(() => document.body.dataset.live === 'live');
  const latencies = [];
  for (let i = 0; i < LIVE; i += 1) {
    const sent = Date.now();
    const { id } = await gateway.post({ action: 'CREATE', entity_type: 'REPORT', entity_id: `live-${i}` });
    await page.waitForFunction((want) => window.__rows[want] !== undefined, id, { polling: 'raf' });
    latencies.push((await page.evaluate((want) => window.__rows[want], id)) - sent);
  }
  console.log(JSON.stringify({
    entries: ENTRIES,
    first_rows_ms: { p50: quantile(firstRows, 0.5), max: Math.max(...firstRows), runs: RUNS },
    live_ms: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), n: LIVE },
    page_bytes: weight,
  }));
} finally {
  await browser.close();
  gateway.stop();
}
