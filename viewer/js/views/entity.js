// One entity: its timeline, and its relationship graph from its LINK and UNLINK entries. A LINK
// names the other end in metadata.target_id (and metadata.target_type); a link counts until an
// UNLINK of the same target comes after it.

import { el, svg, clear, relativeTime, absoluteTime } from '../dom.js';
import { icon, typeClass, actionClass } from '../kinds.js';

/// The entity's current links from its entries (any order): target id → type.
export function currentLinks(entries) {
  const links = new Map();
  const ordered = [...entries].sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.id < b.id ? -1 : 1));
  for (const e of ordered) {
    const target = e.metadata && typeof e.metadata.target_id === 'string' ? e.metadata.target_id : null;
    if (!target) continue;
    if (e.action === 'LINK') links.set(target, typeof e.metadata.target_type === 'string' ? e.metadata.target_type : '');
    if (e.action === 'UNLINK') links.delete(target);
  }
  return links;
}

function graph(id, type, links, onEntity) {
  const size = 360;
  const c = size / 2;
  const r = size / 2 - 60;
  const targets = [...links.entries()];
  const node = (x, y, label, kind, current, onclick) => svg('g', {
    class: `node ${typeClass(kind)}${current ? ' current' : ''}`,
    transform: `translate(${x},${y})`,
    tabindex: current ? -1 : 0,
    role: current ? 'img' : 'button',
    'aria-label': current ? `${label} (this entity)` : `Go to ${label}`,
    dataset: { entity: label },
    onclick,
    onkeydown: (e) => { if (onclick && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); onclick(); } },
  }, svg('circle', { r: current ? 26 : 20, class: 'fill' }), svg('text', { class: 'icon', 'text-anchor': 'middle', y: 5 }, icon(kind)),
  svg('text', { class: 'label', 'text-anchor': 'middle', y: current ? 42 : 36 }, label.length > 18 ? `${label.slice(0, 17)}…` : label));
  const placed = targets.map(([t, kind], i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, targets.length) - Math.PI / 2;
    return { t, kind, x: c + r * Math.cos(angle), y: c + r * Math.sin(angle) };
  });
  return svg('svg', { viewBox: `0 0 ${size} ${size}`, class: 'graph', role: 'group', 'aria-label': `Links of ${id}` },
    placed.map((p) => svg('line', { x1: c, y1: c, x2: p.x, y2: p.y, class: 'edge' })),
    node(c, c, id, type, true, null),
    placed.map((p) => node(p.x, p.y, p.t, p.kind, false, () => onEntity(p.t))));
}

export async function renderEntity(main, { api, id, onEntity, onOpen }) {
  const form = el('form', { class: 'entity-search', role: 'search', onsubmit: (e) => { e.preventDefault(); onEntity(e.target.elements.entity.value.trim()); } },
    el('label', { for: 'entity-input' }, 'Entity id'),
    el('input', { id: 'entity-input', name: 'entity', type: 'search', value: id || '', spellcheck: 'false' }),
    el('button', { type: 'submit' }, 'Show'));
  const section = el('section', { class: 'entity-view' }, form);
  clear(main).append(section);
  if (!id) return;
  const status = el('p', { role: 'status' }, 'Loading…');
  section.append(status);
  const entries = [];
  try {
    let token = null;
    do {
      const page = await api.get(`audit/logs/entity/${encodeURIComponent(id)}`, { limit: 1000, next_token: token });
      entries.push(...page.entries);
      token = page.next_token;
    } while (token && entries.length < 5000);
  } catch (e) {
    status.textContent = e.message;
    return;
  }
  status.textContent = `${entries.length} entries`;
  const type = entries[0] ? entries[0].entity_type : '';
  const links = currentLinks(entries);
  section.append(
    el('h2', {}, el('span', { class: `kind ${typeClass(type)}` }, `${icon(type)} `), id),
    el('div', { class: 'entity-grid' },
      el('figure', { class: 'graph-box' }, el('figcaption', {}, `Current links (${links.size})`), graph(id, type, links, onEntity)),
      el('ol', { class: 'timeline', 'aria-label': 'Timeline' }, entries.map((e) => el('li', {},
        el('button', { type: 'button', class: 'link', onclick: () => onOpen(e) },
          el('span', { class: `badge ${actionClass(e.action)}` }, e.action), ' ',
          el('time', { datetime: e.timestamp, title: absoluteTime(e.timestamp) }, relativeTime(e.timestamp)),
          e.user_id ? ` by ${e.user_id}` : '',
          e.metadata && e.metadata.target_id ? ` → ${e.metadata.target_id}` : ''))))));
}
