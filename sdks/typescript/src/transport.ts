// HTTP: credentials, timeouts, a token refresh on an authentication failure, and retries for reads.

import { errorForStatus, NetworkError, type ApiError } from "./errors.js";
import type { ErrorBody } from "./types.js";
import { parseRetryAfter, retryDelay, sleep } from "./util.js";

/** Returns a JWT; called before the first request and again whenever the service refuses it. */
export type TokenProvider = () => string | Promise<string>;

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface TransportOptions {
  url: string;
  apiKey?: string | undefined;
  token?: string | undefined;
  tokenProvider?: TokenProvider | undefined;
  fetch?: FetchLike | undefined;
  timeoutMs: number;
}

export interface SendOptions {
  query?: Record<string, string | number | undefined> | undefined;
  body?: string | undefined;
  headers?: Record<string, string> | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /**
   * Ask the token provider again after any 403, the service's enveloped one (a missing scope) too,
   * not only the authorizer's: the background writes, for which a new token may be the fix.
   */
  refreshOnAnyForbidden?: boolean | undefined;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
}

/** The credential to present: a JWT (`Authorization: Bearer`, subprotocol `bearer`) or an API key. */
export type Credential = { kind: "bearer"; value: string } | { kind: "api-key"; value: string };

export interface RetryPolicy {
  retries: number;
  baseMs: number;
  capMs: number;
}

export class Transport {
  readonly base: string;
  private readonly apiKey: string | undefined;
  private token: string | undefined;
  private readonly tokenProvider: TokenProvider | undefined;
  private tokenPending: Promise<string> | undefined;
  private readonly fetchImpl: FetchLike;
  readonly timeoutMs: number;

  constructor(options: TransportOptions) {
    if (!options.url) throw new TypeError("AuditClient: url is required");
    this.base = options.url.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.token = options.token;
    this.tokenProvider = options.tokenProvider;
    if (!this.apiKey && !this.token && !this.tokenProvider) {
      throw new TypeError("AuditClient: give an apiKey, a token or a tokenProvider");
    }
    const f = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new TypeError("AuditClient: no global fetch here; pass options.fetch");
    this.fetchImpl = (input, init) => f(input, init);
    this.timeoutMs = options.timeoutMs;
  }

  /** The credential for a request or a WebSocket; asks the token provider when there is no token yet. */
  async credential(): Promise<Credential> {
    if (this.tokenProvider) {
      if (this.token === undefined) await this.refreshToken();
      return { kind: "bearer", value: this.token! };
    }
    if (this.token !== undefined) return { kind: "bearer", value: this.token };
    return { kind: "api-key", value: this.apiKey! };
  }

  /** Whether a refused credential can be replaced (there is a token provider). */
  get canRefresh(): boolean {
    return this.tokenProvider !== undefined;
  }

  /** Asks the token provider again (concurrent callers share one call). */
  async refreshToken(): Promise<void> {
    if (!this.tokenProvider) return;
    if (!this.tokenPending) {
      const provider = this.tokenProvider;
      this.tokenPending = (async () => {
        try {
          const token = await provider();
          if (typeof token !== "string" || token === "") throw new TypeError("tokenProvider returned no token");
          this.token = token;
          return token;
        } finally {
          this.tokenPending = undefined;
        }
      })();
    }
    await this.tokenPending;
  }

  url(path: string, query?: SendOptions["query"]): string {
    let url = this.base + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value !== undefined && value !== "") params.append(name, String(value));
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    return url;
  }

  /**
   * One request, its whole body read. A refused credential is refreshed once through the token
   * provider and the request sent again. Throws NetworkError when no complete answer came back.
   */
  async send(method: string, path: string, options: SendOptions = {}): Promise<RawResponse> {
    let response = await this.sendOnce(method, path, options);
    if (this.canRefresh && (isAuthFailure(response) || (options.refreshOnAnyForbidden && response.status === 403))) {
      await this.refreshToken();
      response = await this.sendOnce(method, path, options);
    }
    return response;
  }

  private async sendOnce(method: string, path: string, options: SendOptions): Promise<RawResponse> {
    const credential = await this.credential();
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (credential.kind === "bearer") headers["authorization"] = `Bearer ${credential.value}`;
    else headers["x-api-key"] = credential.value;
    if (options.body !== undefined) headers["content-type"] = "application/json";

    const controller = new AbortController();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = () => controller.abort();
    if (options.signal) {
      if (options.signal.aborted) controller.abort();
      else options.signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      const response = await this.fetchImpl(this.url(path, options.query), {
        method,
        headers,
        body: options.body ?? null,
        signal: controller.signal,
      });
      const text = await response.text();
      return { status: response.status, headers: response.headers, text };
    } catch (e) {
      const why = timedOut
        ? `no answer within ${timeoutMs} ms`
        : options.signal?.aborted
          ? "aborted"
          : e instanceof Error
            ? describeFetchError(e)
            : String(e);
      throw new NetworkError(`${method} ${path}: ${why}`, e);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** A read: retried on network errors, 429, 500, 502, 503 and 504 (honouring Retry-After). */
  async read(path: string, options: SendOptions, policy: RetryPolicy): Promise<RawResponse> {
    for (let attempt = 0; ; attempt++) {
      let response: RawResponse | undefined;
      let failure: unknown;
      try {
        response = await this.send("GET", path, options);
      } catch (e) {
        failure = e;
      }
      if (response && !isRetryableStatus(response.status)) {
        if (response.status >= 400) throw apiError(response);
        return response;
      }
      if (attempt >= policy.retries || options.signal?.aborted) {
        if (response) throw apiError(response);
        throw failure;
      }
      const retryAfter = response ? parseRetryAfter(response.headers.get("retry-after")) : undefined;
      await sleep(retryDelay(attempt, policy.baseMs, policy.capMs, retryAfter), options.signal);
    }
  }

  async readJson<T>(path: string, options: SendOptions, policy: RetryPolicy): Promise<T> {
    const response = await this.read(path, options, policy);
    try {
      return JSON.parse(response.text) as T;
    } catch {
      throw new NetworkError(`GET ${path}: the answer is not JSON (cut short?)`);
    }
  }
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

/**
 * A refused credential: 401, or a 403 from the authorizer (which answers `{"message": "Forbidden"}`
 * without the error envelope, as API Gateway does). A 403 with the envelope is a missing scope,
 * which a new token would not change.
 */
export function isAuthFailure(response: RawResponse): boolean {
  if (response.status === 401) return true;
  if (response.status !== 403) return false;
  return errorBody(response) === undefined;
}

/** The error envelope's body, if the answer has one. */
export function errorBody(response: RawResponse): ErrorBody | undefined {
  try {
    const parsed = JSON.parse(response.text) as { error?: ErrorBody };
    if (parsed && typeof parsed === "object" && parsed.error && typeof parsed.error.code === "string") {
      return parsed.error;
    }
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * The typed error for an answer with an error status, whichever its shape: the service's envelope
 * `{"error": {code, message, parameter, request_id}}`, API Gateway's `{"message": "Forbidden"}`
 * (no envelope: the status names the code), or a body that is not JSON at all.
 */
export function apiError(response: RawResponse): ApiError {
  let fallback: string | undefined;
  try {
    const parsed = JSON.parse(response.text) as { message?: unknown };
    if (parsed && typeof parsed.message === "string") fallback = parsed.message;
  } catch {
    // not JSON
  }
  return errorForStatus(response.status, errorBody(response), parseRetryAfter(response.headers.get("retry-after")), fallback);
}

function describeFetchError(e: Error): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${e.message} (${cause.code})`;
  if (cause?.message) return `${e.message} (${cause.message})`;
  return e.message;
}
