// The view lives in the URL fragment (#view=logs&action=DELETE&range=24h…), so a view can be
// shared and reloaded. The fragment never holds a credential.

const FIELDS = ['view', 'action', 'entity_type', 'user_id', 'project_id', 'entity_id', 'range', 'start', 'end', 'entity'];
export const RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

export function read() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const state = {};
  for (const f of FIELDS) {
    const v = params.get(f);
    if (v) state[f] = v;
  }
  state.view = ['logs', 'activity', 'entity', 'keys', 'streams'].includes(state.view) ? state.view : 'logs';
  state.range = state.range || '24h';
  return state;
}

export function write(state) {
  const params = new URLSearchParams();
  for (const f of FIELDS) if (state[f]) params.set(f, state[f]);
  const hash = `#${params}`;
  if (location.hash !== hash) location.hash = hash;
}

/// The dates of the state's range, as the API takes them.
export function dates(state, now = Date.now()) {
  if (state.range === 'custom') {
    const iso = (v) => (v ? new Date(v).toISOString() : undefined);
    return { start_date: iso(state.start), end_date: iso(state.end) };
  }
  const span = RANGES[state.range];
  return span ? { start_date: new Date(now - span).toISOString() } : {};
}

/// The list route and parameters for the state's filters.
export function listQuery(state) {
  const params = { action: state.action, entity_type: state.entity_type, user_id: state.user_id, ...dates(state) };
  if (state.entity_id) return { path: `audit/logs/entity/${encodeURIComponent(state.entity_id)}`, params };
  if (state.project_id) return { path: `audit/logs/project/${encodeURIComponent(state.project_id)}`, params };
  return { path: 'audit/logs', params };
}

/// Whether a live entry belongs in the state's view (the filters the feed cannot apply itself).
export function matches(state, entry) {
  const { start_date: start, end_date: end } = dates(state);
  return (!state.action || entry.action === state.action)
    && (!state.entity_type || entry.entity_type === state.entity_type)
    && (!state.user_id || entry.user_id === state.user_id)
    && (!state.project_id || entry.project_id === state.project_id)
    && (!state.entity_id || entry.entity_id === state.entity_id)
    && (!start || entry.timestamp >= start)
    && (!end || entry.timestamp <= end);
}
