// The viewer in a real headless Chromium against the local gateway binary: sign in, filters,
// detail diff, live tail (and its reconnection), the entity graph, escaping, CORS from other
// origins, screenshots for the README, and verification in the browser — the shared vectors,
// pinned keys, and a service presenting another key under a pinned key's name.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { startGateway, launchBrowser, otherOrigin, signIn, docsDir } from './harness.mjs';

// The vectors the Rust verifier runs too (tests/suite/vectors.rs).
const VECTORS = join(docsDir, '..', 'tests', 'fixtures', 'verify-vectors.json');

let browser;
let gateway;
// A second gateway that seals minute periods every second: its entries get proofs during the run.
let sealing;
let sealedIds = [];
const allowed = await otherOrigin('<!doctype html><title>allowed</title>');
const refused = await otherOrigin('<!doctype html><title>refused</title>');

before(async () => {
  browser = await launchBrowser();
  gateway = await startGateway({ CORS_ALLOWED_ORIGINS: allowed.origin });
  sealing = await startGateway({ AUDIT_SEAL_PERIOD_MINUTES: '1', AUDIT_SEAL_GRACE_SECONDS: '1', AUDITLINE_SEAL_KEY_FILE: join(tmpdir(), `auditline-seal-${process.pid}.pem`) });
  for (let i = 0; i < 5; i += 1) {
    sealedIds.push((await sealing.post({
      action: 'UPDATE', entity_type: 'FILE', entity_id: `sealed-${i}`, changes: { before: { v: i }, after: { v: i + 0.5, s: 'ünï "q"' } }, metadata: { n: [1, 2.5, -3e-7] },
    })).id);
  }
  const actions = ['CREATE', 'UPDATE', 'DELETE', 'VIEW'];
  for (let i = 0; i < 24; i += 1) {
    await gateway.post({
      action: actions[i % 4], entity_type: i % 2 ? 'FILE' : 'PROJECT', entity_id: `doc-${i}`,
      project_id: 'apollo',
      changes: { before: { title: 'Draft', size: 1, gone: true }, after: { title: 'Final', size: 1, tags: ['q4'] } },
      metadata: { request: `r-${i}` },
    });
  }
});

after(async () => {
  await browser?.close();
  gateway?.stop();
  sealing?.stop();
  allowed.close();
  refused.close();
});

async function freshPage(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  return { page, problems, close: () => context.close() };
}

test('signs in, filters by the URL fragment, and opens a detail with the diff', async () => {
  const { page, problems, close } = await freshPage();
  await signIn(page, gateway);
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length >= 24);
  await page.selectOption('#action', 'DELETE');
  await page.waitForFunction(() => location.hash.includes('action=DELETE'));
  await page.waitForFunction(() => {
    const badges = [...document.querySelectorAll('table.entries tbody tr .badge')].map((b) => b.textContent);
    return badges.length === 6 && badges.every((b) => b === 'DELETE');
  });
  // The view survives a reload: the fragment holds it, sessionStorage the credential.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length === 6);
  assert.equal(await page.inputValue('#action'), 'DELETE');

  await page.locator('table.entries tbody tr').first().press('Enter');
  await page.waitForSelector('#detail:not([hidden]) table.diff');
  const kinds = await page.$$eval('#detail table.diff tbody tr', (rows) => Object.fromEntries(rows.map((r) => [r.querySelector('th').firstChild.textContent, r.dataset.kind])));
  assert.deepEqual(kinds, { gone: 'removed', size: 'same', tags: 'added', title: 'changed' });
  await page.keyboard.press('Escape');
  await page.waitForSelector('#detail', { state: 'hidden' });
  assert.deepEqual(problems, []);
  await close();
});

test('screenshots: desktop with a detail, phone, and the activity view in dark', async () => {
  const desktop = await freshPage({ width: 1280, height: 800 });
  await signIn(desktop.page, gateway);
  await desktop.page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length > 10);
  await desktop.page.locator('table.entries tbody tr').nth(2).locator('td').first().click();
  await desktop.page.waitForSelector('#detail:not([hidden]) table.diff');
  await desktop.page.screenshot({ path: join(docsDir, 'viewer-desktop.png') });
  await desktop.close();

  const phone = await freshPage({ width: 390, height: 844 });
  await signIn(phone.page, gateway);
  await phone.page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length > 10);
  // Nothing wider than the screen but the table, which scrolls in its own box.
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  await phone.page.screenshot({ path: join(docsDir, 'viewer-phone.png') });
  await phone.close();

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'dark' });
  const page = await context.newPage();
  await signIn(page, gateway);
  await page.goto(`${gateway.url}/#view=activity&range=24h`);
  await page.waitForSelector('figure.chart svg rect');
  // Every entry of the day is in the chart: the bars' counts add up to the total.
  const [total, bars] = await page.evaluate(() => [
    Number(document.querySelector('.activity [role=status]').textContent.split(' ')[0]),
    [...document.querySelectorAll('figure.chart')][0].querySelectorAll('rect').length,
  ]);
  assert.ok(total >= 24 && bars >= 1, `${total} entries in ${bars} bars`);
  await page.screenshot({ path: join(docsDir, 'viewer-activity-dark.png') });
  await context.close();
});

test('an erased field shows as erased, and leads to its erasure record', async () => {
  const own = await startGateway();
  try {
    const entry = await own.post({ action: 'UPDATE', entity_type: 'REPORT', entity_id: 'report-9', metadata: { phone: '+44 20 7946 0001' } });
    const erased = await fetch(`${own.url}/audit/logs/${entry.id}/erasure`, {
      method: 'POST',
      headers: { authorization: `Bearer ${own.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ fields: ['metadata', 'ip_address'], reason: 'GDPR request 12' }),
    });
    assert.equal(erased.status, 200, await erased.clone().text());
    const { record } = await erased.json();
    const { page, problems, close } = await freshPage();
    await signIn(page, own);
    await page.selectOption('#entity_type', 'REPORT');
    await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length === 1);
    await page.locator('table.entries tbody tr').first().press('Enter');
    await page.waitForSelector('#detail:not([hidden]) .erased');
    assert.equal(await page.locator('#detail .erased').count(), 2, 'From and Metadata');
    assert.equal(await page.locator('#detail').getByText('+44 20 7946').count(), 0);
    await page.locator('#detail .erased button').first().click();
    await page.waitForFunction(() => document.querySelector('#detail h2')?.textContent.includes('AUDIT_ENTRY'));
    const shown = await page.textContent('#detail');
    assert.ok(shown.includes(record.id) && shown.includes('GDPR request 12'), shown);
    assert.deepEqual(problems, []);
    await close();
  } finally {
    own.stop();
  }
});

test('an erasure made while a row is in the live tail blanks its fields there, and the row opens as erased', async () => {
  const own = await startGateway();
  try {
    const { page, problems, close } = await freshPage();
    await signIn(page, own);
    await page.check('#live');
    await page.waitForFunction(() => document.body.dataset.live === 'live');
    const entry = await own.post({ action: 'UPDATE', entity_type: 'REPORT', entity_id: 'tail-erased', metadata: { phone: '+44 20 7946 0002' } });
    await page.waitForSelector(`tr[data-id="${entry.id}"]`);
    const from = `tr[data-id="${entry.id}"] td[data-field="ip_address"]`;
    assert.equal(await page.textContent(from), entry.ip_address, 'shown before the erasure');
    const erased = await fetch(`${own.url}/audit/logs/${entry.id}/erasure`, {
      method: 'POST',
      headers: { authorization: `Bearer ${own.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ fields: ['ip_address', 'metadata'], reason: 'GDPR request 13' }),
    });
    assert.equal(erased.status, 200, await erased.clone().text());
    const { record } = await erased.json();
    // The record arrives on the feed (this connection may read it): the row loses the field.
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === 'erased', from, { timeout: 2000 });
    assert.equal(await page.getAttribute(`${from} .erased`, 'title'), `erased by ${record.id}`);
    await page.locator(`tr[data-id="${entry.id}"]`).press('Enter');
    await page.waitForSelector('#detail:not([hidden]) .erased');
    assert.equal(await page.locator('#detail').getByText('+44 20 7946').count(), 0);
    assert.equal(await page.locator('#detail .erased').count(), 2, 'From and Metadata, read again from the API');
    assert.deepEqual(problems, []);
    await close();
  } finally {
    own.stop();
  }
});

test('export of the current view downloads every matching entry', async () => {
  const { page, problems, close } = await freshPage();
  await signIn(page, gateway);
  await page.goto(`${gateway.url}/#view=logs&action=DELETE&range=24h`);
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length > 0);
  const shown = await page.locator('table.entries tbody tr').count();
  await page.selectOption('#export-format', 'jsonl');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const path = await download.path();
  const lines = (await import('node:fs')).readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.length >= shown && lines.every((e) => e.action === 'DELETE'), `${lines.length} lines`);
  assert.deepEqual(problems, []);
  await close();
});

test('a bad or expired credential shows a clear message', async () => {
  const { page, close } = await freshPage();
  await page.goto(`${gateway.url}/`);
  await page.fill('#credential', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl');
  await page.click('.signin button[type=submit]');
  await page.waitForFunction(() => document.getElementById('signin-error').textContent.length > 0);
  assert.match(await page.textContent('#signin-error'), /credential was refused/);
  await close();

  // A credential kept from earlier that has since expired or been revoked: the sign-in screen
  // comes back and says why, instead of an empty table.
  const context = await browser.newContext();
  await context.addInitScript(() => sessionStorage.setItem('auditline.credential', JSON.stringify({ kind: 'api_key', value: 'alk_revoked' })));
  const stale = await context.newPage();
  await stale.goto(`${gateway.url}/`);
  await stale.waitForFunction(() => document.getElementById('signin-error')?.textContent.length > 0);
  assert.match(await stale.textContent('#signin-error'), /credential was refused/);
  await context.close();
});

test('a POSTed entry appears in the live tail within a second, and a dropped socket catches up once', async () => {
  const { page, problems, close } = await freshPage();
  await signIn(page, gateway);
  await page.check('#live');
  await page.waitForFunction(() => document.body.dataset.live === 'live');
  const started = Date.now();
  const { id } = await gateway.post({ action: 'CREATE', entity_type: 'REPORT', entity_id: 'live-1' });
  await page.waitForSelector(`tr[data-id="${id}"]`, { timeout: 1000 });
  assert.ok(Date.now() - started < 1000);

  // Dropped: entries written while it is down arrive once, from the catch-up or the feed.
  await page.evaluate(() => window.auditlineLive.drop());
  await page.waitForFunction(() => document.body.dataset.live !== 'live');
  const missed = [];
  for (let i = 0; i < 3; i += 1) missed.push((await gateway.post({ action: 'UPDATE', entity_type: 'REPORT', entity_id: `missed-${i}` })).id);
  await page.waitForFunction(() => document.body.dataset.live === 'live', null, { timeout: 15000 });
  for (const m of missed) await page.waitForSelector(`tr[data-id="${m}"]`, { timeout: 5000 });
  const after = (await gateway.post({ action: 'DELETE', entity_type: 'REPORT', entity_id: 'after-reconnect' })).id;
  await page.waitForSelector(`tr[data-id="${after}"]`, { timeout: 1000 });
  // Too large for one frame (over 128 KB): it comes as a notice, and the page fetches it whole.
  const large = (await gateway.post({ action: 'UPDATE', entity_type: 'REPORT', entity_id: 'large', changes: { blob: 'x'.repeat(200 * 1024) } })).id;
  await page.waitForSelector(`tr[data-id="${large}"]`, { timeout: 2000 });
  for (const m of [...missed, after, large, id]) assert.equal(await page.locator(`tr[data-id="${m}"]`).count(), 1, `${m} shown once`);
  assert.deepEqual(problems, []);
  await close();
});

test('the entity graph shows current links only, and moves to a neighbour on click', async () => {
  const link = (action, target) => gateway.post({ action, entity_type: 'ENTITY', entity_id: 'hub', metadata: { target_id: target, target_type: 'FILE' } });
  await link('LINK', 'spoke-a');
  await link('LINK', 'spoke-b');
  await link('LINK', 'spoke-c');
  await link('UNLINK', 'spoke-b');
  await gateway.post({ action: 'LINK', entity_type: 'FILE', entity_id: 'spoke-a', metadata: { target_id: 'far', target_type: 'REPORT' } });
  const { page, problems, close } = await freshPage();
  await signIn(page, gateway);
  await page.goto(`${gateway.url}/#view=entity&entity=hub`);
  await page.waitForSelector('svg.graph');
  const nodes = await page.$$eval('svg.graph .node:not(.current)', (n) => n.map((x) => x.dataset.entity).sort());
  assert.deepEqual(nodes, ['spoke-a', 'spoke-c']);
  await page.click('svg.graph .node[data-entity="spoke-a"]');
  await page.waitForFunction(() => location.hash.includes('entity=spoke-a'));
  await page.waitForFunction(() => [...document.querySelectorAll('svg.graph .node:not(.current)')].map((x) => x.dataset.entity).join() === 'far');
  assert.deepEqual(problems, []);
  await close();
});

test('markup and script in every text field render as text and run nothing', async () => {
  const payloads = ['<script>window.__pwned = 1</script>', '"><img src=x onerror="window.__pwned=2">', 'javascript:window.__pwned=3'];
  for (const p of payloads) {
    await gateway.post({
      action: 'UPDATE', entity_type: 'FILE', entity_id: `x${p}`, project_id: p,
      changes: { before: { [p]: p }, after: { [p]: `${p}!` } }, metadata: { [p]: p },
    });
  }
  const { page, close } = await freshPage();
  await signIn(page, gateway);
  await page.waitForSelector('tr >> text=<script>window.__pwned = 1</script>');
  for (const row of await page.locator('table.entries tbody tr').all()) {
    if ((await row.textContent()).includes('__pwned')) {
      await row.locator('td').first().click();
      await page.waitForSelector('#detail:not([hidden])');
      await page.click('#detail .close');
    }
  }
  await page.click('button.link >> text=x"><img src=x onerror="window.__pwned=2">');
  await page.waitForSelector('.entity-view .timeline');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script ran');
  assert.equal(await page.locator('img').count(), 0, 'no element was made from entry data');
  await close();
});

test('pages of an allowed origin may call the API and open the feed; others may not', async () => {
  const probe = async (origin) => {
    const { page, close } = await freshPage();
    await page.goto(`${origin}/`);
    const result = await page.evaluate(async ({ url, key }) => {
      const out = {};
      try {
        const r = await fetch(`${url}/audit/logs?limit=1`, { headers: { 'x-api-key': key } });
        out.fetch = r.status;
        out.nextToken = r.headers.get('x-entry-count') === null ? 'hidden-or-absent' : 'exposed';
      } catch {
        out.fetch = 'blocked';
      }
      out.socket = await new Promise((resolve) => {
        const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`, ['api-key', key]);
        ws.onopen = () => { ws.close(); resolve('open'); };
        ws.onerror = () => resolve('refused');
      });
      return out;
    }, { url: gateway.url, key: gateway.key });
    await close();
    return result;
  };
  const yes = await probe(allowed.origin);
  assert.equal(yes.fetch, 200);
  assert.equal(yes.socket, 'open');
  const no = await probe(refused.origin);
  assert.equal(no.fetch, 'blocked');
  assert.equal(no.socket, 'refused');
});

test('scrolling to the end loads every page once', async () => {
  const batch = Array.from({ length: 100 }, (_, i) => ({ action: 'CREATE', entity_type: 'SCHEDULE', entity_id: `job-${i}` }));
  const response = await fetch(`${gateway.url}/audit/logs`, {
    method: 'POST', headers: { 'x-api-key': gateway.key, 'content-type': 'application/json' }, body: JSON.stringify(batch),
  });
  assert.ok(response.ok);
  const { page, problems, close } = await freshPage();
  await signIn(page, gateway);
  await page.goto(`${gateway.url}/#view=logs&entity_type=SCHEDULE&range=24h`);
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length === 50);
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length === 100);
  await page.waitForFunction(() => document.querySelector('.table-status').textContent === '100 entries');
  const ids = await page.$$eval('table.entries tbody tr', (rows) => rows.map((r) => r.dataset.id));
  assert.equal(new Set(ids).size, 100, 'each entry once');
  assert.deepEqual(problems, []);
  await close();
});

/// Until the sealing gateway's first entries have a proof (the minute period, its grace and a tick).
async function untilSealed() {
  const started = Date.now();
  for (;;) {
    const r = await fetch(`${sealing.url}/audit/logs/${sealedIds[0]}/proof`, { headers: { 'x-api-key': sealing.key } });
    if ((await r.json()).sealed !== false) return;
    assert.ok(Date.now() - started < 90000, 'the period is sealed within 90 s');
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const STATES = ['verified', 'pending', 'failed', 'unpinned', 'error'];

/// Opens an entry's detail, waits for its proof mark, and (unless `open`) closes it again.
async function proofMark(page, id, { open = false } = {}) {
  await page.locator(`tr[data-id="${id}"] td`).first().click();
  await page.waitForFunction((states) => states.includes(document.getElementById('verified')?.dataset.state), STATES);
  const result = await page.evaluate(() => [document.getElementById('verified').dataset.state, document.getElementById('verified').textContent]);
  if (!open) await page.click('#detail .close');
  return result;
}

test('the shared verification vectors come out in the browser as they do in Rust', async () => {
  const vectors = JSON.parse(readFileSync(VECTORS, 'utf8'));
  assert.ok(Array.isArray(vectors.cases) && vectors.cases.length >= 14, `every attack has its case (${vectors.cases?.length})`);
  const { page, problems, close } = await freshPage();
  await page.goto(`${gateway.url}/`);
  // The page's own module, imported in the page (the CSP allows same-origin modules only).
  const results = await page.evaluate(async (v) => {
    const { verifyProof } = await import('/viewer/js/verify.js');
    const out = [];
    for (const c of v.cases) out.push(await verifyProof(c.proof, c.entry, { pinned: c.pinned || v.pinned, tenant: v.tenant, now: v.now }));
    return out;
  }, vectors);
  assert.equal(results.length, vectors.cases.length);
  vectors.cases.forEach((c, i) => assert.equal(results[i].state, c.expect, `${c.name} (${c.about}): ${results[i].text}`));
  const named = Object.fromEntries(vectors.cases.map((c, i) => [c.name, results[i].text]));
  assert.equal(named['unpinned-key'], 'unverified: key not pinned');
  assert.match(named['erased-field-refilled'], /field user_id is marked erased but has a value/);
  assert.match(named.overdue, /should have been sealed by .*: a checkpoint was removed/);
  assert.match(named['retired-key'], /retired/);
  for (const expect of ['verified', 'failed', 'pending', 'unpinned']) assert.ok(vectors.cases.some((c) => c.expect === expect), expect);
  assert.deepEqual(problems, []);
  await close();
});

test('an entry is verified in the browser once sealed, only with a pinned key; a changed one is not', async () => {
  await untilSealed();
  const { page, problems, close } = await freshPage();
  await signIn(page, sealing);

  // Nothing pinned: the key the service serves proves nothing, and the mark says so.
  await page.waitForSelector(`tr[data-id="${sealedIds[0]}"]`);
  const [first, firstText] = await proofMark(page, sealedIds[0], { open: true });
  assert.equal(first, 'unpinned', firstText);
  assert.equal(firstText, 'unverified: key not pinned');
  await page.click('#pin-guide');
  await page.waitForFunction(() => location.hash.includes('view=keys'));
  await page.waitForSelector('#detail', { state: 'hidden' });

  // The keys view: the served key's fingerprint, compared with the one the operator published
  // (the gateway's output), then pinned.
  const served = page.locator(`.served-keys li[data-key-id="${sealing.sealKeyId}"]`);
  await served.waitFor();
  assert.equal(await served.locator('.fingerprint').textContent(), sealing.sealKeyId);
  assert.match(await served.textContent(), /auditline fingerprint <public key\.pem>/);
  await served.locator('button[data-action="pin"]').click();
  await page.waitForSelector(`.pinned-keys li[data-key-id="${sealing.sealKeyId}"]`);
  assert.ok(await page.locator('#key-warning').isHidden(), 'no warning for the genuine key');

  // A fresh entry, posted early enough in its minute not to be sealed while the test runs.
  const inMinute = Date.now() % 60000;
  if (inMinute > 40000) await new Promise((resolve) => setTimeout(resolve, 60500 - inMinute));
  const fresh = (await sealing.post({ action: 'CREATE', entity_type: 'FILE', entity_id: 'fresh' })).id;
  await page.click('.tabs a[data-view="logs"]');
  await page.waitForSelector(`tr[data-id="${fresh}"]`);
  assert.equal((await proofMark(page, fresh))[0], 'pending');
  for (const id of sealedIds) {
    const [state, text] = await proofMark(page, id);
    assert.equal(state, 'verified', text);
  }

  // The same entries with one value changed on the way to the page: caught.
  await page.route('**/audit/logs?*', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    for (const e of body.entries) if (e.entity_id === 'sealed-2') e.entity_id = 'sealed-20';
    await route.fulfill({ response, json: body });
  });
  await page.reload();
  await page.waitForSelector(`tr[data-id="${sealedIds[2]}"]`);
  const [state, text] = await proofMark(page, sealedIds[2]);
  assert.equal(state, 'failed');
  assert.match(text, /does not match its leaf hash/);
  assert.equal((await proofMark(page, sealedIds[1]))[0], 'verified', 'the others still verify');
  assert.deepEqual(problems, []);
  await close();
});

/// The note text a checkpoint's signature covers (auditline-checkpoint/2).
const b64 = (hex) => Buffer.from(hex, 'hex').toString('base64');
const noteText = (c) => `${c.origin}\n${c.total}\n${b64(c.root)}\n${c.format}\nperiod ${c.start} ${c.end} ${c.size}\n`
  + `ids ${b64(c.ids)}\nprevious ${b64(c.previous)}\n`;
const HALF_ORDER = 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8n;

/// A low-s DER signature (base64) of `text`: refused by the viewer for its key, not for its form.
function lowSSignature(text, key) {
  for (;;) {
    const der = sign('sha256', Buffer.from(text), { key, dsaEncoding: 'der' });
    const rLength = der[3];
    const s = BigInt(`0x${der.subarray(6 + rLength, 6 + rLength + der[5 + rLength]).toString('hex')}`);
    if (s <= HALF_ORDER) return der.toString('base64');
  }
}

test('a service presenting another key under a pinned key’s id: a loud warning on every view, and nothing verifies', async () => {
  await untilSealed();
  const { page, problems, close } = await freshPage();
  await signIn(page, sealing);
  const genuine = (await (await fetch(`${sealing.url}/audit/keys`)).json()).keys.find((k) => k.key_id === sealing.sealKeyId);
  assert.ok(genuine, 'the gateway serves its key');
  const pinned = await page.evaluate(async (pin) => (await import('/viewer/js/pins.js')).add(pin),
    { key_id: genuine.key_id, public_key_pem: genuine.public_key_pem, valid_until: null });
  assert.equal(pinned, sealing.sealKeyId);

  // The service turns: it serves another key under the pinned key's id and signs its checkpoints
  // with it (what whoever runs it could do to rewrite history).
  const impostor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let resigned = 0;
  await page.route('**/audit/keys', (route) => route.fulfill({
    json: { keys: [{ key_id: sealing.sealKeyId, public_key_pem: impostor.publicKey.export({ type: 'spki', format: 'pem' }) }] },
  }));
  await page.route('**/audit/logs/*/proof', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    if (body.sealed) {
      const text = noteText(body.checkpoint);
      // The genuine signature covers exactly this text: the failure below is the key's.
      assert.ok(verify('sha256', Buffer.from(text), { key: genuine.public_key_pem, dsaEncoding: 'der' }, Buffer.from(body.checkpoint.signature, 'base64')));
      body.checkpoint.signature = lowSSignature(text, impostor.privateKey);
      resigned += 1;
    }
    await route.fulfill({ response, json: body });
  });
  await page.reload();
  const warning = page.locator('#key-warning');
  await warning.waitFor({ state: 'visible' });
  assert.equal(await warning.getAttribute('role'), 'alert');
  assert.match(await warning.textContent(), new RegExp(`another key under the id of a key you pinned \\(${sealing.sealKeyId}\\)`));

  for (const view of ['activity', 'entity', 'keys']) {
    await page.click(`.tabs a[data-view="${view}"]`);
    await page.waitForFunction((v) => location.hash.includes(`view=${v}`), view);
    assert.ok(await warning.isVisible(), `the warning is shown on the ${view} view`);
  }
  // The keys view marks the key and offers no Pin for it.
  const served = page.locator(`.served-keys li[data-key-id="${sealing.sealKeyId}"]`);
  await served.waitFor();
  assert.match(await served.textContent(), /ANOTHER KEY under the id of a key you pinned/);
  assert.equal(await served.locator('button[data-action="pin"]').count(), 0);

  await page.click('.tabs a[data-view="logs"]');
  for (const id of sealedIds) {
    await page.waitForSelector(`tr[data-id="${id}"]`);
    const [state, text] = await proofMark(page, id);
    assert.equal(state, 'failed', text);
    assert.match(text, /signature does not verify with the pinned key/);
    assert.ok(await warning.isVisible());
  }
  assert.equal(resigned, sealedIds.length, 'every proof was re-signed');
  assert.deepEqual(problems, []);
  await close();
});
