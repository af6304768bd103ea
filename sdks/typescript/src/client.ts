// AuditClient: the seed's AuditLogger calls over the auditline service.

import { ClosedError } from "./errors.js";
import { Feed, feedKey, type Listener, type ListenerOptions, type WebSocketConstructor } from "./feed.js";
import type { SpoolStore } from "./spool.js";
import { Transport, apiError, type FetchLike, type RetryPolicy, type TokenProvider } from "./transport.js";
import type {
  Action,
  AnyEntityType,
  AuditLogEntry,
  EntityType,
  ExportFormat,
  Health,
  JsonObject,
  NewEntry,
  Page,
  Stats,
} from "./types.js";
import { dateParam, ensureCrypto } from "./util.js";
import { MAX_BATCH_ENTRIES, MAX_BODY_BYTES, Writer, type OnFull, type Receipt } from "./writer.js";
import type { RejectedError } from "./errors.js";

export interface AuditClientOptions {
  /** The HTTP API's base URL, e.g. `http://127.0.0.1:8080` or `https://…/prod`. */
  url: string;
  /** An API key (`X-API-Key`). */
  apiKey?: string;
  /** A JWT (`Authorization: Bearer`). */
  token?: string;
  /** Returns a JWT; called before the first request and again whenever the service refuses the token. */
  tokenProvider?: TokenProvider;
  /** The live feed's URL; by default `/ws` on the HTTP API's host (the local gateway's layout). */
  wsUrl?: string;
  /** A WebSocket class, where the platform has none (Node before 22 without the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** A fetch implementation (default: the global one). */
  fetch?: FetchLike;

  /** Entries per batch (1–100, default 100). */
  maxBatchEntries?: number;
  /** Bytes per request body (default and most 1 MiB). */
  maxBatchBytes?: number;
  /** Longest wait before a partial batch is sent (default 1000 ms). */
  lingerMs?: number;
  /** Entries queued and not yet answered for, at most (default 10,000). */
  maxQueue?: number;
  /**
   * When the queue is full: `"block"` (default) holds the new entry until there is room, for at most
   * `blockTimeoutMs`, then refuses it (QueueFullError `queue_full`); its promise settles later, so
   * callers that await each call are slowed to the service's pace. `"reject"` refuses it at once
   * (QueueFullError `queue_full`); `"dropOldest"` refuses the oldest entry not yet being sent
   * (QueueFullError `dropped`) to make room (not with a spool: a spool is for keeping entries).
   * Python's `on_full`: `"block"`, `"raise"`, `"drop_oldest"`.
   */
  onFull?: OnFull;
  /** onFull `"block"`: how long an entry waits for room before it is refused (default 30,000 ms; `Infinity`: no limit). */
  blockTimeoutMs?: number;
  /** Batches in flight at once (default 1: entries are stored in the order they were logged). */
  concurrency?: number;
  /** A durable store for the queue (FileSpool in Node, IndexedDbSpool in browsers). */
  spool?: SpoolStore;
  /** One request's time limit (default 30,000 ms); then it is retried. */
  requestTimeoutMs?: number;
  /** First retry delay (default 200 ms), doubled per attempt, with full jitter. */
  retryBaseMs?: number;
  /** Longest retry delay (default 10,000 ms); `Retry-After` wins when longer. */
  retryCapMs?: number;
  /** Retries of a read (default 4). */
  readRetries?: number;
  /**
   * In Node: while the service answers, queued entries keep the process running until they are
   * delivered. After this long of failed attempts in a row (default 10,000 ms) they no longer do;
   * when nothing else keeps Node running, it flushes once more for up to this long (`beforeExit`)
   * and then lets the process exit (undelivered entries stay in the spool, if there is one).
   */
  exitFlushTimeoutMs?: number;
  /** Catch-up after a reconnection starts this long before the last entry seen (default 60,000 ms). */
  catchUpLookbackMs?: number;
  /** Every entry stored (also those a spool carried over from a previous run). */
  onStored?: (receipt: Receipt, entry: NewEntry) => void;
  /** Every entry refused for good. Without it, refusals are written to console.warn. */
  onRejected?: (error: RejectedError, entry: NewEntry) => void;
  /** Problems the SDK works around (retries, a failed spool write, a dropped socket). */
  onError?: (error: unknown) => void;
}

/** Optional parts of an entry. */
export interface LogOptions {
  projectId?: string;
  changes?: JsonObject;
  metadata?: JsonObject;
}

/** Filters of the list calls. */
export interface LogFilters {
  action?: Action;
  entityType?: AnyEntityType;
  userId?: string;
  /** Inclusive; ISO 8601 text (a bare date is midnight UTC) or a Date. */
  startDate?: string | Date;
  /** Inclusive. */
  endDate?: string | Date;
  /** Entries per page (1–1000, default 100); the iterator still goes through every page. */
  limit?: number;
  /** Matching entries to skip first (up to 10,000). */
  offset?: number;
  /** Start from this page token (a previous page's `next_token`). */
  nextToken?: string;
}

export interface StatsFilters {
  startDate?: string | Date;
  endDate?: string | Date;
  bucket?: "hour" | "day";
}

export interface ExportOptions {
  format?: ExportFormat;
  action?: Action;
  entityType?: AnyEntityType;
  userId?: string;
  /** Only this entity's entries (not with projectId). */
  entityId?: string;
  /** Only this project's entries (not with entityId). */
  projectId?: string;
  startDate?: string | Date;
  endDate?: string | Date;
  /** Continue an export from this page token (a previous page's `nextToken`). */
  nextToken?: string;
}

/** One page of an export: pages concatenate into one file. */
export interface ExportPage {
  /** The page's text: JSON lines, or CSV (the header row on the first page only). */
  text: string;
  /** Entries in the page (`x-entry-count`). */
  entryCount: number;
  /** The token of the next page (`x-next-token`), or null on the last. */
  nextToken: string | null;
}

/** Entries over every page, lazily: `for await (const entry of …)`; `.pages()` gives the pages. */
export interface EntryIterable extends AsyncIterable<AuditLogEntry> {
  pages(): AsyncIterable<Page>;
  /** Every entry in one array (mind the size). */
  toArray(): Promise<AuditLogEntry[]>;
}

export interface CloseOptions {
  /** How long to keep delivering before giving up (default 10,000 ms). */
  timeoutMs?: number;
}

export interface FlushOptions {
  /** Reject with TimeoutError after this long (the entries stay queued). Default: no limit. */
  timeoutMs?: number;
}

export type { Receipt, OnFull };

/**
 * A client of the auditline service. Writes are queued and sent in the background in batches;
 * each `log*` call returns at once with a promise of the entry's receipt.
 */
export class AuditClient {
  private readonly transport: Transport;
  private readonly writer: Writer;
  private readonly feeds = new Map<string, Feed>();
  private readonly wsUrl: string;
  private readonly options: AuditClientOptions;
  private readonly readRetry: RetryPolicy;
  private readonly exitHook: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: AuditClientOptions) {
    this.options = options;
    this.transport = new Transport({
      url: options.url,
      apiKey: options.apiKey,
      token: options.token,
      tokenProvider: options.tokenProvider,
      fetch: options.fetch,
      timeoutMs: options.requestTimeoutMs ?? 30_000,
    });
    this.readRetry = { retries: options.readRetries ?? 4, baseMs: options.retryBaseMs ?? 200, capMs: options.retryCapMs ?? 10_000 };
    if (options.onFull === "dropOldest" && options.spool) {
      throw new TypeError('AuditClient: onFull "dropOldest" discards entries; it cannot be combined with a spool');
    }
    const maxBatchEntries = clamp(options.maxBatchEntries ?? MAX_BATCH_ENTRIES, 1, MAX_BATCH_ENTRIES, "maxBatchEntries");
    this.writer = new Writer(
      this.transport,
      {
        maxBatchEntries,
        maxBatchBytes: clamp(options.maxBatchBytes ?? MAX_BODY_BYTES, 1024, MAX_BODY_BYTES, "maxBatchBytes"),
        lingerMs: clamp(options.lingerMs ?? 1000, 0, 1000, "lingerMs"),
        maxQueue: clamp(options.maxQueue ?? 10_000, 1, Number.MAX_SAFE_INTEGER, "maxQueue"),
        onFull: options.onFull ?? "block",
        blockTimeoutMs: blockTimeout(options.blockTimeoutMs),
        concurrency: clamp(options.concurrency ?? 1, 1, 64, "concurrency"),
        retryBaseMs: options.retryBaseMs ?? 200,
        retryCapMs: options.retryCapMs ?? 10_000,
        spool: options.spool,
        onStored: options.onStored,
        onRejected: options.onRejected,
        onError: options.onError,
        readRetry: this.readRetry,
        holdOpenMs: options.exitFlushTimeoutMs ?? 10_000,
      },
      ensureCrypto(),
    );
    this.wsUrl = options.wsUrl ?? `${this.transport.base.replace(/^http/, "ws")}/ws`;
    const proc = (globalThis as { process?: NodeProcessLike }).process;
    if (proc && typeof proc.on === "function") {
      // Node is about to exit (nothing left to run, perhaps only a script awaiting a receipt):
      // send what is queued. A flush that times out is not tried again, so the process can exit.
      let gaveUp = false;
      const hook = () => {
        if (this.closing || gaveUp || this.writer.size === 0) return;
        this.flush({ timeoutMs: options.exitFlushTimeoutMs ?? 10_000 }).catch(() => {
          gaveUp = true;
        });
      };
      proc.on("beforeExit", hook);
      this.exitHook = () => proc.removeListener?.("beforeExit", hook);
    }
  }

  // ---- writes -------------------------------------------------------------------------------

  /** Queues an entry; resolves with its receipt once stored, rejects with RejectedError if refused. */
  log(action: Action, entityType: EntityType, entityId: string, options: LogOptions = {}): Promise<Receipt> {
    const entry: NewEntry = { action, entity_type: entityType, entity_id: entityId };
    if (options.projectId !== undefined) entry.project_id = options.projectId;
    if (options.changes !== undefined) entry.changes = options.changes;
    if (options.metadata !== undefined) entry.metadata = options.metadata;
    return this.writer.enqueue(entry);
  }

  logCreate(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("CREATE", entityType, entityId, options);
  }

  logUpdate(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("UPDATE", entityType, entityId, options);
  }

  logDelete(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("DELETE", entityType, entityId, options);
  }

  logLink(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("LINK", entityType, entityId, options);
  }

  logUnlink(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("UNLINK", entityType, entityId, options);
  }

  logView(entityType: EntityType, entityId: string, options?: LogOptions): Promise<Receipt> {
    return this.log("VIEW", entityType, entityId, options);
  }

  /** Sends everything queued so far and waits until the service has answered for each entry. */
  flush(options: FlushOptions = {}): Promise<void> {
    return this.writer.flush(options.timeoutMs);
  }

  /**
   * Resolves once every entry logged so far is durably queued: written to the spool and synced.
   * Without a spool it resolves at once (entries are queued in memory only).
   */
  spooled(): Promise<void> {
    return this.writer.spooled();
  }

  /** Entries queued (or spooled) and not yet answered for. */
  get pending(): number {
    return this.writer.size;
  }

  /**
   * Flushes (for at most `timeoutMs`), then stops: listeners are closed, the spool is closed, and
   * entries still undelivered are refused with ClosedError (a spool keeps them for the next client).
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= (async () => {
      this.exitHook?.();
      for (const feed of this.feeds.values()) feed.close();
      this.feeds.clear();
      await this.writer.close(options.timeoutMs ?? 10_000);
    })();
    return this.closing;
  }

  // ---- reads --------------------------------------------------------------------------------

  /** The tenant's entries, newest first, over every page. */
  getLogs(filters: LogFilters = {}): EntryIterable {
    return this.entries("/audit/logs", filters);
  }

  /** One entity's entries, newest first, over every page. */
  getLogsByEntity(entityId: string, filters: LogFilters = {}): EntryIterable {
    return this.entries(`/audit/logs/entity/${encodeURIComponent(entityId)}`, filters);
  }

  /** One project's entries, newest first, over every page. */
  getLogsByProject(projectId: string, filters: LogFilters = {}): EntryIterable {
    return this.entries(`/audit/logs/project/${encodeURIComponent(projectId)}`, filters);
  }

  /** One entry by id; rejects with NotFoundError when there is none with this id (for this tenant). */
  async getLog(id: string): Promise<AuditLogEntry> {
    return this.transport.readJson<AuditLogEntry>(`/audit/logs/${encodeURIComponent(id)}`, {}, this.readRetry);
  }

  /** Totals by action and entity type over the whole UTC hours covering the range. */
  getStats(filters: StatsFilters = {}): Promise<Stats> {
    return this.transport.readJson<Stats>(
      "/audit/stats",
      { query: { start_date: dateParam(filters.startDate), end_date: dateParam(filters.endDate), bucket: filters.bucket } },
      this.readRetry,
    );
  }

  /** The service's health (more detail for credentials with `audit:read`). */
  async getHealth(): Promise<Health> {
    const response = await this.transport.send("GET", "/audit/health", {});
    if (response.status !== 200 && response.status !== 503) {
      throw apiError(response);
    }
    return JSON.parse(response.text) as Health;
  }

  /**
   * An export, page by page (`x-next-token`), newest first: JSON lines (default), CSV or OCSF.
   * The first page writes a VIEW entry into the trail, as every export does.
   */
  async *export(options: ExportOptions = {}): AsyncGenerator<ExportPage, void, undefined> {
    let nextToken = options.nextToken;
    do {
      const response = await this.transport.read(
        "/audit/export",
        {
          query: {
            format: options.format,
            action: options.action,
            entity_type: options.entityType,
            user_id: options.userId,
            entity_id: options.entityId,
            project_id: options.projectId,
            start_date: dateParam(options.startDate),
            end_date: dateParam(options.endDate),
            next_token: nextToken,
          },
          headers: { accept: "*/*" },
        },
        this.readRetry,
      );
      nextToken = response.headers.get("x-next-token") || undefined;
      yield {
        text: response.text,
        entryCount: Number(response.headers.get("x-entry-count") ?? "0"),
        nextToken: nextToken ?? null,
      };
    } while (nextToken);
  }

  private entries(path: string, filters: LogFilters): EntryIterable {
    const transport = this.transport;
    const retry = this.readRetry;
    const query = (nextToken: string | undefined) => ({
      action: filters.action,
      entity_type: filters.entityType,
      user_id: filters.userId,
      start_date: dateParam(filters.startDate),
      end_date: dateParam(filters.endDate),
      limit: filters.limit,
      offset: nextToken === undefined ? filters.offset : undefined,
      next_token: nextToken,
    });
    async function* pages(): AsyncGenerator<Page, void, undefined> {
      let nextToken = filters.nextToken;
      for (;;) {
        const page = await transport.readJson<Page>(path, { query: query(nextToken) }, retry);
        yield page;
        if (!page.next_token) return;
        nextToken = page.next_token;
      }
    }
    async function* all(): AsyncGenerator<AuditLogEntry, void, undefined> {
      for await (const page of pages()) yield* page.entries;
    }
    return {
      [Symbol.asyncIterator]: () => all(),
      pages,
      async toArray() {
        const out: AuditLogEntry[] = [];
        for await (const entry of all()) out.push(entry);
        return out;
      },
    };
  }

  // ---- live feed ----------------------------------------------------------------------------

  /**
   * Calls `listener` with each new entry of the live feed (narrowed by the filters), once and in id
   * order, reconnecting and catching up over HTTP after a dropped socket. Resolves once the feed is
   * live: entries stored from then on reach the listener.
   */
  addListener(listener: Listener, options: ListenerOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(new ClosedError());
    const key = feedKey(options);
    let feed = this.feeds.get(key);
    if (!feed) {
      feed = new Feed(
        { projectId: options.projectId, entityType: options.entityType, action: options.action, since: options.since },
        {
          transport: this.transport,
          wsUrl: this.wsUrl,
          WebSocket: this.options.WebSocket,
          lookbackMs: this.options.catchUpLookbackMs ?? 60_000,
          reconnectBaseMs: 250,
          reconnectCapMs: 30_000,
          readRetry: this.readRetry,
          onError: this.options.onError,
        },
      );
      this.feeds.set(key, feed);
    }
    return feed.add(listener, options);
  }

  /** Stops calling `listener`; a feed left without listeners closes its socket. */
  removeListener(listener: Listener): void {
    for (const [key, feed] of this.feeds) {
      if (feed.remove(listener) && feed.size === 0) {
        feed.close();
        this.feeds.delete(key);
      }
    }
  }
}

interface NodeProcessLike {
  on(event: "beforeExit", listener: () => void): unknown;
  removeListener?(event: "beforeExit", listener: () => void): unknown;
}

function blockTimeout(value: number | undefined): number {
  if (value === undefined) return 30_000;
  if (value === Infinity) return value;
  return clamp(value, 0, 2_147_483_647, "blockTimeoutMs");
}

function clamp(value: number, min: number, max: number, name: string): number {
  if (typeof value !== "number" || Number.isNaN(value)) throw new TypeError(`${name} must be a number`);
  if (value < min || value > max) throw new RangeError(`${name} must be from ${min} to ${max}`);
  return value;
}
