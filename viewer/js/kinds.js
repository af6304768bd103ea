// The seed's actions and entity types, each with its colour class and icon.

export const ACTIONS = ['CREATE', 'UPDATE', 'DELETE', 'LINK', 'UNLINK', 'VIEW'];
export const ENTITY_TYPES = [
  'PROJECT', 'ENTITY', 'RELATIONSHIP', 'FILE', 'REPORT', 'TEMPLATE', 'SCHEDULE',
  // The service's own records: erasures, retention changes, legal holds, log streams' changes.
  'AUDIT_ENTRY', 'AUDIT_SETTINGS', 'LEGAL_HOLD', 'LOG_STREAM',
];

const ICONS = {
  PROJECT: '▣', ENTITY: '◆', RELATIONSHIP: '⇄', FILE: '▤', REPORT: '▥', TEMPLATE: '❏', SCHEDULE: '◷',
  AUDIT_ENTRY: '⌫', AUDIT_SETTINGS: '⚙', LEGAL_HOLD: '⚖', LOG_STREAM: '⇶',
};

export function icon(type) {
  return ICONS[type] || '•';
}

/// A CSS class naming the kind's colour (`t-file`, `a-delete`); unknown values get none.
export function typeClass(type) {
  return ENTITY_TYPES.includes(type) ? `t-${type.toLowerCase()}` : '';
}

export function actionClass(action) {
  return ACTIONS.includes(action) ? `a-${action.toLowerCase()}` : '';
}
