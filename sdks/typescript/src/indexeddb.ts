// IndexedDbSpool: the client's queue in the browser's IndexedDB (optional).
//
// Three object stores: `entries` ({seq, entry, done}), `batches` ({key, seqs}) and `meta` (the
// sequence counter). Every call is one
// readwrite transaction with durability "strict", and resolves when the transaction completes.
// One client per database: where the Web Locks API exists, the spool holds a lock named after the
// database while open, and a second tab's open() is refused, so two tabs never send the same
// entries. Not exercised by the Node test suite (Node has no IndexedDB); it is type-checked there.

import type { RecoveredBatch, SpoolBatch, SpoolContents, SpoolEntry, SpoolStore } from "./spool.js";

export interface IndexedDbSpoolOptions {
  /** The IDBFactory to use (default: the global `indexedDB`). */
  indexedDB?: IDBFactory;
}

interface EntryRow {
  seq: number;
  entry: string;
  done: boolean;
}

interface BatchRow {
  key: string;
  seqs: number[];
}

interface LockManagerLike {
  request(
    name: string,
    options: { ifAvailable: boolean },
    callback: (lock: unknown) => Promise<void>,
  ): Promise<void>;
}

export class IndexedDbSpool implements SpoolStore {
  readonly name: string;
  private readonly factory: IDBFactory;
  private db: IDBDatabase | undefined;
  private readonly inBatch = new Map<number, string>();
  private readonly batches = new Map<string, number[]>();
  private readonly done = new Set<number>();
  private releaseLock: (() => void) | undefined;

  constructor(name = "auditline-spool", options: IndexedDbSpoolOptions = {}) {
    this.name = name;
    const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!factory) throw new Error("IndexedDbSpool: this platform has no indexedDB");
    this.factory = factory;
  }

  async open(): Promise<SpoolContents> {
    await this.lock();
    this.db = await new Promise<IDBDatabase>((resolve, reject) => {
      const request = this.factory.open(this.name, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains("entries")) db.createObjectStore("entries", { keyPath: "seq" });
        if (!db.objectStoreNames.contains("batches")) db.createObjectStore("batches", { keyPath: "key" });
        if (!db.objectStoreNames.contains("meta")) db.createObjectStore("meta");
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const [entries, batches, seen] = await this.transaction(["entries", "batches", "meta"], "readonly", (tx) =>
      Promise.all([
        result<EntryRow[]>(tx.objectStore("entries").getAll()),
        result<BatchRow[]>(tx.objectStore("batches").getAll()),
        result<number | undefined>(tx.objectStore("meta").get("nextSeq")),
      ]),
    );
    const bySeq = new Map(entries.map((row) => [row.seq, row]));
    let nextSeq = seen ?? 1;
    for (const row of entries) {
      nextSeq = Math.max(nextSeq, row.seq + 1);
      if (row.done) this.done.add(row.seq);
    }
    const recovered: RecoveredBatch[] = [];
    for (const batch of batches) {
      const rows = batch.seqs.map((seq) => bySeq.get(seq));
      if (rows.some((row) => row === undefined) || rows.every((row) => row!.done)) continue;
      this.batches.set(batch.key, batch.seqs);
      for (const seq of batch.seqs) this.inBatch.set(seq, batch.key);
      recovered.push({ key: batch.key, entries: rows.map((row) => ({ seq: row!.seq, entry: row!.entry, done: row!.done })) });
    }
    const free = entries
      .filter((row) => !row.done && !this.inBatch.has(row.seq))
      .sort((a, b) => a.seq - b.seq)
      .map((row) => ({ seq: row.seq, entry: row.entry }));
    return { batches: recovered, entries: free, nextSeq };
  }

  append(entries: SpoolEntry[]): Promise<void> {
    return this.transaction(["entries", "meta"], "readwrite", async (tx) => {
      const store = tx.objectStore("entries");
      for (const e of entries) store.put({ seq: e.seq, entry: e.entry, done: false } satisfies EntryRow);
      // The sequence counter outlives the entries: numbers are never given twice.
      const highest = entries.reduce((max, e) => Math.max(max, e.seq), 0);
      if (highest) tx.objectStore("meta").put(highest + 1, "nextSeq");
    });
  }

  assign(batch: SpoolBatch): Promise<void> {
    return this.transaction(["batches"], "readwrite", async (tx) => {
      tx.objectStore("batches").put({ key: batch.key, seqs: batch.seqs } satisfies BatchRow);
    }).then(() => {
      this.batches.set(batch.key, [...batch.seqs]);
      for (const seq of batch.seqs) this.inBatch.set(seq, batch.key);
    });
  }

  async complete(seqs: number[]): Promise<void> {
    await this.transaction(["entries"], "readwrite", async (tx) => {
      const store = tx.objectStore("entries");
      for (const seq of seqs) {
        if (this.inBatch.has(seq)) {
          const row = await result<EntryRow | undefined>(store.get(seq));
          if (row) store.put({ ...row, done: true });
        } else {
          store.delete(seq);
        }
      }
    });
    for (const seq of seqs) if (this.inBatch.has(seq)) this.done.add(seq);
  }

  async release(key: string): Promise<void> {
    const seqs = this.batches.get(key) ?? [];
    await this.transaction(["entries", "batches"], "readwrite", async (tx) => {
      tx.objectStore("batches").delete(key);
      const store = tx.objectStore("entries");
      for (const seq of seqs) if (this.done.has(seq)) store.delete(seq);
    });
    this.batches.delete(key);
    for (const seq of seqs) {
      if (this.inBatch.get(seq) === key) this.inBatch.delete(seq);
      this.done.delete(seq);
    }
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = undefined;
    this.releaseLock?.();
    this.releaseLock = undefined;
  }

  private async lock(): Promise<void> {
    const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
    if (!locks) return;
    await new Promise<void>((acquired, refused) => {
      void locks
        .request(`auditline-spool:${this.name}`, { ifAvailable: true }, (lock) => {
          if (lock === null) {
            refused(new Error(`IndexedDbSpool ${this.name} is in use by another tab or worker`));
            return Promise.resolve();
          }
          acquired();
          return new Promise<void>((release) => {
            this.releaseLock = release;
          });
        })
        .catch(refused);
    });
  }

  private transaction<T>(
    stores: string[],
    mode: IDBTransactionMode,
    work: (tx: IDBTransaction) => Promise<T>,
  ): Promise<T> {
    const db = this.db;
    if (!db) return Promise.reject(new Error("IndexedDbSpool is not open"));
    const tx = db.transaction(stores, mode, { durability: "strict" });
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
    return Promise.all([work(tx), done]).then(([value]) => value);
  }
}

function result<T>(request: IDBRequest): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    request.onsuccess = () => resolve(request.result as T);
    request.onerror = () => reject(request.error);
  });
}
