// Activity: entries over time by action and by entity type, as stacked SVG bars, from
// GET /audit/stats?bucket=hour|day (a handful of counter reads, whatever the volume).

import { el, svg, clear, absoluteTime } from '../dom.js';
import { ACTIONS, ENTITY_TYPES, actionClass, typeClass, icon } from '../kinds.js';

function chart(title, series, keys, field, classOf) {
  const width = 720;
  const height = 220;
  const pad = { left: 44, bottom: 28, top: 8 };
  const max = Math.max(1, ...series.map((p) => p.total));
  const step = (width - pad.left) / Math.max(1, series.length);
  const bar = Math.max(2, step * 0.8);
  const y = (n) => ((height - pad.bottom - pad.top) * n) / max;
  const bars = series.map((point, i) => {
    let base = height - pad.bottom;
    const parts = keys.map((k) => {
      const n = point[field][k] || 0;
      const h = y(n);
      base -= h;
      return n ? svg('rect', { x: pad.left + i * step, y: base, width: bar, height: h, class: classOf(k) },
        svg('title', {}, `${absoluteTime(point.start)} · ${k}: ${n}`)) : null;
    });
    return svg('g', {}, parts);
  });
  const labels = [0, Math.round(max / 2), max].map((n) => svg('text', { x: pad.left - 6, y: height - pad.bottom - y(n) + 4, class: 'axis', 'text-anchor': 'end' }, n));
  const first = series[0];
  const last = series[series.length - 1];
  const ticks = first ? [
    svg('text', { x: pad.left, y: height - 8, class: 'axis' }, absoluteTime(first.start).slice(0, 16)),
    svg('text', { x: width, y: height - 8, class: 'axis', 'text-anchor': 'end' }, absoluteTime(last.start).slice(0, 16)),
  ] : [];
  return el('figure', { class: 'chart' },
    el('figcaption', {}, title),
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
      svg('line', { x1: pad.left, x2: width, y1: height - pad.bottom, y2: height - pad.bottom, class: 'axis-line' }), labels, ticks, bars),
    el('ul', { class: 'legend' }, keys.map((k) => el('li', { class: classOf(k) }, el('span', { class: 'swatch' }), ` ${k}`))));
}

const WIDTH = { hour: 3600e3, day: 86400e3 };

/// The series with a point for every bucket from `from` (or the first point) to now, empty ones
/// included, so the time axis is even.
export function filled(series, bucket, from, now = Date.now()) {
  const width = WIDTH[bucket];
  const byStart = new Map(series.map((p) => [new Date(p.start).getTime(), p]));
  const first = from ? Math.floor(new Date(from).getTime() / width) * width : Math.min(...byStart.keys());
  const last = Math.max(Math.floor(now / width) * width, ...byStart.keys());
  const out = [];
  for (let t = first; t <= last && out.length < 400; t += width) {
    out.push(byStart.get(t) || { start: new Date(t).toISOString(), total: 0, by_action: {}, by_entity_type: {} });
  }
  return out;
}

export async function renderCharts(main, { api, params, range }) {
  const bucket = range === '7d' || range === 'all' || range === 'custom' ? 'day' : 'hour';
  const status = el('p', { role: 'status' }, 'Loading…');
  clear(main).append(el('section', { class: 'activity' }, el('h2', {}, 'Activity'), status));
  let stats;
  try {
    stats = await api.get('audit/stats', { ...params, bucket });
  } catch (e) {
    status.textContent = e.message;
    return;
  }
  const series = stats.series && stats.series.length ? filled(stats.series, bucket, params.start_date) : [];
  status.textContent = `${stats.total_entries} entries, per ${bucket}`;
  const byType = ENTITY_TYPES.map((t) => el('li', { class: typeClass(t) }, `${icon(t)} ${t}: `, el('strong', {}, stats.by_entity_type[t] ?? 0)));
  main.querySelector('.activity').append(
    series.length ? chart(`Entries per ${bucket} by action`, series, ACTIONS, 'by_action', (k) => `fill ${actionClass(k)}`) : el('p', {}, 'No entries in this range.'),
    series.length ? chart(`Entries per ${bucket} by entity type`, series, ENTITY_TYPES, 'by_entity_type', (k) => `fill ${typeClass(k)}`) : null,
    el('ul', { class: 'totals' }, byType));
}
