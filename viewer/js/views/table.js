// The entries table: newest first, more pages as the end scrolls into view, live rows on top.

import { el, clear, relativeTime, absoluteTime } from '../dom.js';
import { icon, typeClass, actionClass } from '../kinds.js';

export function createTable({ loadPage, onOpen, onEntity }) {
  const body = el('tbody');
  const sentinel = el('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const status = el('p', { class: 'table-status', role: 'status' });
  const pending = el('button', { type: 'button', class: 'pending', hidden: true });
  const table = el('table', { class: 'entries', 'aria-label': 'Audit entries' },
    el('thead', {}, el('tr', {},
      ['When', 'Action', 'Type', 'Entity', 'User', 'Project', 'From'].map((h) => el('th', { scope: 'col' }, h)))),
    body);
  const root = el('section', { class: 'table-view' }, pending, el('div', { class: 'scroll' }, table), sentinel, status);
  const seen = new Set();
  // The entry behind each row, by id: an erasure while it is shown replaces it.
  const shown = new Map();
  let token = null;
  let loading = false;
  let done = false;
  let waiting = [];
  let paused = false;

  function row(entry, fresh) {
    const tr = el('tr', {
      tabindex: 0,
      class: fresh ? 'fresh' : '',
      dataset: { id: entry.id },
      onclick: () => onOpen(shown.get(entry.id) || entry),
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onOpen(shown.get(entry.id) || entry); } },
    },
    el('td', { title: absoluteTime(entry.timestamp) }, el('time', { datetime: entry.timestamp }, relativeTime(entry.timestamp))),
    el('td', {}, el('span', { class: `badge ${actionClass(entry.action)}` }, entry.action)),
    el('td', {}, el('span', { class: `kind ${typeClass(entry.entity_type)}`, title: entry.entity_type },
      el('span', { 'aria-hidden': 'true' }, icon(entry.entity_type)), el('span', { class: 'type-name' }, ` ${entry.entity_type}`))),
    el('td', {}, el('button', {
      type: 'button', class: 'link',
      onclick: (e) => { e.stopPropagation(); onEntity(entry.entity_id); },
    }, entry.entity_id)),
    el('td', { dataset: { field: 'user_id' } }, cell(entry, 'user_id')),
    el('td', {}, entry.project_id || '—'),
    el('td', { dataset: { field: 'ip_address' } }, cell(entry, 'ip_address')));
    shown.set(entry.id, entry);
    return tr;
  }

  function cell(entry, field) {
    const record = entry.integrity && entry.integrity.erased_by && entry.integrity.erased_by[field];
    return record ? el('span', { class: 'erased', title: `erased by ${record}` }, 'erased') : (entry[field] || '—');
  }

  /// The entry with `fields` erased by `record`, as far as the page can tell (its proof is read
  /// again when opened).
  function without(entry, fields, record) {
    const next = { ...entry, stale: true, integrity: { ...entry.integrity, erased_by: { ...(entry.integrity && entry.integrity.erased_by) } } };
    for (const field of fields) {
      if (!Object.hasOwn(next, field)) continue;
      next[field] = null;
      next.integrity.erased_by[field] = record;
    }
    return next;
  }

  function add(entries, { top = false, fresh = false } = {}) {
    const rows = [];
    for (const entry of entries) {
      if (seen.has(entry.id)) continue;
      seen.add(entry.id);
      rows.push(row(entry, fresh));
    }
    if (top) body.prepend(...rows); else body.append(...rows);
    if (!body.children.length && done) status.textContent = 'No entries match this view.';
    else if (body.children.length) status.textContent = done ? `${body.children.length} entries` : '';
    return rows.length;
  }

  async function more() {
    if (loading || done) return;
    loading = true;
    status.textContent = 'Loading…';
    try {
      const page = await loadPage(token);
      token = page.next_token;
      done = !token;
      add(page.entries);
    } catch (e) {
      status.textContent = e.message;
      done = true;
    } finally {
      loading = false;
    }
    // More pages come when the sentinel scrolls into view. Observing it again gets a fresh report
    // after the next layout (it may still be in view), instead of measuring layout here, which
    // would force it before the first paint.
    if (!done) {
      observer.unobserve(sentinel);
      observer.observe(sentinel);
    }
  }

  const observer = new IntersectionObserver((items) => { if (items.some((i) => i.isIntersecting)) more(); }, { rootMargin: '200px' });
  observer.observe(sentinel);

  function showPending() {
    pending.hidden = waiting.length === 0;
    pending.textContent = `${waiting.length} new — show`;
  }
  pending.addEventListener('click', () => { paused = false; flush(); });

  function flush() {
    add(waiting.reverse(), { top: true, fresh: true });
    waiting = [];
    showPending();
  }

  return {
    root,
    start: more,
    /// A live entry (newest first); held back while the user has scrolled away from the top.
    live(entry) {
      if (seen.has(entry.id) || waiting.some((w) => w.id === entry.id)) return;
      paused = root.querySelector('.scroll').scrollTop > 40 || window.scrollY > 80;
      waiting.push(entry);
      if (paused) showPending(); else flush();
    },
    /// Entries fetched to catch up after a reconnection: only those not shown yet are added.
    catchUp(entries) {
      const missing = entries.filter((e) => !seen.has(e.id));
      for (const e of missing.reverse()) this.live(e);
    },
    /// An erasure: the rows (and held-back entries) it names lose those fields.
    erase({ record, entries, fields }) {
      for (const id of entries) {
        waiting = waiting.map((w) => (w.id === id ? without(w, fields, record) : w));
        const entry = shown.get(id);
        if (!entry) continue;
        const next = without(entry, fields, record);
        shown.set(id, next);
        const tr = [...body.children].find((r) => r.dataset.id === id);
        for (const td of tr ? tr.querySelectorAll('td[data-field]') : []) {
          if (fields.includes(td.dataset.field)) clear(td).append(cell(next, td.dataset.field));
        }
      }
    },
    reset() {
      clear(body);
      seen.clear();
      shown.clear();
      observer.disconnect();
    },
  };
}
