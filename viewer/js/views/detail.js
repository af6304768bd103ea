// The detail panel: every field, the changes as a before/after diff, metadata as formatted JSON.

import { el, clear, absoluteTime, copy } from '../dom.js';
import { icon, typeClass, actionClass } from '../kinds.js';

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/// Rows of a diff between `before` and `after`: each key once, marked added, removed, changed or same.
export function diffRows(before, after) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  return keys.map((key) => {
    const had = before && Object.hasOwn(before, key);
    const has = after && Object.hasOwn(after, key);
    const a = had ? JSON.stringify(before[key]) : '';
    const b = has ? JSON.stringify(after[key]) : '';
    const kind = !had ? 'added' : !has ? 'removed' : a === b ? 'same' : 'changed';
    return { key, kind, before: a, after: b };
  });
}

function changesView(changes) {
  if (changes === null || changes === undefined) return el('p', { class: 'muted' }, 'No changes recorded.');
  if (isObject(changes) && (isObject(changes.before) || isObject(changes.after))) {
    const rows = diffRows(changes.before, changes.after);
    return el('table', { class: 'diff', 'aria-label': 'Changes' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Field'), el('th', { scope: 'col' }, 'Before'), el('th', { scope: 'col' }, 'After'))),
      el('tbody', {}, rows.map((r) => el('tr', { class: `diff-${r.kind}`, dataset: { kind: r.kind } },
        el('th', { scope: 'row' }, r.key, r.kind === 'same' ? '' : el('span', { class: 'diff-tag' }, ` ${r.kind}`)),
        el('td', {}, el('code', {}, r.before)),
        el('td', {}, el('code', {}, r.after))))));
  }
  return el('pre', { class: 'json' }, JSON.stringify(changes, null, 2));
}

function copyButton(label, text) {
  return el('button', { type: 'button', class: 'copy', dataset: { label }, onclick: (e) => copy(text(), e.target) }, label);
}

/// Shows a verification result ({ state, text }) in the detail's mark; an entry signed by a key
/// nobody pinned gets a way to the keys view, where the key can be checked and pinned.
export function showProof(mark, { state, text }) {
  mark.textContent = text;
  mark.dataset.state = state;
  const guide = mark.parentElement && mark.parentElement.querySelector('.pin-guide');
  if (guide) guide.hidden = state !== 'unpinned';
}

/// An erased field's place: "erased", and a way to the erasure record that names it.
function erasedMark(record, onRecord) {
  return el('span', { class: 'erased' }, 'erased · ',
    el('button', { type: 'button', class: 'link', title: `Erasure record ${record}`, onclick: () => onRecord(record) }, 'see its record'));
}

export function renderDetail(panel, entry, { onClose, onEntity, onKeys, onRecord, verify }) {
  const erasedBy = (entry.integrity && entry.integrity.erased_by) || {};
  const shown = (name, value) => (Object.hasOwn(erasedBy, name) ? erasedMark(erasedBy[name], onRecord) : value);
  const field = (name, value) => [el('dt', {}, name), el('dd', {}, value === null || value === undefined || value === '' ? '—' : value)];
  const mark = el('span', { class: 'verified', id: 'verified', role: 'status' });
  // The panel closes on the way to the keys view (a link removed while clicked would not navigate).
  const guide = el('a', { href: '#view=keys', class: 'pin-guide', id: 'pin-guide', hidden: true, onclick: (e) => { e.preventDefault(); onKeys(); } },
    'Check the service’s key and pin it in the Keys view');
  const integrity = el('span', { class: 'integrity' }, mark, ' ', guide);
  clear(panel).append(
    el('div', { class: 'detail-head' },
      el('h2', { id: 'detail-title' }, el('span', { class: `badge ${actionClass(entry.action)}` }, entry.action), ' ',
        el('span', { class: `kind ${typeClass(entry.entity_type)}` }, `${icon(entry.entity_type)} ${entry.entity_type}`)),
      el('button', { type: 'button', class: 'close', 'aria-label': 'Close detail', onclick: onClose }, '×')),
    el('dl', { class: 'fields' },
      field('Id', entry.id),
      field('When', absoluteTime(entry.timestamp)),
      field('Entity', el('button', { type: 'button', class: 'link', onclick: () => onEntity(entry.entity_id) }, entry.entity_id)),
      field('User', shown('user_id', entry.user_id)),
      field('Project', entry.project_id),
      field('From', shown('ip_address', entry.ip_address)),
      field('Tenant', entry.tenant_id),
      field('Integrity', integrity)),
    el('div', { class: 'row' }, copyButton('Copy id', () => entry.id), copyButton('Copy JSON', () => JSON.stringify(entry, null, 2))),
    el('h3', {}, 'Changes'), Object.hasOwn(erasedBy, 'changes') ? el('p', {}, erasedMark(erasedBy.changes, onRecord)) : changesView(entry.changes),
    el('h3', {}, 'Metadata'),
    Object.hasOwn(erasedBy, 'metadata') ? el('p', {}, erasedMark(erasedBy.metadata, onRecord))
      : entry.metadata ? el('pre', { class: 'json' }, JSON.stringify(entry.metadata, null, 2)) : el('p', { class: 'muted' }, 'None.'));
  panel.hidden = false;
  panel.setAttribute('aria-labelledby', 'detail-title');
  panel.querySelector('.close').focus();
  if (verify) verify(entry, mark);
}
