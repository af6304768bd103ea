// FileSpool: the client's queue in a directory, crash-safe. Node only.
//
// One append-only log file, `spool.log`: a line per record, `<crc32 hex> <json>\n`, where the JSON
// is one of
//   ["e", seq, entryText]   an entry was queued
//   ["b", key, [seq, ...]]  a batch: these entries are sent, in this order, under this key
//   ["d", [seq, ...]]       these entries are done (stored, or refused for good)
//   ["r", key]              the batch is over (its entries not done go back to the queue)
// Each group of records is written with one write() and made durable with fdatasync() before the
// call that asked for it resolves. On opening, the log is read up to its last whole, checksummed
// line and rewritten (compacted) to what is still live; it is also compacted while running when it
// has grown well past what it holds. A lock file keeps a second process off the same directory.

import { promises as fs } from "node:fs";
import * as path from "node:path";

import type { RecoveredBatch, SpoolBatch, SpoolContents, SpoolEntry, SpoolStore } from "./spool.js";

export interface FileSpoolOptions {
  /** Compact the log once it is larger than this and mostly dead (default 4 MiB). */
  compactBytes?: number;
}

interface Write {
  text: string;
  apply: () => void;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const held = new Set<string>();

export class FileSpool implements SpoolStore {
  readonly dir: string;
  private readonly logPath: string;
  private readonly lockPath: string;
  private readonly compactBytes: number;
  private file: fs.FileHandle | undefined;
  /** Texts of entries not done, or done but in a batch not released. */
  private readonly entries = new Map<number, string>();
  private readonly done = new Set<number>();
  private readonly batches = new Map<string, number[]>();
  private readonly inBatch = new Map<number, string>();
  private liveChars = 0;
  private size = 0;
  private nextSeq = 1;
  private queue: Write[] = [];
  private writing: Promise<void> | undefined;
  private locked = false;
  private closed = false;

  constructor(dir: string, options: FileSpoolOptions = {}) {
    this.dir = path.resolve(dir);
    this.logPath = path.join(this.dir, "spool.log");
    this.lockPath = path.join(this.dir, "lock");
    this.compactBytes = options.compactBytes ?? 4 * 1024 * 1024;
  }

  /** Entries the spool holds that are not done. */
  get length(): number {
    return this.entries.size - this.done.size;
  }

  async open(): Promise<SpoolContents> {
    await fs.mkdir(this.dir, { recursive: true });
    await this.lock();
    try {
      let data: Buffer;
      try {
        data = await fs.readFile(this.logPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        data = Buffer.alloc(0);
      }
      this.replay(data);
      // Batches whose entries are all done are over, whether or not their release was recorded.
      for (const [key, seqs] of [...this.batches]) {
        if (seqs.every((s) => this.done.has(s))) this.applyRelease(key);
      }
      const contents = this.contents();
      await this.rewrite();
      return contents;
    } catch (e) {
      await this.unlock();
      throw e;
    }
  }

  append(entries: SpoolEntry[]): Promise<void> {
    if (!entries.length) return Promise.resolve();
    const text = entries.map((e) => line(["e", e.seq, e.entry])).join("");
    return this.write(text, () => {
      for (const e of entries) {
        this.entries.set(e.seq, e.entry);
        this.liveChars += e.entry.length;
        if (e.seq >= this.nextSeq) this.nextSeq = e.seq + 1;
      }
    });
  }

  assign(batch: SpoolBatch): Promise<void> {
    return this.write(line(["b", batch.key, batch.seqs]), () => {
      this.batches.set(batch.key, [...batch.seqs]);
      for (const seq of batch.seqs) this.inBatch.set(seq, batch.key);
    });
  }

  complete(seqs: number[]): Promise<void> {
    if (!seqs.length) return Promise.resolve();
    return this.write(line(["d", seqs]), () => this.applyDone(seqs));
  }

  release(key: string): Promise<void> {
    return this.write(line(["r", key]), () => this.applyRelease(key));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writing) await this.writing;
    if (this.file) {
      await this.file.close();
      this.file = undefined;
    }
    await this.unlock();
  }

  // ---- state ----

  private replay(data: Buffer): void {
    let start = 0;
    let good = 0;
    while (start < data.length) {
      const end = data.indexOf(10, start);
      if (end < 0) break; // a torn last line
      const text = data.toString("utf8", start, end);
      start = end + 1;
      const space = text.indexOf(" ");
      const json = text.slice(space + 1);
      if (space !== 8 || text.slice(0, 8) !== crc32Hex(json)) continue; // damaged: skip it
      let record: unknown[];
      try {
        record = JSON.parse(json) as unknown[];
      } catch {
        continue;
      }
      this.applyRecord(record);
      good = start;
    }
    this.size = good;
  }

  private applyRecord(record: unknown[]): void {
    switch (record[0]) {
      case "e": {
        const seq = record[1] as number;
        const text = record[2] as string;
        this.entries.set(seq, text);
        this.liveChars += text.length;
        if (seq >= this.nextSeq) this.nextSeq = seq + 1;
        break;
      }
      case "b": {
        const key = record[1] as string;
        const seqs = record[2] as number[];
        this.batches.set(key, seqs);
        for (const seq of seqs) this.inBatch.set(seq, key);
        break;
      }
      case "d":
        this.applyDone(record[1] as number[]);
        break;
      case "r":
        this.applyRelease(record[1] as string);
        break;
      case "n":
        this.nextSeq = Math.max(this.nextSeq, record[1] as number);
        break;
      default:
        break;
    }
  }

  private applyDone(seqs: number[]): void {
    for (const seq of seqs) {
      if (!this.entries.has(seq)) continue;
      if (this.inBatch.has(seq)) this.done.add(seq);
      else this.forget(seq);
    }
  }

  private applyRelease(key: string): void {
    const seqs = this.batches.get(key);
    if (!seqs) return;
    this.batches.delete(key);
    for (const seq of seqs) {
      if (this.inBatch.get(seq) === key) this.inBatch.delete(seq);
      if (this.done.has(seq) && !this.inBatch.has(seq)) this.forget(seq);
    }
  }

  private forget(seq: number): void {
    const text = this.entries.get(seq);
    if (text !== undefined) this.liveChars -= text.length;
    this.entries.delete(seq);
    this.done.delete(seq);
  }

  private contents(): SpoolContents {
    const batches: RecoveredBatch[] = [];
    for (const [key, seqs] of this.batches) {
      const entries = seqs
        .filter((seq) => this.entries.has(seq))
        .map((seq) => ({ seq, entry: this.entries.get(seq)!, done: this.done.has(seq) }));
      if (entries.length === seqs.length) batches.push({ key, entries });
    }
    const free = [...this.entries.keys()]
      .filter((seq) => !this.inBatch.has(seq) && !this.done.has(seq))
      .sort((a, b) => a - b)
      .map((seq) => ({ seq, entry: this.entries.get(seq)! }));
    return { batches, entries: free, nextSeq: this.nextSeq };
  }

  /** The log rewritten to what is live: to a temporary file, synced, renamed over, directory synced. */
  private async rewrite(): Promise<void> {
    const lines: string[] = [];
    for (const seq of [...this.entries.keys()].sort((a, b) => a - b)) lines.push(line(["e", seq, this.entries.get(seq)!]));
    for (const [key, seqs] of this.batches) lines.push(line(["b", key, seqs]));
    if (this.done.size) lines.push(line(["d", [...this.done].sort((a, b) => a - b)]));
    // Keep the sequence counter even when nothing is left: a no-op record carrying it.
    lines.push(line(["n", this.nextSeq]));
    const text = lines.join("");
    const temporary = `${this.logPath}.tmp`;
    const handle = await fs.open(temporary, "w");
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (this.file) {
      await this.file.close();
      this.file = undefined;
    }
    await fs.rename(temporary, this.logPath);
    await syncDirectory(this.dir);
    this.file = await fs.open(this.logPath, "a");
    this.size = Buffer.byteLength(text);
  }

  // ---- writing ----

  private write(text: string, apply: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`spool ${this.dir} is closed`));
    if (!this.locked) return Promise.reject(new Error(`spool ${this.dir} is not open`));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ text, apply, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      // Writes queued between the drain's last look and now.
      if (this.queue.length) this.kick();
    });
  }

  /** Group commit: whatever queued while the last sync ran goes in one write and one sync. */
  private async drain(): Promise<void> {
    while (this.queue.length) {
      const group = this.queue.splice(0);
      const data = Buffer.from(group.map((w) => w.text).join(""), "utf8");
      try {
        await this.file!.write(data, 0, data.length);
        await this.file!.datasync();
        this.size += data.length;
      } catch (e) {
        // Cut back whatever part of the group reached the file, so the next write starts a line.
        await this.file!.truncate(this.size).catch(() => undefined);
        for (const w of group) w.reject(e);
        continue;
      }
      for (const w of group) {
        w.apply();
        w.resolve();
      }
      if (this.shouldCompact()) {
        try {
          await this.rewrite();
        } catch {
          // the log as it is remains valid; try again later
          if (!this.file) this.file = await fs.open(this.logPath, "a");
        }
      }
    }
  }

  private shouldCompact(): boolean {
    if (this.entries.size === 0 && this.batches.size === 0) return this.size > 64 * 1024;
    return this.size > this.compactBytes && this.liveChars * 4 < this.size;
  }

  // ---- lock ----

  private async lock(): Promise<void> {
    if (held.has(this.dir)) throw new Error(`spool ${this.dir} is already open in this process`);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const handle = await fs.open(this.lockPath, "wx");
        try {
          await handle.writeFile(String(process.pid));
          await handle.sync();
        } finally {
          await handle.close();
        }
        held.add(this.dir);
        this.locked = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const owner = Number((await fs.readFile(this.lockPath, "utf8").catch(() => "")).trim());
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new Error(`spool ${this.dir} is in use by process ${owner}`);
      }
      // Left by a process that is gone: take it over.
      await fs.rm(this.lockPath, { force: true });
    }
    throw new Error(`spool ${this.dir}: could not take its lock`);
  }

  private async unlock(): Promise<void> {
    if (!this.locked) return;
    this.locked = false;
    held.delete(this.dir);
    await fs.rm(this.lockPath, { force: true });
  }
}

function line(record: unknown[]): string {
  const json = JSON.stringify(record);
  return `${crc32Hex(json)} ${json}\n`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function syncDirectory(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, "r");
    await handle.sync();
  } catch {
    // some platforms cannot sync a directory
  } finally {
    await handle?.close();
  }
}

let table: Uint32Array | undefined;

/** CRC-32 (IEEE) of a string's UTF-8 bytes, as 8 hex digits. */
export function crc32Hex(text: string): string {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  const bytes = Buffer.from(text, "utf8");
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return ((crc ^ 0xffffffff) >>> 0).toString(16).padStart(8, "0");
}
