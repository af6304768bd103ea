// The spool: where queued entries are kept durably until the service has answered for them.

/** One queued entry: its sequence number and its JSON text, exactly as it is sent. */
export interface SpoolEntry {
  seq: number;
  entry: string;
}

/** A batch: the key it is sent under and its entries, in the order of the request body. */
export interface SpoolBatch {
  key: string;
  seqs: number[];
}

/** A batch found on opening: its entries' texts (to rebuild the very same body) and which are done. */
export interface RecoveredBatch {
  key: string;
  entries: Array<SpoolEntry & { done: boolean }>;
}

/** What a spool holds when it is opened. */
export interface SpoolContents {
  /** Batches sent (or about to be) and not over: to be sent again, same body, same key. */
  batches: RecoveredBatch[];
  /** Entries not done and in no open batch, in sequence order. */
  entries: SpoolEntry[];
  /** The sequence number to give the next entry (above every one the spool has seen). */
  nextSeq: number;
}

/**
 * A durable store for the client's queue. Each method's promise resolves only once what it
 * records would survive a crash of the process (or the machine, for stores that can promise it).
 * The client calls them in this order for an entry: `append`, `assign` (before the batch is sent),
 * `complete` (stored or refused for good), `release` (the batch is over). An entry counts as queued
 * once `append` has resolved.
 *
 * A store keeps an entry's text while the entry is not done, or while a batch that holds it is not
 * released (the batch may have to be sent again, byte for byte, under its key).
 */
export interface SpoolStore {
  /** Opens the store (takes any lock it needs) and reads what a previous client left. */
  open(): Promise<SpoolContents>;
  /** Records new entries. */
  append(entries: SpoolEntry[]): Promise<void>;
  /** Records that these entries are sent, in this order, under this key. */
  assign(batch: SpoolBatch): Promise<void>;
  /** Records that these entries are done: stored, or refused for good. */
  complete(seqs: number[]): Promise<void>;
  /** Records that a batch is over: its entries not done go back to the queue (under a new key). */
  release(key: string): Promise<void>;
  /** Closes the store (and releases its lock). */
  close(): Promise<void>;
}
