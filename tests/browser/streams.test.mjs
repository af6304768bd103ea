// The Streams view in a real headless Chromium against the local gateway binary: two log streams
// made over the API — a webhook to a receiver on loopback that accepts, and one to a loopback port
// nothing listens on — then the view's figures and failing marker, the page-wide health line,
// pause and resume from the page (checked over the API), test events and their outcomes, a
// stream's name holding markup shown as text, and a caller without audit:admin told so.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { startGateway, launchBrowser } from './harness.mjs';

// The gateway's JWT key (HS256), so that the test can mint tokens of exactly the scopes it needs.
const SECRET = `browser-streams-${process.pid}-${Date.now()}`;
const HOSTILE = 'Dead end <img src=x onerror=alert(1)>';

let browser;
let gateway;
let receiver;
let admin;
let good;
let bad;

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/// A JWT for the gateway's tenant (`local`, as its development API key) with `scope`.
function token(scope) {
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: 'operator', tenant_id: 'local', scope, iat: now, exp: now + 3600 })}`;
  return `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

/// A webhook receiver on loopback that takes every delivery (200) and keeps the bodies.
function startReceiver() {
  const bodies = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/hook`,
    bodies,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  })));
}

/// A loopback port nothing listens on: bound, then let go.
function deadPort() {
  const server = createServer();
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  }));
}

async function call(method, path, body) {
  const response = await fetch(`${gateway.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${admin}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function stream(id) {
  const r = await call('GET', `/audit/streams/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

async function until(what, check, within = 30000) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() - started < within, `${what} within ${within} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

before(async () => {
  browser = await launchBrowser();
  // Fast retries and an early give-up, so the dead stream is marked failing within seconds.
  gateway = await startGateway({
    JWT_SECRET: SECRET,
    AUDIT_STREAM_RETRY_BASE_MS: '100',
    AUDIT_STREAM_RETRY_MAX_SECONDS: '1',
    AUDIT_STREAM_GIVE_UP_SECONDS: '2',
  });
  admin = token('audit:admin audit:read');
  receiver = await startReceiver();
  const made = async (name, url) => {
    const r = await call('POST', '/audit/streams', { name, target: { type: 'webhook', url } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.stream.id;
  };
  good = await made('SIEM receiver', receiver.url);
  bad = await made(HOSTILE, `http://127.0.0.1:${await deadPort()}/hook`);
  for (let i = 0; i < 5; i += 1) await gateway.post({ action: 'UPDATE', entity_type: 'REPORT', entity_id: `report-${i}` });
  // Delivered to one, given up on at the other: the figures the page is to show.
  await until('the receiver takes the entries', async () => (await stream(good)).figures.delivered >= 5);
  await until('the dead stream is failing', async () => (await stream(bad)).status === 'failing');
});

after(async () => {
  await browser?.close();
  gateway?.stop();
  await receiver?.close();
});

async function freshPage(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  const dialogs = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  return { page, problems, dialogs, close: () => context.close() };
}

/// Signs in through the form, as a user would, with a token or an API key.
async function signIn(page, kind, value) {
  await page.goto(`${gateway.url}/`);
  await page.selectOption('#credential-kind', kind);
  await page.fill('#credential', value);
  await page.click('.signin button[type=submit]');
  await page.waitForSelector('table.entries');
}

const item = (page, id) => page.locator(`.stream-list li.stream[data-stream-id="${id}"]`);
const figure = (page, id, name) => item(page, id).locator(`dd[data-field="${name}"]`).textContent();

test('the Streams view shows each stream’s figures and marks the failing one; the health line names it on every view', async () => {
  const { page, problems, dialogs, close } = await freshPage();
  await signIn(page, 'token', admin);

  // Before the view is opened: the health line already says which stream is failing.
  const health = page.locator('#health');
  await health.waitFor({ state: 'visible' });
  assert.equal(await health.getAttribute('data-failing'), '1');
  assert.match(await health.textContent(), /1 of 2 log streams failing/);
  assert.equal(await health.locator('.health-stream').textContent(), HOSTILE, 'the name as text');
  assert.equal(await health.locator('.health-stream').getAttribute('data-stream-id'), bad);

  await page.click('.tabs a[data-view="streams"]');
  await page.waitForFunction(() => location.hash.includes('view=streams'));
  await item(page, good).waitFor();
  await item(page, bad).waitFor();
  assert.equal(await page.locator('.stream-list li.stream').count(), 2);
  assert.match(await page.textContent('.streams-status'), /2 streams, 1 failing/);

  // The healthy one: its destination, kind, format and figures as the API gives them.
  const served = await stream(good);
  assert.equal(await item(page, good).getAttribute('data-status'), 'active');
  assert.equal(await item(page, good).locator('.stream-name').textContent(), 'SIEM receiver');
  assert.equal(await figure(page, good, 'type'), 'Webhook');
  assert.equal(await figure(page, good, 'destination'), receiver.url);
  assert.match(await figure(page, good, 'format'), /^entry/);
  assert.ok(Number(await figure(page, good, 'delivered')) >= 5, await figure(page, good, 'delivered'));
  assert.equal(await figure(page, good, 'failed'), String(served.figures.failed));
  assert.match(await figure(page, good, 'lag'), /^\d+ ms \/ \d+ ms$/);
  assert.match(await figure(page, good, 'last_delivered_at'), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \(/);
  assert.equal(await figure(page, good, 'last_error'), 'none');
  assert.equal(await item(page, good).locator('.stream-failing').count(), 0);

  // The failing one: marked, with its reason and since when, its last error and its retries.
  const failing = await stream(bad);
  const shown = item(page, bad);
  assert.equal(await shown.getAttribute('data-status'), 'failing');
  assert.equal(await shown.locator('.stream-status').textContent(), 'failing');
  assert.ok(await shown.evaluate((n) => n.classList.contains('stream-is-failing')));
  const marker = await shown.locator('.stream-failing').textContent();
  assert.ok(marker.startsWith('Failing since '), marker);
  assert.equal(await shown.locator('.stream-reason').textContent(), failing.failing.reason);
  assert.ok(failing.failing.reason.length > 0);
  assert.ok(Number(await figure(page, bad, 'retried')) >= 1, await figure(page, bad, 'retried'));
  assert.ok(Number(await figure(page, bad, 'failed')) >= 1, await figure(page, bad, 'failed'));
  assert.match(await figure(page, bad, 'last_error'), /UTC \(.*\): ./);
  assert.equal(await figure(page, bad, 'last_delivered_at'), 'never');

  // Markup in a stream's name is text, in the list and in the health line; nothing ran.
  assert.equal(await shown.locator('.stream-name').textContent(), HOSTILE);
  assert.equal(await page.locator('img').count(), 0, 'no element was made from the name');
  assert.deepEqual(dialogs, [], 'no script ran');

  // The health line stays on the other views.
  for (const view of ['logs', 'activity', 'keys']) {
    await page.click(`.tabs a[data-view="${view}"]`);
    await page.waitForFunction((v) => location.hash.includes(`view=${v}`), view);
    assert.ok(await health.isVisible(), `the health line is shown on the ${view} view`);
  }
  assert.deepEqual(problems, []);
  await close();
});

test('pause and resume from the page change the stream over the API; test events show how they went', async () => {
  const { page, problems, dialogs, close } = await freshPage();
  await signIn(page, 'token', admin);
  await page.goto(`${gateway.url}/#view=streams`);
  await item(page, good).waitFor();
  const result = item(page, good).locator('.stream-result');

  await item(page, good).locator('button[data-action="pause"]').click();
  await page.waitForFunction((id) => document.querySelector(`li[data-stream-id="${id}"] .stream-result`)?.dataset.outcome === 'done', good);
  assert.match(await result.textContent(), /^Paused/);
  const paused = await stream(good);
  assert.equal(paused.paused, true);
  assert.equal(paused.status, 'paused');
  assert.equal(await item(page, good).getAttribute('data-status'), 'paused');
  assert.equal(await item(page, good).locator('.stream-status').textContent(), 'paused');

  await item(page, good).locator('button[data-action="resume"]').click();
  await page.waitForFunction((id) => document.querySelector(`li[data-stream-id="${id}"] .stream-result`)?.textContent.startsWith('Resumed'), good);
  assert.equal((await stream(good)).paused, false);
  assert.equal(await item(page, good).getAttribute('data-status'), 'active');
  await item(page, good).locator('button[data-action="pause"]').waitFor();

  // A test event to the receiver: delivered, with the receiver's status and the latency.
  const before = receiver.bodies.length;
  await item(page, good).locator('button[data-action="test"]').click();
  await page.waitForFunction((id) => document.querySelector(`li[data-stream-id="${id}"] .stream-result`)?.dataset.outcome === 'delivered', good);
  assert.match(await result.textContent(), /^Test event delivered \(HTTP 200\) in \d+ ms\.$/);
  assert.ok(receiver.bodies.length > before, 'the receiver got the test event');

  // And to nowhere: not delivered, with the error the service met.
  const badResult = item(page, bad).locator('.stream-result');
  await item(page, bad).locator('button[data-action="test"]').click();
  await page.waitForFunction((id) => document.querySelector(`li[data-stream-id="${id}"] .stream-result`)?.dataset.outcome === 'failed', bad);
  assert.match(await badResult.textContent(), /^Test event not delivered: .+\(after \d+ ms\)\.$/);
  assert.equal(await page.locator('img').count(), 0);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(problems, []);
  await close();
});

test('the Streams view fits a phone', async () => {
  const { page, problems, close } = await freshPage({ width: 390, height: 844 });
  await signIn(page, 'token', admin);
  await page.goto(`${gateway.url}/#view=streams`);
  await item(page, bad).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  assert.deepEqual(problems, []);
  await close();
});

test('a caller without audit:admin is told so, stays signed in, and still sees failing streams in the health line', async () => {
  const { page, problems, close } = await freshPage();
  // The development API key the other browser tests use: audit:read audit:write, no audit:admin.
  await signIn(page, 'api_key', gateway.key);
  await page.click('.tabs a[data-view="streams"]');
  await page.waitForFunction(() => document.querySelector('.streams-status')?.dataset.state === 'forbidden');
  assert.match(await page.textContent('.streams-status'), /need the audit:admin scope/);
  assert.equal(await page.locator('.stream-list li').count(), 0);
  // Still signed in: no sign-in screen, the tabs and the other views work.
  assert.equal(await page.locator('form.signin').count(), 0);
  assert.ok(await page.locator('.tabs').isVisible());
  assert.equal(await page.getAttribute('#health', 'data-failing'), '1');
  await page.click('.tabs a[data-view="logs"]');
  await page.waitForFunction(() => document.querySelectorAll('table.entries tbody tr').length >= 5);
  // The browser reports the refused request itself (a 403 resource); nothing else went wrong.
  assert.deepEqual(problems.filter((p) => !/Failed to load resource: the server responded with a status of 403/.test(p)), []);
  await close();

  // A token that reads nothing at all is refused outright: back to the sign-in screen.
  const context = await browser.newContext();
  await context.addInitScript((t) => sessionStorage.setItem('auditline.credential', JSON.stringify({ kind: 'token', value: t })), token('reports:read'));
  const other = await context.newPage();
  await other.goto(`${gateway.url}/#view=streams`);
  await other.waitForFunction(() => document.getElementById('signin-error')?.textContent.length > 0);
  await context.close();
});
