// The background writer: a bounded queue, batches of at most 100 entries / 1 MiB / 1 s, one
// Idempotency-Key per batch, retries of the very same body under the same key, and an optional
// durable spool.

import { ClosedError, QueueFullError, RejectedError, TimeoutError } from "./errors.js";
import type { SpoolContents, SpoolStore } from "./spool.js";
import { apiError, errorBody, isRetryableStatus, type RawResponse, type Transport } from "./transport.js";
import type { AuditLogEntry, BatchItem, BatchResult, NewEntry } from "./types.js";
import { deferred, parseRetryAfter, randomUuid, retryDelay, sleep, utf8Length, uuidV7Time, type Deferred } from "./util.js";

/** What the service gave back for a stored entry: keep `leafHash` as proof it was written. */
export interface Receipt {
  /** The entry's id (UUIDv7). */
  id: string;
  /** When the service stamped it (ISO 8601, UTC, milliseconds). */
  timestamp: string;
  /**
   * `entry.integrity.leaf_hash`. `null` only in one corner: the answer to a retried batch was
   * replayed in its compact form (over 300 KiB, ids only) and the credential cannot read the entry
   * back (no `audit:read`).
   */
  leafHash: string | null;
}

/** What to do with a new entry when the queue holds `maxQueue` entries. */
export type OnFull = "block" | "reject" | "dropOldest";

export interface WriterOptions {
  maxBatchEntries: number;
  maxBatchBytes: number;
  lingerMs: number;
  maxQueue: number;
  onFull: OnFull;
  /** onFull "block": how long an entry may wait for room before it is refused (Infinity: no limit). */
  blockTimeoutMs: number;
  concurrency: number;
  retryBaseMs: number;
  retryCapMs: number;
  spool: SpoolStore | undefined;
  onStored: ((receipt: Receipt, entry: NewEntry) => void) | undefined;
  onRejected: ((error: RejectedError, entry: NewEntry) => void) | undefined;
  onError: ((error: unknown) => void) | undefined;
  readRetry: { retries: number; baseMs: number; capMs: number };
  /**
   * While the service answers, the writer's timers keep Node running until the queue is empty.
   * After this long of failed attempts in a row they no longer do (the exit flush takes over).
   */
  holdOpenMs: number;
}

/** The service's own body limit. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Longest wait between two attempts at a batch whose credential the service refuses. */
export const AUTH_RETRY_CAP_MS = 60_000;
export const MAX_BATCH_ENTRIES = 100;

const enum State {
  Blocked,
  Spooling,
  Ready,
  Sending,
  Done,
}

interface Item {
  /** The entry's JSON text, as sent. */
  text: string;
  /** Spool sequence number (or a local counter without a spool); -1 until spooled. */
  seq: number;
  /** UTF-8 bytes of `text`; -1 until measured. */
  bytes: number;
  state: State;
  /** When it became ready to send (for the linger). */
  readyAt: number;
  /** Settles with the entry's outcome; undefined for done entries recovered only to rebuild a body. */
  outcome: Deferred<Receipt> | undefined;
  /** onFull "block": when it stops waiting for room. */
  blockedUntil?: number;
}

interface Batch {
  key: string;
  items: Item[];
  body: string;
  /** Recovered from the spool: already assigned there. */
  recovered: boolean;
}

type Handled = { retry: false } | { retry: true; retryAfter: number | undefined; capMs?: number };

export class Writer {
  private readonly o: WriterOptions;
  private readonly transport: Transport;
  private readonly pending = new Set<Item>();
  /** Entries waiting for room (onFull "block"), from `blockedHead` on. */
  private blocked: Item[] = [];
  private blockedHead = 0;
  private toSpool: Item[] = [];
  private ready: Item[] = [];
  private readyHead = 0;
  private readyCount = 0;
  private readyChars = 0;
  private resend: Batch[] = [];
  private inflight = 0;
  private localSeq = 1;
  private nextSeq = 1;
  private flushing = 0;
  private lingerTimer: ReturnType<typeof setTimeout> | undefined;
  private lingerAt = 0;
  private blockTimer: ReturnType<typeof setTimeout> | undefined;
  private spooling: Promise<void> | undefined;
  private closed = false;
  private fatal: unknown;
  private readonly stop = new AbortController();
  /** Requests and waits under way: each has its own controller, aborted when the writer stops. */
  private readonly scopes = new Set<AbortController>();
  private idleWaiters: Array<() => void> = [];
  /** Since when every attempt has failed (undefined while the service answers). */
  private failingSince: number | undefined;
  /** The answer (401/403) of the last attempt the service refused for its credential, until it takes one. */
  private refusedBy: RawResponse | undefined;
  /** The spool is open and recovered (and WebCrypto is in place): sending may start. */
  private isOpen = false;
  readonly opened: Promise<void>;

  constructor(transport: Transport, options: WriterOptions, init: Promise<void>) {
    this.transport = transport;
    this.o = options;
    const spool = options.spool;
    this.opened = (async () => {
      await init;
      if (spool) this.recover(await spool.open());
    })();
    this.opened.then(
      () => {
        this.isOpen = true;
        this.schedule();
      },
      (e: unknown) => {
        this.fatal = e;
        this.report(e);
        for (const item of [...this.pending]) this.fail(item, e);
      },
    );
  }

  /** Entries not yet stored or refused (including those waiting for room, and recovered ones). */
  get size(): number {
    return this.pending.size;
  }

  /** Queues one entry; the promise settles with the service's answer for it. */
  enqueue(entry: NewEntry): Promise<Receipt> {
    if (this.closed) return handled(Promise.reject(new ClosedError()));
    if (this.fatal !== undefined) return handled(Promise.reject(this.fatal));
    let text: string;
    try {
      text = JSON.stringify(entry);
    } catch (e) {
      return this.refuse(entry, new RejectedError(0, "not_serializable", `the entry is not JSON: ${String(e)}`));
    }
    // Checked exactly only when it might matter (UTF-8 takes at most 3 bytes per UTF-16 unit).
    if (text.length * 3 > this.o.maxBatchBytes - 2) {
      const bytes = utf8Length(text);
      if (bytes > this.o.maxBatchBytes - 2) {
        return this.refuse(
          entry,
          new RejectedError(0, "too_large", `the entry is ${bytes} bytes; a request takes at most ${this.o.maxBatchBytes}`),
        );
      }
    }
    const item: Item = { text, seq: -1, bytes: -1, state: State.Blocked, readyAt: 0, outcome: deferred<Receipt>() };
    handled(item.outcome!.promise);
    if (this.pending.size - this.blockedCount >= this.o.maxQueue) {
      switch (this.o.onFull) {
        case "reject":
          this.fail(item, new QueueFullError(0, "queue_full", `the queue holds ${this.o.maxQueue} entries`), entry);
          return item.outcome!.promise;
        case "dropOldest": {
          const victim = this.oldestDroppable();
          if (!victim) {
            this.fail(item, new QueueFullError(0, "queue_full", "the queue is full and every entry in it is being sent"), entry);
            return item.outcome!.promise;
          }
          this.drop(victim);
          break;
        }
        case "block":
          item.blockedUntil = now() + this.o.blockTimeoutMs;
          this.pending.add(item);
          this.blocked.push(item);
          this.armBlockTimer();
          // Room comes from the service's answers: what is queued goes out now, not after its linger.
          this.schedule();
          return item.outcome!.promise;
      }
    }
    this.pending.add(item);
    this.admit(item);
    return item.outcome!.promise;
  }

  private refuse(entry: NewEntry, error: RejectedError): Promise<Receipt> {
    this.callRejected(error, entry);
    return handled(Promise.reject(error));
  }

  private admit(item: Item): void {
    if (this.o.spool) {
      item.state = State.Spooling;
      this.toSpool.push(item);
      this.kickSpool();
    } else {
      item.seq = this.localSeq++;
      this.makeReady(item, false);
      this.schedule();
    }
  }

  private makeReady(item: Item, front: boolean): void {
    item.state = State.Ready;
    item.readyAt = now();
    this.readyCount++;
    this.readyChars += item.text.length;
    if (front) {
      // Back to the front (a batch refused for a sealed period): keep sequence order there.
      const rest = this.ready.slice(this.readyHead);
      rest.unshift(item);
      this.ready = rest;
      this.readyHead = 0;
    } else {
      this.ready.push(item);
    }
  }

  private oldestDroppable(): Item | undefined {
    for (let i = this.readyHead; i < this.ready.length; i++) {
      const item = this.ready[i]!;
      if (item.state === State.Ready) return item;
    }
    return undefined;
  }

  private drop(item: Item): void {
    this.readyCount--;
    this.readyChars -= item.text.length;
    this.fail(item, new QueueFullError(0, "dropped", `dropped for a newer entry: the queue holds ${this.o.maxQueue} entries`));
  }

  private recover(contents: SpoolContents): void {
    this.nextSeq = Math.max(this.nextSeq, contents.nextSeq);
    for (const batch of contents.batches) {
      const items: Item[] = batch.entries.map((e) => ({
        text: e.entry,
        seq: e.seq,
        bytes: -1,
        state: e.done ? State.Done : State.Sending,
        readyAt: 0,
        outcome: e.done ? undefined : deferred<Receipt>(),
      }));
      for (const item of items) {
        if (item.outcome) {
          handled(item.outcome.promise);
          this.pending.add(item);
        }
      }
      if (items.some((i) => i.state !== State.Done)) {
        this.resend.push({ key: batch.key, items, body: `[${items.map((i) => i.text).join(",")}]`, recovered: true });
      }
    }
    for (const e of contents.entries) {
      const item: Item = { text: e.entry, seq: e.seq, bytes: -1, state: State.Ready, readyAt: 0, outcome: deferred<Receipt>() };
      handled(item.outcome!.promise);
      this.pending.add(item);
      this.makeReady(item, false);
    }
  }

  private kickSpool(): void {
    if (this.spooling) return;
    this.spooling = this.spoolLoop().finally(() => {
      this.spooling = undefined;
      if (this.toSpool.length && !this.stop.signal.aborted) this.kickSpool();
    });
  }

  private async spoolLoop(): Promise<void> {
    try {
      await this.opened;
    } catch {
      return;
    }
    const spool = this.o.spool!;
    while (this.toSpool.length && !this.stop.signal.aborted) {
      const items = this.toSpool.filter((i) => i.state === State.Spooling);
      this.toSpool = [];
      for (const item of items) item.seq = this.nextSeq++;
      for (let attempt = 0; ; attempt++) {
        try {
          await spool.append(items.map((i) => ({ seq: i.seq, entry: i.text })));
          break;
        } catch (e) {
          this.report(e);
          await this.pause(retryDelay(attempt, this.o.retryBaseMs, this.o.retryCapMs, undefined));
          if (this.stop.signal.aborted) {
            // Not spooled: handed back to `stop`, which refuses them.
            this.toSpool.unshift(...items);
            return;
          }
        }
      }
      for (const item of items) {
        if (item.state === State.Spooling) this.makeReady(item, false);
      }
      this.schedule();
    }
  }

  /** Sends what can be sent: recovered batches first, then full batches, or partial ones once they lingered. */
  private schedule(): void {
    if (this.stop.signal.aborted || this.fatal !== undefined || !this.isOpen) return;
    while (this.inflight < this.o.concurrency) {
      let batch = this.resend.shift();
      if (!batch) {
        if (this.readyCount === 0) break;
        const full = this.readyCount >= this.o.maxBatchEntries || this.readyChars >= this.o.maxBatchBytes;
        if (!full && this.flushing === 0 && !this.closed && this.blockedCount === 0) {
          const head = this.peekReady();
          const wait = head ? head.readyAt + this.o.lingerMs - now() : 0;
          if (wait > 0) {
            this.armLinger(wait);
            break;
          }
        }
        batch = this.takeBatch();
        if (!batch) break;
      }
      this.inflight++;
      void this.run(batch).finally(() => {
        this.inflight--;
        this.schedule();
        if (this.inflight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    }
  }

  /**
   * A wait between attempts. It keeps Node running, except once attempts have failed for
   * `holdOpenMs` in a row: then an application that is otherwise done may exit (after the exit
   * flush), rather than wait for the service forever.
   */
  private pause(ms: number): Promise<void> {
    const holdOpen = this.failingSince === undefined || now() - this.failingSince < this.o.holdOpenMs;
    const scope = this.scope();
    return sleep(ms, scope.signal, holdOpen).finally(() => this.scopes.delete(scope));
  }

  /**
   * A controller for one request or wait, aborted when the writer stops. (One listener per request
   * on a controller of its own, rather than many on the writer's signal.)
   */
  private scope(): AbortController {
    const controller = new AbortController();
    if (this.stop.signal.aborted) controller.abort();
    else this.scopes.add(controller);
    return controller;
  }

  private armLinger(wait: number): void {
    const at = now() + wait;
    if (this.lingerTimer !== undefined && this.lingerAt <= at) return;
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerAt = at;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      this.schedule();
    }, wait);
  }

  private peekReady(): Item | undefined {
    while (this.readyHead < this.ready.length) {
      const item = this.ready[this.readyHead]!;
      if (item.state === State.Ready) return item;
      this.readyHead++;
    }
    return undefined;
  }

  private takeBatch(): Batch | undefined {
    const items: Item[] = [];
    let bytes = 2;
    for (;;) {
      if (items.length >= this.o.maxBatchEntries) break;
      const item = this.peekReady();
      if (!item) break;
      if (item.bytes < 0) item.bytes = utf8Length(item.text);
      const next = bytes + item.bytes + (items.length ? 1 : 0);
      if (items.length && next > this.o.maxBatchBytes) break;
      this.readyHead++;
      this.readyCount--;
      this.readyChars -= item.text.length;
      item.state = State.Sending;
      items.push(item);
      bytes = next;
    }
    if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    if (!items.length) return undefined;
    return { key: randomUuid(), items, body: `[${items.map((i) => i.text).join(",")}]`, recovered: false };
  }

  /** Sends one batch until the service has answered for every entry in it (or the writer stops). */
  private async run(batch: Batch): Promise<void> {
    const spool = this.o.spool;
    if (spool && !batch.recovered) {
      for (let attempt = 0; ; attempt++) {
        try {
          await spool.assign({ key: batch.key, seqs: batch.items.map((i) => i.seq) });
          break;
        } catch (e) {
          this.report(e);
          await this.pause(retryDelay(attempt, this.o.retryBaseMs, this.o.retryCapMs, undefined));
          if (this.stop.signal.aborted) return;
        }
      }
    }
    for (let attempt = 0; ; attempt++) {
      if (this.stop.signal.aborted) return;
      let response: RawResponse | undefined;
      const scope = this.scope();
      try {
        response = await this.transport.send("POST", "/audit/logs", {
          body: batch.body,
          headers: { "idempotency-key": batch.key },
          signal: scope.signal,
          refreshOnAnyForbidden: true,
        });
      } catch (e) {
        if (this.stop.signal.aborted) return;
        this.report(e);
      } finally {
        this.scopes.delete(scope);
      }
      if (response) {
        const handledBatch = await this.handle(batch, response);
        if (!handledBatch.retry) {
          this.failingSince = undefined;
          return;
        }
        this.failingSince ??= now();
        const delay = retryDelay(attempt, this.o.retryBaseMs, this.o.retryCapMs, handledBatch.retryAfter);
        await this.pause(Math.min(delay, handledBatch.capMs ?? Infinity));
      } else {
        this.failingSince ??= now();
        await this.pause(retryDelay(attempt, this.o.retryBaseMs, this.o.retryCapMs, undefined));
      }
    }
  }

  /** One answer to a batch: settles what it settles; says whether to send the same body again. */
  private async handle(batch: Batch, response: RawResponse): Promise<Handled> {
    const { status } = response;
    const retryAfter = () => parseRetryAfter(response.headers.get("retry-after"));
    if (status === 401 || status === 403) {
      // A refused credential (either shape; the token provider, if any, was asked once already and
      // the request sent again): something operators fix — a rotated key, a token the provider
      // renews, an authorizer outage. The entries stay queued (and spooled) and the same body goes
      // again under the same key, at most AUTH_RETRY_CAP_MS apart; each refusal goes to onError.
      this.refusedBy = response;
      this.report(apiError(response));
      return { retry: true, retryAfter: retryAfter(), capMs: AUTH_RETRY_CAP_MS };
    }
    this.refusedBy = undefined;
    if (status === 201 || status === 207) {
      let result: BatchResult;
      try {
        result = JSON.parse(response.text) as BatchResult;
        if (!Array.isArray(result.results)) throw new Error("no results");
      } catch {
        // Headers came whole but the body did not parse: ask again, the answer is replayed.
        return { retry: true, retryAfter: undefined };
      }
      const done: Item[] = [];
      const sealed: Item[] = [];
      const fills: Array<Promise<void>> = [];
      const answered = new Set<Item>();
      let retryable = false;
      result.results.forEach((r: BatchItem, position) => {
        const item = batch.items[typeof r.index === "number" ? r.index : position];
        if (!item || item.state === State.Done) return;
        answered.add(item);
        if (r.status === 201 && r.entry) {
          done.push(item);
          fills.push(this.stored(item, r.entry));
        } else if (r.status === 202) {
          done.push(item);
          this.fail(item, new RejectedError(202, "disabled", "audit logging is disabled on the service; nothing was stored"));
        } else if (r.status === 429 || r.status >= 500) {
          retryable = true;
        } else if (r.error?.code === "period_sealed") {
          sealed.push(item);
        } else {
          done.push(item);
          this.fail(item, RejectedError.fromBody(r.status, r.error));
        }
      });
      // An entry the answer does not speak for (it never should) is asked about again.
      if (batch.items.some((i) => i.state === State.Sending && !sealed.includes(i) && !answered.has(i))) retryable = true;
      await Promise.all(fills);
      await this.complete(done);
      if (retryable) return { retry: true, retryAfter: retryAfter() };
      await this.finish(batch, sealed);
      return { retry: false };
    }
    if (status === 202) {
      const done = batch.items.filter((i) => i.state !== State.Done);
      for (const item of done) {
        this.fail(item, new RejectedError(202, "disabled", "audit logging is disabled on the service; nothing was stored"));
      }
      await this.complete(done);
      await this.finish(batch, []);
      return { retry: false };
    }
    const body = errorBody(response);
    if (status === 409 && body?.code === "period_sealed") {
      await this.finish(batch, batch.items.filter((i) => i.state !== State.Done));
      return { retry: false };
    }
    if (
      isRetryableStatus(status) ||
      status >= 500 ||
      status === 408 ||
      status === 404 ||
      (status === 409 && body?.code === "idempotency_in_progress")
    ) {
      // Throttled, unavailable, a key still in progress, or a route problem: the entries stay
      // queued (and spooled) and the same body goes again under the same key.
      if (!(status === 409 || status === 429 || status === 503)) this.report(apiError(response));
      return { retry: true, retryAfter: retryAfter() };
    }
    // Refused for good (400, 413, 422, ...): every entry of the batch gets the error.
    const error = RejectedError.fromBody(status, body);
    const done = batch.items.filter((i) => i.state !== State.Done);
    for (const item of done) this.fail(item, error);
    await this.complete(done);
    await this.finish(batch, []);
    return { retry: false };
  }

  /** An entry stored: its receipt, reading the entry back if the answer was a compact replay. */
  private async stored(item: Item, entry: Partial<AuditLogEntry> & { id: string }): Promise<void> {
    let full: Partial<AuditLogEntry> = entry;
    if (!entry.integrity?.leaf_hash || !entry.timestamp) {
      const scope = this.scope();
      try {
        full = await this.transport.readJson<AuditLogEntry>(
          `/audit/logs/${encodeURIComponent(entry.id)}`,
          { signal: scope.signal },
          this.o.readRetry,
        );
      } catch {
        full = entry;
      } finally {
        this.scopes.delete(scope);
      }
    }
    const receipt: Receipt = {
      id: entry.id,
      timestamp: full.timestamp ?? uuidV7Time(entry.id) ?? "",
      leafHash: full.integrity?.leaf_hash ?? null,
    };
    this.settle(item, receipt);
  }

  private async complete(items: Item[]): Promise<void> {
    const spool = this.o.spool;
    if (!spool || !items.length) return;
    try {
      await spool.complete(items.map((i) => i.seq));
    } catch (e) {
      // Not recorded: after a restart the batch goes again under its key and is answered by replay.
      this.report(e);
    }
  }

  /** A batch is over: entries refused for a sealed period go back to the queue, for a new key. */
  private async finish(batch: Batch, sealed: Item[]): Promise<void> {
    if (this.o.spool) {
      try {
        await this.o.spool.release(batch.key);
      } catch (e) {
        this.report(e);
      }
    }
    for (const item of sealed.reverse()) {
      if (item.state === State.Sending) this.makeReady(item, true);
    }
  }

  private settle(item: Item, receipt: Receipt): void {
    if (item.state === State.Done) return;
    item.state = State.Done;
    this.pending.delete(item);
    item.outcome?.resolve(receipt);
    if (this.o.onStored) {
      try {
        this.o.onStored(receipt, JSON.parse(item.text) as NewEntry);
      } catch (e) {
        this.report(e);
      }
    }
    this.admitBlocked();
  }

  private fail(item: Item, error: unknown, entry?: NewEntry): void {
    if (item.state === State.Done) return;
    item.state = State.Done;
    this.pending.delete(item);
    item.outcome?.reject(error);
    if (error instanceof RejectedError) this.callRejected(error, entry ?? (JSON.parse(item.text) as NewEntry));
    this.admitBlocked();
  }

  private callRejected(error: RejectedError, entry: NewEntry): void {
    if (this.o.onRejected) {
      try {
        this.o.onRejected(error, entry);
      } catch (e) {
        this.report(e);
      }
    } else {
      console.warn(`auditline: entry refused (${error.code}): ${error.message}`);
    }
  }

  private admitBlocked(): void {
    while (this.blockedCount && this.pending.size - this.blockedCount < this.o.maxQueue && !this.closed) {
      const item = this.blocked[this.blockedHead++]!;
      if (item.state === State.Blocked) this.admit(item);
    }
    if (this.blockedHead > 1024 && this.blockedHead * 2 > this.blocked.length) {
      this.blocked = this.blocked.slice(this.blockedHead);
      this.blockedHead = 0;
    }
  }

  /** Times out the entries that waited for room longer than `blockTimeoutMs` (they wait in order). */
  private armBlockTimer(): void {
    if (this.blockTimer !== undefined || !Number.isFinite(this.o.blockTimeoutMs) || this.closed) return;
    const head = this.blocked[this.blockedHead];
    if (!head) return;
    this.blockTimer = setTimeout(() => {
      this.blockTimer = undefined;
      this.expireBlocked();
    }, Math.max(0, head.blockedUntil! - now()));
    // A deadline only: the entries' own requests and retries keep Node running while it matters.
    (this.blockTimer as { unref?: () => void }).unref?.();
  }

  private expireBlocked(): void {
    const t = now();
    const expired: Item[] = [];
    while (this.blockedCount) {
      const item = this.blocked[this.blockedHead]!;
      if (item.state === State.Blocked && item.blockedUntil! > t) break;
      this.blockedHead++;
      if (item.state === State.Blocked) expired.push(item);
    }
    for (const item of expired) {
      this.fail(
        item,
        new QueueFullError(0, "queue_full", `the queue held ${this.o.maxQueue} entries for ${this.o.blockTimeoutMs} ms; no room came`),
      );
    }
    this.armBlockTimer();
  }

  private get blockedCount(): number {
    return this.blocked.length - this.blockedHead;
  }

  report(error: unknown): void {
    if (!this.o.onError) return;
    try {
      this.o.onError(error);
    } catch {
      // a failing error callback must not break the writer
    }
  }

  /** Resolves once every entry queued so far is in the spool (at once without a spool). */
  async spooled(): Promise<void> {
    try {
      await this.opened;
    } catch {
      return;
    }
    while ((this.toSpool.length || this.spooling) && !this.stop.signal.aborted) {
      if (this.spooling) await this.spooling;
      else this.kickSpool();
    }
  }

  /** Waits until every entry queued before the call is stored or refused. */
  async flush(timeoutMs?: number): Promise<void> {
    try {
      await this.opened;
    } catch {
      return;
    }
    const targets = [...this.pending].map((i) => i.outcome!.promise);
    if (!targets.length) return;
    // Entries still to be admitted (blocked) go too: flushing sends partial batches at once.
    this.flushing++;
    this.schedule();
    try {
      await withTimeout(Promise.allSettled(targets), timeoutMs, () => {
        return new TimeoutError(`flush: ${this.pending.size} entries not delivered in ${timeoutMs} ms`, this.pending.size);
      });
    } finally {
      this.flushing--;
    }
  }

  /**
   * Stops taking entries, delivers what it can within `timeoutMs`, then stops: requests still
   * running are abandoned (a spool keeps their entries and keys for the next client), and what was
   * not delivered is refused with ClosedError — or, without a spool while the service refuses the
   * credential, with the AuthError that last refused it. Answers how many entries were not delivered.
   */
  async close(timeoutMs: number): Promise<number> {
    this.closed = true;
    // Entries waiting for room are admitted now: they were logged before the close.
    const waiting = this.blocked.slice(this.blockedHead);
    this.blocked = [];
    this.blockedHead = 0;
    for (const item of waiting) if (item.state === State.Blocked) this.admit(item);
    this.schedule();
    try {
      await this.flush(timeoutMs);
    } catch (e) {
      if (!(e instanceof TimeoutError)) this.report(e);
    }
    this.stop.abort();
    for (const scope of this.scopes) scope.abort();
    this.scopes.clear();
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    if (this.blockTimer !== undefined) clearTimeout(this.blockTimer);
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.spooling) await this.spooling;
    const left = [...this.pending];
    const spooled = this.o.spool !== undefined;
    // Without a spool, entries held back by a refused credential are refused with its AuthError.
    const refusedBy = spooled ? undefined : this.refusedBy;
    for (const item of left) {
      if (refusedBy) {
        this.fail(item, apiError(refusedBy));
        continue;
      }
      const kept = spooled && item.seq >= 0 && item.state !== State.Spooling && item.state !== State.Blocked;
      this.fail(
        item,
        new ClosedError(
          kept
            ? "the client closed before the service answered; the entry is kept in the spool for the next client"
            : "the client closed before the entry was delivered",
        ),
      );
    }
    if (this.o.spool) {
      try {
        await this.opened;
        await this.o.spool.close();
      } catch (e) {
        this.report(e);
      }
    }
    return left.length;
  }
}

function now(): number {
  return Date.now();
}

/** Marks a promise as handled, so that one nobody awaits never becomes an unhandled rejection. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number | undefined, error: () => Error): Promise<T> {
  if (timeoutMs === undefined || !Number.isFinite(timeoutMs)) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        // Not unref'd: a flush with a deadline keeps Node alive until it is over (exit flush).
        timer = setTimeout(() => reject(error()), timeoutMs);
      }),
    ]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
