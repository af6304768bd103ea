// Wires the views to the state in the URL fragment, the API and the live tail.

import { createApi } from './api.js';
import * as session from './session.js';
import * as state from './state.js';
import { openLive } from './live.js';
import { verifyEntry } from './verify.js';
import * as pins from './pins.js';
import { el, clear, append, relativeTime, absoluteTime } from './dom.js';
import { renderSignIn } from './views/signin.js';
import { renderFilters } from './views/filters.js';
import { createTable } from './views/table.js';
import { renderDetail, showProof } from './views/detail.js';
import { renderCharts } from './views/charts.js';
import { renderEntity } from './views/entity.js';
import { renderKeys } from './views/keys.js';
import { renderStreams } from './views/streams.js';

// Rows per page: a screenful and some, so the first rows paint fast; more come as you scroll.
const PAGE = 50;
// How often the health line (failing log streams) is read again while signed in.
const HEALTH_MS = 30000;
// The stage's root: this module is at <root>/viewer/js/main.js.
const base = new URL('../../', import.meta.url);
const main = document.getElementById('main');
const detail = document.getElementById('detail');
const notice = document.getElementById('notice');
const tabs = document.querySelector('.tabs');
const signOut = document.getElementById('sign-out');
const keyWarning = document.getElementById('key-warning');
const health = document.getElementById('health');

let config = {};
let configReady = Promise.resolve();
let api = null;
let live = null;
let liveWanted = false;
// Bumped whenever the tail stops: a start still waiting for the configuration is then dropped.
let liveGeneration = 0;
let table = null;
let current = null;
let healthTimer = null;

function feedUrl(view) {
  const url = new URL(config.websocket_url || new URL('ws', base).href.replace(/^http/, 'ws'));
  // The feed filters what it can (project, entity type, action); the rest is filtered here.
  for (const name of ['project_id', 'entity_type', 'action']) if (view[name]) url.searchParams.set(name, view[name]);
  return url.href;
}

function show(message) {
  notice.textContent = message;
  notice.hidden = !message;
}

function closeDetail() {
  detail.hidden = true;
  clear(detail);
  if (current && current.focus) current.focus();
}

function openDetail(entry) {
  current = document.activeElement;
  renderDetail(detail, entry, {
    onClose: closeDetail,
    onEntity: (id) => { closeDetail(); goEntity(id); },
    onKeys: () => { closeDetail(); state.write({ view: 'keys' }); },
    // An erased field's record: an entry of the trail like any other, opened in its place.
    onRecord: async (id) => {
      try {
        openDetail(await api.get(`audit/logs/${encodeURIComponent(id)}`));
      } catch (e) {
        showProof(detail.querySelector('#verified'), { state: 'error', text: `the erasure record could not be read: ${e.message}` });
      }
    },
    verify: proofMark,
  });
}

async function proofMark(entry, mark) {
  mark.textContent = 'checking…';
  try {
    showProof(mark, await verifyEntry(api, entry));
    mark.title = 'Checked in this browser with the keys you pinned (Keys view); auditline verify checks a whole bundle.';
  } catch (e) {
    showProof(mark, { state: 'error', text: e.message });
  }
}

/// The page-wide warning: the service presents a key under a name that is not its own — another
/// key under a pinned key's id, or a key that does not hash to its id. Shown on every view.
function warnKeys(conflicts) {
  const another = conflicts.filter((c) => c.kind === 'another').map((c) => c.key_id);
  const misnamed = conflicts.filter((c) => c.kind === 'misnamed').map((c) => c.key_id);
  const lines = [];
  if (another.length) {
    lines.push(`WARNING: this service presents another key under the id of a key you pinned (${another.join(', ')}). `
      + 'Checkpoints signed with it do not verify here. Do not pin it: tell your operator, and compare fingerprints through another channel.');
  }
  if (misnamed.length) {
    lines.push(`WARNING: this service serves a key under an id that is not its fingerprint (${misnamed.join(', ')}): it is presenting a key under another key’s name.`);
  }
  append(clear(keyWarning), [lines.map((line) => el('p', {}, line)), lines.length ? el('a', { href: '#view=keys' }, 'See the keys') : null]);
  keyWarning.hidden = lines.length === 0;
}

/// The keys the service serves, checked against the pins (the warning follows).
async function servedKeys() {
  const answer = await api.get('audit/keys');
  const keys = Array.isArray(answer && answer.keys) ? answer.keys.filter((k) => k && typeof k === 'object') : [];
  const conflicts = await pins.conflicts(keys);
  warnKeys(conflicts);
  return { keys, conflicts };
}

/// The page-wide health line: log streams failing (`log_streams` of GET /audit/health, the
/// caller's tenant's), named with why and since when, and a degraded service. Shown on every view
/// so an operator sees them without opening the Streams view; hidden when all is well.
function showHealth(report) {
  const lines = [];
  if (report && report.status === 'degraded') {
    lines.push(el('p', { dataset: { health: 'degraded' } }, 'The service reports itself degraded: its storage is not answering in time.'));
  }
  const streams = report && report.log_streams && typeof report.log_streams === 'object' ? report.log_streams : null;
  const failing = streams && Array.isArray(streams.failing) ? streams.failing.filter((f) => f && typeof f === 'object') : [];
  if (failing.length) {
    const total = Number.isFinite(streams.streams) ? streams.streams : failing.length;
    lines.push(el('p', { dataset: { health: 'streams' } },
      el('strong', { class: 'health-count' }, `${failing.length} of ${total} log stream${total === 1 ? '' : 's'} failing: `),
      failing.flatMap((f, i) => [
        i ? '; ' : '',
        el('span', { class: 'health-stream', dataset: { streamId: String(f.id) } }, String(f.name ?? '')),
        ` (since ${typeof f.since === 'string' ? `${absoluteTime(f.since)}, ${relativeTime(f.since)}` : 'an unknown time'}: ${String(f.reason ?? '')})`,
      ]),
      '. ', el('a', { href: '#view=streams' }, 'See the streams')));
  }
  append(clear(health), lines);
  health.dataset.failing = String(failing.length);
  health.hidden = lines.length === 0;
}

function checkHealth() {
  if (!api) return;
  const asked = api;
  // A health check that fails says nothing new: the line stays as it was until the next one.
  api.health().then((report) => { if (asked === api) showHealth(report); }).catch(() => {});
}

/// A 401/403 from a route that needs more than audit:read (the Streams view's audit:admin): the
/// credential refused outright (expired, revoked) goes back to the sign-in screen as everywhere;
/// one that still reads merely lacks the scope, and the view says so. API Gateway's denial is the
/// same bare 403 in both cases, so the cheap read the sign-in uses tells them apart.
async function refusedOutright(error) {
  if (!error || !api) return false;
  if (error.status === 401) return refused(error);
  if (error.status !== 403) return false;
  try {
    await api.get('audit/stats', { start_date: new Date().toISOString() });
    return false;
  } catch (e) {
    return refused(e);
  }
}

function checkKeys() {
  servedKeys().catch((e) => { if (!refused(e)) show(`The service’s keys could not be checked: ${e.message}`); });
}

function goEntity(id) {
  state.write({ ...state.read(), view: 'entity', entity: id });
}

function stopLive() {
  liveGeneration += 1;
  if (live) live.stop();
  live = null;
}

async function startLive(view) {
  stopLive();
  const generation = liveGeneration;
  await configReady;
  if (generation !== liveGeneration || !liveWanted || !table) return;
  const status = document.getElementById('live-status');
  live = openLive({
    url: feedUrl(view),
    credential: session.load(),
    onStatus: (s) => { if (status) status.textContent = s === 'off' ? '' : s; document.body.dataset.live = s; },
    onEntry: async (entry) => {
      if (!table) return;
      // An entry too large for a frame arrives as a notice: fetch it whole.
      const whole = entry.notice ? await api.get(`audit/logs/${encodeURIComponent(entry.id)}`).catch(() => null) : entry;
      if (whole && state.matches(view, whole)) table.live(whole);
      // An erasure record: the entries it names lose those fields here too.
      const erased = whole && whole.entity_type === 'AUDIT_ENTRY' && whole.changes && whole.changes.erased;
      if (erased && Array.isArray(erased.entries) && Array.isArray(erased.fields)) {
        table.erase({ record: whole.id, entries: erased.entries, fields: erased.fields });
      }
    },
    onErasure: (notice) => { if (table) table.erase(notice); },
    // After every (re)connection, catch up over HTTP: whatever was written while the socket was
    // down is on the first page; rows already shown are skipped by id.
    onConnected: async () => {
      if (!table) return;
      const { path, params } = state.listQuery(view);
      try {
        const page = await api.get(path, { ...params, limit: 100 });
        table.catchUp(page.entries);
      } catch (e) {
        show(e.message);
      }
    },
  });
  window.auditlineLive = live;
}

async function exportView(view, format, button) {
  const { params } = state.listQuery(view);
  const query = { ...params, format, entity_id: view.entity_id, project_id: view.entity_id ? undefined : view.project_id };
  button.disabled = true;
  const parts = [];
  try {
    let token = null;
    do {
      const response = await api.raw('audit/export', { ...query, next_token: token });
      parts.push(await response.blob());
      token = response.headers.get('x-next-token');
      button.textContent = `Exporting… ${parts.length}`;
    } while (token);
    const link = el('a', { href: URL.createObjectURL(new Blob(parts)), download: `auditline-export.${format === 'csv' ? 'csv' : 'jsonl'}` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    show(e.message);
  } finally {
    button.disabled = false;
    button.textContent = 'Export view';
  }
}

function renderLogs(view) {
  // Dates fixed once for the view: a continuation token belongs to the query it came from.
  const { path, params } = state.listQuery(view);
  table = createTable({
    loadPage: async (token) => {
      try {
        return await api.get(path, { ...params, limit: PAGE, next_token: token || undefined });
      } catch (e) {
        if (refused(e)) return { entries: [], next_token: null };
        throw e;
      }
    },
    // A row whose fields were erased while shown is read again: its proof needs what the store kept.
    onOpen: async (entry) => {
      if (!entry.stale) return openDetail(entry);
      try {
        openDetail(await api.get(`audit/logs/${encodeURIComponent(entry.id)}`));
      } catch (e) {
        show(e.message);
      }
    },
    onEntity: goEntity,
  });
  const filters = renderFilters(view, {
    onChange: (next) => state.write(next),
    live: liveWanted,
    onLive: (on) => { liveWanted = on; if (on) startLive(view); else stopLive(); },
    onExport: (format, button) => exportView(view, format, button),
  });
  clear(main).append(filters, table.root);
  table.start();
  if (liveWanted) startLive(view);
}

function render() {
  if (!api) return;
  const view = state.read();
  stopLive();
  if (table) table.reset();
  table = null;
  show('');
  for (const a of tabs.querySelectorAll('a')) a.setAttribute('aria-current', a.dataset.view === view.view ? 'page' : 'false');
  if (view.view === 'activity') renderCharts(main, { api, params: state.dates(view), range: view.range });
  else if (view.view === 'entity') renderEntity(main, { api, id: view.entity, onEntity: goEntity, onOpen: openDetail });
  else if (view.view === 'keys') renderKeys(main, { loadKeys: servedKeys });
  else if (view.view === 'streams') renderStreams(main, { api, refused: refusedOutright, onChanged: checkHealth });
  else renderLogs(view);
  checkHealth();
}

function signedIn(credential) {
  session.save(credential);
  api = createApi(base, credential);
  tabs.hidden = false;
  signOut.hidden = false;
  document.getElementById('who').textContent = credential.kind === 'token' ? 'signed in with a token' : 'signed in with an API key';
  render();
  checkKeys();
  clearInterval(healthTimer);
  healthTimer = setInterval(() => { if (!document.hidden) checkHealth(); }, HEALTH_MS);
}

function signIn(message) {
  api = null;
  stopLive();
  tabs.hidden = true;
  signOut.hidden = true;
  keyWarning.hidden = true;
  clearInterval(healthTimer);
  healthTimer = null;
  health.hidden = true;
  clear(health);
  document.getElementById('who').textContent = '';
  renderSignIn(main, {
    config,
    message,
    check: (credential) => createApi(base, credential).get('audit/stats', { start_date: new Date().toISOString() }),
    onSignedIn: signedIn,
  });
}

/// A credential the API refuses mid-session (expired, revoked): back to the sign-in screen, saying so.
function refused(error) {
  if (error && (error.status === 401 || error.status === 403) && api) {
    session.clear();
    signIn(error.message);
    return true;
  }
  return false;
}

async function boot() {
  signOut.addEventListener('click', () => { session.clear(); signIn(); });
  window.addEventListener('hashchange', render);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !detail.hidden) closeDetail(); });
  // The configuration matters for signing in and the live tail, not for the first rows: a saved
  // credential goes straight to the view (a refusal there brings the sign-in screen back).
  configReady = fetch(new URL('viewer/config.json', base), { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}))
    .then((c) => { config = c; });
  const saved = session.load();
  if (saved) signedIn(saved);
  await configReady;
  if (!saved) signIn();
}

boot();
