// Small platform-neutral helpers (no Node or DOM module imports: this file runs in both).

interface CryptoLike {
  randomUUID?: () => string;
  getRandomValues?: <T extends ArrayBufferView>(array: T) => T;
}

/** A random (v4) UUID: WebCrypto's `randomUUID` where there is one, else from random bytes. */
export function randomUuid(): string {
  const crypto = (globalThis as { crypto?: CryptoLike }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (crypto?.getRandomValues) {
    crypto.getRandomValues(bytes);
  } else {
    // Node 18 without the global: reached only there, and only if node:crypto did not load.
    for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Node 18 has WebCrypto only as `node:crypto`'s `webcrypto`: install it as the global once. */
export async function ensureCrypto(): Promise<void> {
  const g = globalThis as { crypto?: CryptoLike; process?: { versions?: { node?: string } } };
  if (g.crypto?.randomUUID || !g.process?.versions?.node) return;
  try {
    const specifier = "node:crypto";
    const mod = (await import(/* webpackIgnore: true */ specifier)) as { webcrypto?: CryptoLike };
    if (mod.webcrypto && !g.crypto) {
      Object.defineProperty(globalThis, "crypto", { value: mod.webcrypto, configurable: true });
    }
  } catch {
    // keep the fallback
  }
}

/**
 * Waits `ms`, or until `signal` aborts (then resolves early). With `keepAlive` false the timer does
 * not keep Node running.
 */
export function sleep(ms: number, signal?: AbortSignal, keepAlive = true): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    if (!keepAlive) unref(timer);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** `timer.unref()` where timers have it (Node), so that a pending retry does not hold the process. */
export function unref(timer: unknown): void {
  const t = timer as { unref?: () => void } | undefined;
  if (t && typeof t.unref === "function") t.unref();
}

/** Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2^attempt)]. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.random() * ceiling;
}

/**
 * The wait before the next attempt: full-jitter backoff, but never less than the service's
 * `Retry-After` (seconds) when it sent one — plus a little jitter then, so that the clients it
 * told the same do not all come back at once.
 */
export function retryDelay(attempt: number, baseMs: number, capMs: number, retryAfter: number | undefined): number {
  const jittered = backoffDelay(attempt, baseMs, capMs);
  if (retryAfter === undefined) return jittered;
  return Math.max(jittered, retryAfter * 1000 + Math.random() * Math.min(baseMs, 250));
}

/** `Retry-After` in seconds (delta-seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 3600);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, (at - Date.now()) / 1000), 3600);
}

/** UTF-8 length of a string, without allocating. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** The instant a UUIDv7 was made, as the service writes timestamps (ISO 8601, milliseconds, Z). */
export function uuidV7Time(id: string): string | undefined {
  const hex = id.replace(/-/g, "");
  if (hex.length !== 32 || hex[12] !== "7") return undefined;
  const ms = parseInt(hex.slice(0, 12), 16);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

/** A date filter as the service takes it: ISO 8601 text as given, or a Date in UTC. */
export function dateParam(value: string | Date | undefined): string | undefined {
  if (value === undefined) return undefined;
  return value instanceof Date ? value.toISOString() : value;
}

/** A promise with its settle functions. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
