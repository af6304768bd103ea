// @auditline/client: the auditline service's client (Node 18+ and browsers).
// File spool and file export: "@auditline/client/node". IndexedDB spool: "@auditline/client/indexeddb".

export {
  AuditClient,
  type AuditClientOptions,
  type CloseOptions,
  type EntryIterable,
  type ExportOptions,
  type ExportPage,
  type FlushOptions,
  type LogFilters,
  type LogOptions,
  type OnFull,
  type Receipt,
  type StatsFilters,
} from "./client.js";
export {
  ApiError,
  AuditlineError,
  AuthError,
  ClosedError,
  NetworkError,
  NotFoundError,
  QueueFullError,
  RejectedError,
  TimeoutError,
} from "./errors.js";
export type { Listener, ListenerOptions, WebSocketConstructor, WebSocketLike } from "./feed.js";
export type { RecoveredBatch, SpoolBatch, SpoolContents, SpoolEntry, SpoolStore } from "./spool.js";
export type { FetchLike, TokenProvider } from "./transport.js";
export * from "./types.js";
