import type { ErrorBody } from "./types.js";

/** Base class of every error the SDK throws or rejects with. */
export class AuditlineError extends Error {
  /** A machine-readable code: the service's `error.code`, or one of the SDK's own. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The service answered a request with an error (any call but the background writes). */
export class ApiError extends AuditlineError {
  /** The HTTP status. */
  readonly status: number;
  /** The parameter, header or field at fault, when the service names one. */
  readonly parameter: string | undefined;
  /** The service's request id: quote it when reporting a problem. */
  readonly requestId: string | undefined;
  /** Seconds the service asked to wait before retrying (`Retry-After`), if any. */
  readonly retryAfter: number | undefined;

  constructor(
    status: number,
    body: Partial<ErrorBody> | undefined,
    retryAfter?: number,
    fallbackMessage?: string,
  ) {
    super(
      body?.code ?? codeForStatus(status),
      body?.message ?? fallbackMessage ?? `the service answered ${status}`,
    );
    this.status = status;
    this.parameter = body?.parameter;
    this.requestId = body?.request_id;
    this.retryAfter = retryAfter;
  }
}

/**
 * 401 or 403: the credential was refused (missing, unknown, expired, revoked, or without the
 * scope the call needs). Both shapes of a refusal map to it: the authorizer's answer on AWS API
 * Gateway (and the local gateway), `403 {"message": "Forbidden"}` without the error envelope
 * (`code` `forbidden`, `requestId` undefined), and the service's envelope (`401`
 * `unauthenticated`, `403` `forbidden`, with its `requestId`).
 */
export class AuthError extends ApiError {}

/** 404: no entry with this id, for this caller (another tenant's ids look the same). */
export class NotFoundError extends ApiError {}

/** The typed error for an answer with an error status: AuthError, NotFoundError, or ApiError. */
export function errorForStatus(
  status: number,
  body: Partial<ErrorBody> | undefined,
  retryAfter?: number,
  fallbackMessage?: string,
): ApiError {
  const kind = status === 401 || status === 403 ? AuthError : status === 404 ? NotFoundError : ApiError;
  return new kind(status, body, retryAfter, fallbackMessage);
}

/**
 * One entry was refused, for good: the promise of its `log*` call rejects with this. `status` is
 * the per-entry status (400 for an invalid entry, 422 for a reused key, 413, 202 `disabled`...);
 * the SDK's own refusals (`queue_full`, `dropped`, `closed`, `not_serializable`, `too_large`)
 * have status 0 and no request id.
 */
export class RejectedError extends AuditlineError {
  readonly status: number;
  readonly parameter: string | undefined;
  readonly requestId: string | undefined;

  constructor(status: number, code: string, message: string, parameter?: string, requestId?: string) {
    super(code, message);
    this.status = status;
    this.parameter = parameter;
    this.requestId = requestId;
  }

  static fromBody(status: number, body: Partial<ErrorBody> | undefined): RejectedError {
    return new RejectedError(
      status,
      body?.code ?? codeForStatus(status),
      body?.message ?? `the service answered ${status}`,
      body?.parameter,
      body?.request_id,
    );
  }
}

/** The queue was full (`onFull: "reject"`), or the entry was dropped for a newer one (`"dropOldest"`). */
export class QueueFullError extends RejectedError {}

/** The client was closed before the call could be carried out. */
export class ClosedError extends AuditlineError {
  constructor(message = "the client is closed") {
    super("closed", message);
  }
}

/** `flush` or `close` ran out of time; what was not delivered is still queued (and spooled). */
export class TimeoutError extends AuditlineError {
  /** Entries still not delivered. */
  readonly pending: number;

  constructor(message: string, pending: number) {
    super("timeout", message);
    this.pending = pending;
  }
}

/** The request could not be completed (connection refused or cut, timeout). */
export class NetworkError extends AuditlineError {
  override readonly cause: unknown;

  constructor(message: string, cause?: unknown) {
    super("network_error", message);
    this.cause = cause;
  }
}

function codeForStatus(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 413:
      return "payload_too_large";
    case 422:
      return "unprocessable";
    case 429:
      return "throttled";
    case 503:
      return "unavailable";
    default:
      return status >= 500 ? "server_error" : `http_${status}`;
  }
}
