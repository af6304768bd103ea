// The filter bar: action, entity type, user, project, entity, dates; the live toggle; export.

import { el } from '../dom.js';
import { ACTIONS, ENTITY_TYPES, icon } from '../kinds.js';

function select(id, label, values, current, all = 'All') {
  return [
    el('label', { for: id }, label),
    el('select', { id, name: id },
      el('option', { value: '' }, all),
      values.map((v) => el('option', { value: v, selected: v === current }, typeof v === 'string' && ENTITY_TYPES.includes(v) ? `${icon(v)} ${v}` : v))),
  ];
}

function text(id, label, current) {
  return [el('label', { for: id }, label), el('input', { id, name: id, type: 'search', value: current || '', spellcheck: 'false' })];
}

export function renderFilters(state, { onChange, onLive, live, onExport }) {
  const ranges = [['1h', 'Last hour'], ['24h', 'Last 24 h'], ['7d', 'Last 7 days'], ['all', 'All retained'], ['custom', 'Custom']];
  const range = el('select', { id: 'range', name: 'range' },
    ranges.map(([v, label]) => el('option', { value: v, selected: v === state.range }, label)));
  const custom = el('span', { class: 'custom', hidden: state.range !== 'custom' },
    el('label', { for: 'start' }, 'From'), el('input', { id: 'start', name: 'start', type: 'datetime-local', value: state.start || '' }),
    el('label', { for: 'end' }, 'To'), el('input', { id: 'end', name: 'end', type: 'datetime-local', value: state.end || '' }));
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filters' },
    select('action', 'Action', ACTIONS, state.action),
    select('entity_type', 'Entity type', ENTITY_TYPES, state.entity_type),
    text('user_id', 'User', state.user_id),
    text('project_id', 'Project', state.project_id),
    text('entity_id', 'Entity', state.entity_id),
    el('label', { for: 'range' }, 'When'), range, custom);

  const collect = () => {
    const next = { ...state };
    for (const name of ['action', 'entity_type', 'user_id', 'project_id', 'entity_id', 'range', 'start', 'end']) {
      const v = form.elements[name].value.trim();
      if (v) next[name] = v; else delete next[name];
    }
    if (next.range !== 'custom') { delete next.start; delete next.end; }
    return next;
  };
  let debounce = null;
  form.addEventListener('change', () => onChange(collect()));
  form.addEventListener('input', (event) => {
    if (event.target.type !== 'search') return;
    clearTimeout(debounce);
    debounce = setTimeout(() => onChange(collect()), 400);
  });
  form.addEventListener('submit', (event) => { event.preventDefault(); onChange(collect()); });

  const liveToggle = el('input', { id: 'live', type: 'checkbox', role: 'switch', checked: live, onchange: (e) => onLive(e.target.checked) });
  const format = el('select', { id: 'export-format', 'aria-label': 'Export format' },
    ['jsonl', 'csv', 'ocsf'].map((f) => el('option', { value: f }, f.toUpperCase())));
  const tools = el('div', { class: 'tools' },
    el('label', { class: 'switch', for: 'live' }, liveToggle, ' Live tail'),
    el('span', { id: 'live-status', class: 'status', role: 'status' }),
    format,
    el('button', { type: 'button', id: 'export', onclick: (e) => onExport(format.value, e.target) }, 'Export view'));
  return el('div', { class: 'filterbar' }, form, tools);
}
