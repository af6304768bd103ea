// The live feed: one WebSocket per distinct set of filters, reconnected with backoff, and after
// every reconnection a catch-up over HTTP from the last entry seen, so that each listener sees
// every entry once, in id order, across dropped sockets.

import { AuthError, ClosedError, NetworkError } from "./errors.js";
import type { RetryPolicy, Transport } from "./transport.js";
import type {
  Action,
  AnyEntityType,
  AuditLogEntry,
  CheckpointMessage,
  EntryNoticeMessage,
  ErasureNotice,
  FeedMessage,
  Page,
} from "./types.js";
import { backoffDelay, deferred, type Deferred } from "./util.js";

/** Called with each entry of the live feed, once, in id order. */
export type Listener = (entry: AuditLogEntry) => void | Promise<void>;

export interface ListenerOptions {
  /** Only this project's entries. */
  projectId?: string;
  /** Only entries of this entity type. */
  entityType?: AnyEntityType;
  /** Only entries of this action. */
  action?: Action;
  /** Also deliver the entries since this instant (read over HTTP before the live ones). */
  since?: string | Date;
  /** Fields were erased from entries (notice for connections without `audit:read`). */
  onErasure?: (notice: ErasureNotice) => void;
  /** A new signed checkpoint of the tenant's trail. */
  onCheckpoint?: (message: CheckpointMessage) => void;
  /** Something went wrong (a dropped socket, a failed catch-up); the feed carries on. */
  onError?: (error: unknown) => void;
}

/** The parts of the WebSocket API the feed uses: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface FeedSettings {
  transport: Transport;
  wsUrl: string;
  WebSocket: WebSocketConstructor | undefined;
  lookbackMs: number;
  reconnectBaseMs: number;
  reconnectCapMs: number;
  readRetry: RetryPolicy;
  onError: ((error: unknown) => void) | undefined;
}

let wsModule: Promise<WebSocketConstructor> | undefined;

/** The WebSocket class: given, the platform's, or (Node before 22) the optional `ws` package. */
export function resolveWebSocket(given: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (given) return Promise.resolve(given);
  const native = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (native) return Promise.resolve(native);
  wsModule ??= (async () => {
    const specifier = "ws";
    try {
      const mod = (await import(/* webpackIgnore: true */ specifier)) as {
        default?: WebSocketConstructor;
        WebSocket?: WebSocketConstructor;
      };
      const ctor = mod.WebSocket ?? mod.default;
      if (!ctor) throw new Error("the ws package has no WebSocket export");
      return ctor;
    } catch (e) {
      wsModule = undefined;
      throw new Error(
        `this platform has no WebSocket: install the ws package (npm install ws) or pass options.WebSocket (${String(e)})`,
      );
    }
  })();
  return wsModule;
}

type Filters = Pick<ListenerOptions, "projectId" | "entityType" | "action" | "since">;

export function feedKey(filters: Filters): string {
  const since = filters.since instanceof Date ? filters.since.toISOString() : filters.since;
  return JSON.stringify([filters.projectId ?? null, filters.entityType ?? null, filters.action ?? null, since ?? null]);
}

export class Feed {
  private readonly s: FeedSettings;
  private readonly filters: Filters;
  private readonly listeners = new Map<Listener, ListenerOptions>();
  private socket: WebSocketLike | undefined;
  private generation = 0;
  private attempt = 0;
  private live = false;
  private closed = false;
  private refreshBeforeConnect = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The highest-id entry delivered, and its time (the service's clock). */
  private lastSeen: { id: string; ms: number } | undefined;
  private catchFrom: number | undefined;
  /** Ids delivered recently (with their time), to drop repeats. */
  private readonly delivered = new Map<string, number>();
  private pruneAt = 20_000;
  /** Entries pushed while a catch-up runs: delivered after it. */
  private buffer: AuditLogEntry[] | null = null;
  /** Messages are handled one after another (a notice is read over HTTP first). */
  private chain: Promise<void> = Promise.resolve();
  private readyWaiters: Array<Deferred<void>> = [];

  constructor(filters: Filters, settings: FeedSettings) {
    this.filters = filters;
    this.s = settings;
    if (filters.since !== undefined) {
      const ms = filters.since instanceof Date ? filters.since.getTime() : Date.parse(filters.since);
      if (Number.isNaN(ms)) throw new TypeError(`since: not a date: ${String(filters.since)}`);
      this.catchFrom = ms;
    }
  }

  get size(): number {
    return this.listeners.size;
  }

  /** Adds a listener; resolves once the feed is live (entries logged from then on reach it). */
  add(listener: Listener, options: ListenerOptions): Promise<void> {
    this.listeners.set(listener, options);
    if (this.live) return Promise.resolve();
    const waiter = deferred<void>();
    waiter.promise.catch(() => undefined);
    this.readyWaiters.push(waiter);
    if (!this.socket && this.reconnectTimer === undefined && this.generation === 0) void this.connect();
    return waiter.promise;
  }

  remove(listener: Listener): boolean {
    return this.listeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.generation++;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    try {
      socket?.close(1000, "closed by the client");
    } catch {
      // already closing
    }
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new ClosedError("the listener was removed"));
  }

  /** Drops the socket as a network failure would: the feed reconnects and catches up. */
  dropSocket(): void {
    const socket = this.socket;
    if (!socket) return;
    try {
      socket.close(4000, "dropped by the client");
    } catch {
      // already closing
    }
  }

  private report(error: unknown): void {
    for (const options of this.listeners.values()) {
      if (options.onError) {
        try {
          options.onError(error);
        } catch {
          // ignore
        }
      }
    }
    if (this.s.onError) {
      try {
        this.s.onError(error);
      } catch {
        // ignore
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const generation = ++this.generation;
    let socket: WebSocketLike;
    try {
      const WebSocketClass = await resolveWebSocket(this.s.WebSocket);
      if (this.refreshBeforeConnect && this.s.transport.canRefresh) await this.s.transport.refreshToken();
      this.refreshBeforeConnect = false;
      const credential = await this.s.transport.credential();
      if (generation !== this.generation) return;
      const protocols = credential.kind === "bearer" ? ["bearer", credential.value] : ["api-key", credential.value];
      socket = new WebSocketClass(this.url(), protocols);
    } catch (e) {
      if (generation !== this.generation) return;
      this.report(e);
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (generation !== this.generation) return;
      opened = true;
      void this.onOpen(generation);
    };
    socket.onmessage = (event) => {
      if (generation !== this.generation) return;
      const data = event.data;
      this.chain = this.chain.then(() => this.onMessage(data, generation)).catch((e: unknown) => this.report(e));
    };
    socket.onerror = () => undefined;
    socket.onclose = (event) => {
      if (generation !== this.generation) return;
      this.socket = undefined;
      this.live = false;
      this.buffer = null;
      if (this.closed) return;
      // Refused before it opened: perhaps the token expired.
      if (!opened) this.refreshBeforeConnect = true;
      this.report(
        new NetworkError(
          opened
            ? `the live feed closed (code ${event.code ?? "?"}${event.reason ? `: ${event.reason}` : ""}); reconnecting`
            : "the live feed could not connect; retrying",
        ),
      );
      this.scheduleReconnect();
    };
  }

  private url(): string {
    const params = new URLSearchParams();
    if (this.filters.projectId !== undefined) params.set("project_id", this.filters.projectId);
    if (this.filters.entityType !== undefined) params.set("entity_type", this.filters.entityType);
    if (this.filters.action !== undefined) params.set("action", this.filters.action);
    const query = params.toString();
    return query ? `${this.s.wsUrl}?${query}` : this.s.wsUrl;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    const delay = this.s.reconnectBaseMs / 2 + backoffDelay(this.attempt++, this.s.reconnectBaseMs, this.s.reconnectCapMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, delay);
  }

  private async onOpen(generation: number): Promise<void> {
    const from = this.lastSeen ? this.lastSeen.ms - this.s.lookbackMs : this.catchFrom;
    if (from !== undefined) {
      this.buffer = [];
      let caught: AuditLogEntry[] = [];
      try {
        caught = await this.catchUp(from, generation);
      } catch (e) {
        if (generation !== this.generation) return;
        this.report(e);
        if (e instanceof AuthError) {
          // The credential may read the feed but not the HTTP API: live only, gaps possible.
          caught = [];
        } else {
          // Try again from the same point on a new connection.
          this.buffer = null;
          this.dropSocket();
          return;
        }
      }
      if (generation !== this.generation) return;
      // Wait for messages already being handled, then deliver the catch-up before them.
      await this.chain;
      if (generation !== this.generation) return;
      const buffered = this.buffer ?? [];
      this.buffer = null;
      this.catchFrom = undefined;
      this.deliver(caught);
      this.deliver(buffered.sort(byId));
    }
    this.live = true;
    this.attempt = 0;
    for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
  }

  /** Every entry from `fromMs` on (matching the filters), oldest first, without those delivered. */
  private async catchUp(fromMs: number, generation: number): Promise<AuditLogEntry[]> {
    const path =
      this.filters.projectId !== undefined
        ? `/audit/logs/project/${encodeURIComponent(this.filters.projectId)}`
        : "/audit/logs";
    const found: AuditLogEntry[] = [];
    let nextToken: string | undefined;
    do {
      const page: Page = await this.s.transport.readJson<Page>(
        path,
        {
          query: {
            start_date: new Date(Math.max(0, fromMs)).toISOString(),
            action: this.filters.action,
            entity_type: this.filters.entityType,
            limit: 1000,
            next_token: nextToken,
          },
        },
        this.s.readRetry,
      );
      if (generation !== this.generation) return [];
      for (const entry of page.entries) if (!this.delivered.has(entry.id)) found.push(entry);
      nextToken = page.next_token ?? undefined;
    } while (nextToken);
    return found.sort(byId);
  }

  private async onMessage(data: unknown, generation: number): Promise<void> {
    if (generation !== this.generation) return;
    const text = typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer);
    let message: FeedMessage;
    try {
      message = JSON.parse(text) as FeedMessage;
    } catch {
      this.report(new Error(`the live feed sent a message that is not JSON: ${text.slice(0, 80)}`));
      return;
    }
    switch (message.type) {
      case "audit_entry":
        this.incoming(message.entry);
        break;
      case "audit_entry_notice": {
        const entry = await this.fetchWhole(message);
        if (entry && generation === this.generation) this.incoming(entry);
        break;
      }
      case "erasure":
        for (const options of this.listeners.values()) safely(() => options.onErasure?.(message), (e) => this.report(e));
        break;
      case "checkpoint":
        for (const options of this.listeners.values()) safely(() => options.onCheckpoint?.(message), (e) => this.report(e));
        break;
      default:
        break;
    }
  }

  private async fetchWhole(notice: EntryNoticeMessage): Promise<AuditLogEntry | undefined> {
    if (this.delivered.has(notice.entry.id)) return undefined;
    try {
      return await this.s.transport.readJson<AuditLogEntry>(
        `/audit/logs/${encodeURIComponent(notice.entry.id)}`,
        {},
        this.s.readRetry,
      );
    } catch (e) {
      this.report(e);
      return undefined;
    }
  }

  private incoming(entry: AuditLogEntry): void {
    if (this.buffer) this.buffer.push(entry);
    else this.deliver([entry]);
  }

  private deliver(entries: AuditLogEntry[]): void {
    for (const entry of entries) {
      if (this.delivered.has(entry.id)) continue;
      const ms = Date.parse(entry.timestamp);
      this.delivered.set(entry.id, ms);
      if (!this.lastSeen || entry.id > this.lastSeen.id) this.lastSeen = { id: entry.id, ms };
      for (const listener of [...this.listeners.keys()]) {
        safely(
          () => {
            const result = listener(entry);
            if (result && typeof (result as Promise<void>).then === "function") {
              (result as Promise<void>).catch((e: unknown) => this.report(e));
            }
          },
          (e) => this.report(e),
        );
      }
    }
    if (this.delivered.size > this.pruneAt && this.lastSeen) {
      // Forget ids older than any catch-up can return again.
      const horizon = this.lastSeen.ms - this.s.lookbackMs - 60_000;
      for (const [id, ms] of this.delivered) if (ms < horizon) this.delivered.delete(id);
      this.pruneAt = Math.max(20_000, this.delivered.size * 2);
    }
  }
}

function byId(a: AuditLogEntry, b: AuditLogEntry): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function safely(run: () => void, onError: (e: unknown) => void): void {
  try {
    run();
  } catch (e) {
    onError(e);
  }
}
