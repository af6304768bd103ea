// The credential lives in this tab's sessionStorage only: never in a URL, a cookie or a log.

const KEY = 'auditline.credential';

export function load() {
  try {
    const c = JSON.parse(sessionStorage.getItem(KEY));
    return c && (c.kind === 'token' || c.kind === 'api_key') && typeof c.value === 'string' ? c : null;
  } catch {
    return null;
  }
}

export function save(credential) {
  sessionStorage.setItem(KEY, JSON.stringify(credential));
}

export function clear() {
  sessionStorage.removeItem(KEY);
}
