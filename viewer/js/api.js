// Every call to the HTTP API goes through here: it adds the credential, and turns every failure —
// the API's error envelope, API Gateway's bare denials, a network error — into one ApiError.

export class ApiError extends Error {
  constructor(status, code, message, parameter = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.parameter = parameter;
    this.retryAfter = retryAfter;
  }
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const retryAfter = response.headers.get('retry-after');
  if (body && body.error && typeof body.error.message === 'string') {
    const e = body.error;
    return new ApiError(response.status, e.code || 'error', e.message, e.parameter || null, retryAfter);
  }
  // API Gateway's own answers: a denial by the authorizer says only {"message": "Forbidden"}.
  if (response.status === 401 || response.status === 403) {
    return new ApiError(response.status, 'refused',
      'The credential was refused: it is invalid, expired, revoked, or lacks audit:read.');
  }
  return new ApiError(response.status, 'error', `The service answered ${response.status}.`, null, retryAfter);
}

export function createApi(base, credential) {
  const headers = () => {
    const h = {};
    if (credential && credential.kind === 'token') h.authorization = `Bearer ${credential.value}`;
    if (credential && credential.kind === 'api_key') h['x-api-key'] = credential.value;
    return h;
  };
  const url = (path, params) => {
    const u = new URL(path.replace(/^\//, ''), base);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
    }
    return u;
  };
  // `answered`: statuses other than 2xx whose body is an answer, not a failure (health's 503).
  async function send(method, path, params, body, answered = []) {
    let response;
    try {
      response = await fetch(url(path, params), {
        method,
        headers: body === undefined ? headers() : { ...headers(), 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'network', 'The service cannot be reached. Check the connection and try again.');
    }
    if (!response.ok && !answered.includes(response.status)) throw await failure(response);
    return response;
  }
  const get = async (path, params) => (await send('GET', path, params)).json();
  // The signed-in caller's tenant, asked once per session (an api is made per sign-in): what a
  // proof must be of. A failed ask is asked again next time.
  let tenant = null;
  let served = null;
  const askTenant = async () => {
    const page = await get('audit/checkpoints', { limit: 1 });
    if (!page || typeof page.tenant !== 'string' || !page.tenant) {
      throw new ApiError(0, 'error', 'The service did not say which tenant you are signed in as.');
    }
    return page.tenant;
  };
  return {
    get,
    post: async (path, body) => (await send('POST', path, undefined, body)).json(),
    patch: async (path, body) => (await send('PATCH', path, undefined, body)).json(),
    // The service's health: 200 when healthy, 503 when degraded, the same report either way
    // (with the caller's tenant's details, log streams included, for a credential that reads).
    health: async () => (await send('GET', 'audit/health', undefined, undefined, [503])).json(),
    raw: (path, params) => send('GET', path, params),
    tenant: () => {
      if (!tenant) tenant = askTenant().catch((e) => { tenant = null; throw e; });
      return tenant;
    },
    // The keys the service publishes, with their windows (asked once per session): they narrow
    // a pinned key's window, never trust a key.
    servedKeys: () => {
      if (!served) served = get('audit/keys').then((r) => (Array.isArray(r && r.keys) ? r.keys : [])).catch(() => { served = null; return []; });
      return served;
    },
  };
}
