// Log streams to SIEMs (GET /audit/streams, audit:admin): each stream's destination, format and
// status — a failing one marked, with why and since when — and its delivery figures, refreshed
// while the view is open; per stream, Pause/Resume (PATCH) and "Send test event" (POST …/test),
// each showing what the service answered. A caller without audit:admin is told so.

import { el, clear, relativeTime, absoluteTime } from '../dom.js';

const KINDS = { webhook: 'Webhook', splunk_hec: 'Splunk HEC', datadog: 'Datadog', eventbridge: 'EventBridge' };
const FORMATS = { entry: 'entry (the API’s JSON)', ocsf: 'OCSF API Activity' };
// Figures move while deliveries go on: the list is read again this often while the view is shown.
const REFRESH_MS = 5000;

export const NEED_ADMIN = 'Log streams need the audit:admin scope, which the credential you signed in with does not have. '
  + 'Sign in with an administrator’s token or key to see and manage this tenant’s streams.';

const text = (v) => (v === undefined || v === null ? '' : String(v));
const isTime = (v) => typeof v === 'string' && v.length > 0;

/// "2026-12-06 16:29:58.635 UTC (3 min ago)", or `none`.
function when(iso, none = 'never') {
  return isTime(iso) ? `${absoluteTime(iso)} (${relativeTime(iso)})` : none;
}

function ms(v) {
  return Number.isFinite(v) ? `${v} ms` : '—';
}

function count(v) {
  return Number.isFinite(v) ? String(v) : '—';
}

/// Where deliveries go: the URL of the HTTP kinds, the bus ARN of EventBridge and the role put as.
function destination(target) {
  if (!target || typeof target !== 'object') return '';
  if (target.type !== 'eventbridge') return text(target.url);
  const role = text(target.role_arn);
  return role ? `${text(target.event_bus_arn)} as ${role}` : text(target.event_bus_arn);
}

function filterText(filter) {
  const parts = [];
  const list = (v) => (Array.isArray(v) ? v.map(text) : []);
  if (list(filter && filter.actions).length) parts.push(`actions ${list(filter.actions).join(', ')}`);
  if (list(filter && filter.entity_types).length) parts.push(`entity types ${list(filter.entity_types).join(', ')}`);
  if (list(filter && filter.project_ids).length) parts.push(`projects ${list(filter.project_ids).join(', ')}`);
  return parts.length ? parts.join('; ') : 'every entry';
}

function field(name, value, key) {
  return [el('dt', {}, name), el('dd', { dataset: key ? { field: key } : undefined }, value)];
}

/// A stream's settings, status and figures (everything but its buttons and their outcome).
function details(stream) {
  const figures = stream.figures && typeof stream.figures === 'object' ? stream.figures : {};
  const lag = figures.lag_ms && typeof figures.lag_ms === 'object' ? figures.lag_ms : {};
  const lastError = figures.last_error && typeof figures.last_error === 'object' ? figures.last_error : null;
  const failing = stream.status === 'failing' && stream.failing && typeof stream.failing === 'object' ? stream.failing : null;
  const status = text(stream.status) || 'unknown';
  return [
    el('div', { class: 'stream-head' },
      el('h3', { class: 'stream-name' }, text(stream.name)),
      el('span', { class: 'stream-status', dataset: { status } }, status)),
    failing
      ? el('p', { class: 'stream-failing' },
        el('strong', {}, 'Failing'), ` since ${when(failing.since, 'an unknown time')}: `,
        el('span', { class: 'stream-reason' }, text(failing.reason)),
        '.')
      : null,
    el('dl', { class: 'fields stream-fields' },
      field('Type', KINDS[stream.target && stream.target.type] || text(stream.target && stream.target.type), 'type'),
      field(stream.target && stream.target.type === 'eventbridge' ? 'Event bus' : 'Destination', destination(stream.target), 'destination'),
      field('Format', FORMATS[stream.format] || text(stream.format), 'format'),
      field('Sends', filterText(stream.filter), 'filter'),
      field('Delivered', count(figures.delivered), 'delivered'),
      field('Failed', count(figures.failed), 'failed'),
      field('Retried', count(figures.retried), 'retried'),
      field('Lag p50 / p99', `${ms(lag.p50)} / ${ms(lag.p99)}`, 'lag'),
      field('Last delivery', when(figures.last_delivered_at), 'last_delivered_at'),
      field('Last error', lastError ? `${when(lastError.at, 'at an unknown time')}: ${text(lastError.message)}` : 'none', 'last_error'),
      isTime(stream.previous_secret_retires_at)
        ? field('Previous secret', `still signs until ${when(stream.previous_secret_retires_at)}`, 'previous_secret')
        : null,
      field('Created', when(stream.created_at), 'created_at')),
  ];
}

/// What a test event came to, in a sentence.
export function testOutcome(result) {
  const status = Number.isFinite(result && result.status) ? `HTTP ${result.status}` : null;
  const latency = Number.isFinite(result && result.latency_ms) ? `${result.latency_ms} ms` : null;
  if (result && result.delivered === true) {
    return `Test event delivered${status ? ` (${status})` : ''}${latency ? ` in ${latency}` : ''}.`;
  }
  const why = [text(result && result.error) || 'no reason given', status].filter(Boolean).join(', ');
  return `Test event not delivered: ${why}${latency ? ` (after ${latency})` : ''}.`;
}

/// Renders the view. `refused(error)` answers whether a 401/403 means the credential itself was
/// refused (then the page has gone back to the sign-in screen); `onChanged` follows a pause or a
/// resume (the page-wide health line is read again).
export async function renderStreams(main, { api, refused, onChanged }) {
  const status = el('p', { role: 'status', class: 'streams-status' }, 'Loading the log streams…');
  const refresh = el('button', { type: 'button', id: 'streams-refresh', onclick: () => load() }, 'Refresh');
  const list = el('ul', { class: 'stream-list' });
  const section = el('section', { class: 'streams-view', 'aria-labelledby': 'streams-title' },
    el('div', { class: 'streams-head' }, el('h2', { id: 'streams-title' }, 'Log streams'), refresh),
    el('p', { class: 'muted' }, 'Every new entry is also delivered to these destinations (webhooks, Splunk, Datadog, EventBridge). Figures count entries since each stream was created.'),
    status,
    list);
  clear(main).append(section);

  // Stream id → its item, kept across refreshes so a shown outcome stays where it was.
  const items = new Map();
  let loading = null;
  let timer = null;

  function stop() {
    clearInterval(timer);
    timer = null;
  }

  /// A failure of an action or a read: the credential refused outright, the scope missing, or the
  /// service's own message.
  async function explain(e, what) {
    if (e && (e.status === 401 || e.status === 403) && await refused(e)) {
      stop();
      return null;
    }
    if (e && e.status === 403) return NEED_ADMIN;
    return `${what}: ${e && e.message ? e.message : String(e)}`;
  }

  function item(stream) {
    const body = el('div', { class: 'stream-body' });
    const result = el('p', { class: 'stream-result', role: 'status' });
    const pause = el('button', { type: 'button' });
    const test = el('button', { type: 'button', dataset: { action: 'test' } }, 'Send test event');
    const node = el('li', { class: 'stream' }, body, el('div', { class: 'row stream-actions' }, pause, test), result);
    const entry = { node, stream, show: null };

    entry.show = (s) => {
      entry.stream = s;
      node.dataset.streamId = text(s.id);
      node.dataset.status = text(s.status);
      node.classList.toggle('stream-is-failing', s.status === 'failing');
      clear(body).append(...details(s).filter(Boolean));
      pause.dataset.action = s.paused ? 'resume' : 'pause';
      pause.textContent = s.paused ? 'Resume' : 'Pause';
    };

    pause.addEventListener('click', async () => {
      const resume = entry.stream.paused === true;
      pause.disabled = true;
      result.dataset.outcome = 'pending';
      result.textContent = resume ? 'Resuming…' : 'Pausing…';
      try {
        const answer = await api.patch(`audit/streams/${encodeURIComponent(entry.stream.id)}`, { paused: !resume });
        if (answer && answer.stream && typeof answer.stream === 'object') entry.show(answer.stream);
        result.dataset.outcome = 'done';
        result.textContent = resume
          ? 'Resumed: new entries are sent to this stream again.'
          : 'Paused: new entries are not sent to this stream until it is resumed.';
        if (onChanged) onChanged();
      } catch (e) {
        const message = await explain(e, resume ? 'Could not resume' : 'Could not pause');
        if (message === null) return;
        result.dataset.outcome = 'error';
        result.textContent = message;
      } finally {
        pause.disabled = false;
      }
    });

    test.addEventListener('click', async () => {
      test.disabled = true;
      result.dataset.outcome = 'pending';
      result.textContent = 'Sending a test event…';
      try {
        const answer = await api.post(`audit/streams/${encodeURIComponent(entry.stream.id)}/test`);
        result.dataset.outcome = answer && answer.delivered === true ? 'delivered' : 'failed';
        result.textContent = testOutcome(answer);
      } catch (e) {
        const message = await explain(e, 'The test event could not be sent');
        if (message === null) return;
        result.dataset.outcome = 'error';
        result.textContent = message;
      } finally {
        test.disabled = false;
      }
    });

    entry.show(stream);
    return entry;
  }

  async function read() {
    let answer;
    try {
      answer = await api.get('audit/streams');
    } catch (e) {
      const message = await explain(e, 'The log streams could not be read');
      if (message === null) return;
      status.textContent = message;
      status.dataset.state = e && e.status === 403 ? 'forbidden' : 'error';
      // Without the scope there is nothing to refresh; after another failure, the next tick tries again.
      if (e && e.status === 403) {
        stop();
        refresh.hidden = true;
        items.clear();
        clear(list);
      }
      return;
    }
    const streams = Array.isArray(answer && answer.streams)
      ? answer.streams.filter((s) => s && typeof s === 'object' && typeof s.id === 'string')
      : [];
    const failing = streams.filter((s) => s.status === 'failing').length;
    status.dataset.state = 'ok';
    status.textContent = streams.length
      ? `${streams.length} stream${streams.length === 1 ? '' : 's'}${failing ? `, ${failing} failing` : ''}.`
      : 'No log streams yet: an administrator creates them with POST /audit/streams.';
    const seen = new Set();
    const nodes = streams.map((s) => {
      seen.add(s.id);
      const known = items.get(s.id);
      if (known) {
        known.show(s);
        return known.node;
      }
      const made = item(s);
      items.set(s.id, made);
      return made.node;
    });
    for (const id of [...items.keys()]) if (!seen.has(id)) items.delete(id);
    list.replaceChildren(...nodes);
  }

  function load() {
    if (!loading) loading = read().finally(() => { loading = null; });
    return loading;
  }

  await load();
  if (status.dataset.state === 'forbidden' || !section.isConnected) return;
  timer = setInterval(() => {
    // Another view (or the sign-in screen) took the page: stop reading.
    if (!section.isConnected) return stop();
    if (!document.hidden) load();
  }, REFRESH_MS);
}
