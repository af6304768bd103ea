//! The embedded store: one SQLite file (SQLite compiled in) for every port the local gateway keeps —
//! entries with the indexes DynamoDB's GSIs give, hourly counters, seal state, checkpoints and
//! tiles, API keys, idempotency records. Live connections stay in memory (they die with the
//! process).
//!
//! Durability: WAL with `synchronous=FULL`, so a commit is on disk when it returns. One writer
//! thread takes every write and commits them in groups (what arrived while the last commit was
//! syncing, up to [`GROUP`]): concurrent POSTs share one fsync. Each write runs in its own
//! savepoint, so one refused write (an id that exists, a sealed period) rolls back alone. Reads run
//! on a small pool of connections in parallel with the writer (WAL readers see the last commit).
//!
//! The same semantics as the other adapters: a put never overwrites, counters move in the same
//! transaction as the entry, a sealed period refuses writes, expired entries are invisible to reads
//! and removed in the background in bounded steps (as DynamoDB's TTL does).
//!
//! The schema carries its version (`PRAGMA user_version`); migrations run at open. A file that is
//! not a database of this schema (garbage, truncated, a newer version) is refused by name: the
//! store never starts empty over it.

mod api_keys;
mod archive_keys;
mod entries;
mod idempotency;
mod policies;
mod seal;
mod streams;

pub use streams::Unrouted;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::backend::BackendError;

/// The database's file name in a data directory (the local gateway's `--data-dir`).
pub const DATABASE_FILE: &str = "auditline.db";
/// The schema this code writes; older files are migrated at open, newer ones refused.
pub const SCHEMA_VERSION: i64 = 6;
/// Writes committed together at most.
pub const GROUP: usize = 256;
/// Read connections.
const READERS: usize = 4;
/// Page cache of the writer, in KiB. Every entry touches a leaf of each of six indexes, spread
/// over the entity, user and project ranges; SQLite's default (2 MB) holds too few of them and
/// the writer spends its time re-reading pages from the OS.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Page cache of each reader, in KiB (a page of 50 entries touches tens of pages).
const READER_CACHE_KIB: i64 = 8 * 1024;
/// Expired entries (and their index rows) removed per background step.
pub const PURGE_STEP: usize = 1_000;

/// Why a database file cannot be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("{path}: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Why a write's closure did not complete: SQLite failed, or the write was refused (its savepoint
/// rolled back) for a reason the caller names.
#[derive(Debug, Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// Refused for a reason the caller names (an existing id, a sealed period).
    #[error("refused")]
    Refused(Box<dyn Any + Send>),
}

type Work = Box<dyn FnOnce(&Connection) -> Result<Box<dyn Any + Send>, WriteError> + Send>;

struct Job {
    work: Work,
    done: oneshot::Sender<Result<Box<dyn Any + Send>, WriteOutcome>>,
}

/// How a write that did not commit ended.
enum WriteOutcome {
    Refused(Box<dyn Any + Send>),
    Failed(BackendError),
}

/// The SQLite store. Cheap to clone: clones share the file, the writer and the readers.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Transactions the writer committed (group commit: fewer than the writes).
    commits: Arc<std::sync::atomic::AtomicU64>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    /// Signalled when a reader is put back.
    returned: std::sync::Condvar,
    /// Set by [`SqliteStore::close`]: readers are closed as they come back.
    closed: std::sync::atomic::AtomicBool,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tenants' policies as last read or written: one process holds the file (the data
    /// directory's lock), so every write goes through here and the copy stays true.
    policies: Mutex<std::collections::HashMap<String, (crate::retention::TenantPolicy, u64)>>,
}

/// Maps SQLite's errors to the port's: a full disk or a busy file is retryable (503 with
/// Retry-After), anything else internal.
pub(crate) fn backend(e: &rusqlite::Error) -> BackendError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => BackendError::Unavailable("the disk is full".into()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            BackendError::Throttled("the database is busy".into())
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
            BackendError::Unavailable(format!("the database file could not be written: {e}"))
        }
        _ => BackendError::Internal(format!("sqlite: {e}")),
    }
}

fn open_connection(path: &Path, flags: OpenFlags, cache_kib: Option<i64>) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    if let Some(kib) = cache_kib {
        // Negative: a size in KiB rather than in pages. (It reads the file: set only once checked.)
        conn.pragma_update(None, "cache_size", -kib)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, checks it, and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let damaged = |reason: String| OpenError::Damaged { path: path.to_owned(), reason };
        let existed = path.exists();
        let writer = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE, None)
            .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?;
        // Until the file is checked, closing must not fold a WAL into it: a refused file is left
        // exactly as it was found.
        writer
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?;
        // A file that is not a database (garbage, a truncated header) fails here, by name.
        let version: i64 = writer.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| {
            damaged(match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseCorrupt) => format!("the database is damaged ({e})"),
                _ => format!("not an auditline database ({e})"),
            })
        })?;
        if existed && version == 0 {
            let tables: i64 = writer
                .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                .map_err(|e| damaged(format!("not an auditline database ({e})")))?;
            if tables > 0 {
                return Err(damaged("a SQLite database of another schema (no auditline schema version)".into()));
            }
        }
        if version > SCHEMA_VERSION {
            return Err(damaged(format!(
                "schema version {version} is newer than this release's {SCHEMA_VERSION}: use a newer auditline"
            )));
        }
        if existed {
            check_length(path).map_err(damaged)?;
        }
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| writer.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB))
            // Each write runs in a savepoint, whose undo copies of the pages it changes went to a
            // temporary file: a third of the writer's time. A group's copies fit in memory.
            .and_then(|()| writer.pragma_update(None, "temp_store", "MEMORY"))
            // What an erasure removes (and the purge deletes) is overwritten in its page, not left
            // in free space: an erased value must not be readable from the file. FAST: ON also
            // zeroes what page splits move, which cost ingest a tenth (BENCHMARKS.md, gateway).
            .and_then(|()| writer.pragma_update(None, "secure_delete", "FAST"))
            .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?;
        migrate(&writer, version).map_err(|e| damaged(format!("the schema could not be migrated ({e})")))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(
                open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY, Some(READER_CACHE_KIB))
                    .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?,
            );
        }
        // Checked: from now on a clean close folds the WAL back into the file.
        writer
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
            .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = commits.clone();
        let writer_thread = std::thread::Builder::new()
            .name("auditline-sqlite-writer".into())
            .spawn(move || write_loop(writer, rx, &counted))
            .map_err(|e| OpenError::Io { path: path.to_owned(), reason: e.to_string() })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                commits,
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(readers),
                returned: std::sync::Condvar::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                writer_thread: Mutex::new(Some(writer_thread)),
                policies: Mutex::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Transactions committed so far (each holds one write or a group of them).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `work` in the writer's next transaction; resolves once it is committed (on disk). A
    /// `Refused` value rolls back this write alone and is handed back as `Err(Ok(value))`.
    pub(crate) async fn write<T: Send + 'static, R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, WriteError> + Send + 'static,
    ) -> Result<Result<T, R>, BackendError> {
        let (done, answer) = oneshot::channel();
        let job = Job { work: Box::new(move |conn| work(conn).map(|v| Box::new(v) as Box<dyn Any + Send>)), done };
        let sent = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            return Err(BackendError::Unavailable("the store is closed".into()));
        }
        match answer.await.map_err(|_| BackendError::Internal("the writer stopped".into()))? {
            Ok(value) => Ok(Ok(*value.downcast::<T>().map_err(|_| BackendError::Internal("a write's type".into()))?)),
            Err(WriteOutcome::Refused(reason)) => {
                Ok(Err(*reason.downcast::<R>().map_err(|_| BackendError::Internal("a refusal's type".into()))?))
            }
            Err(WriteOutcome::Failed(e)) => Err(e),
        }
    }

    /// Runs `read` on a reader connection, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = {
                let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                        return Err(BackendError::Unavailable("the store is closed".into()));
                    }
                    if let Some(conn) = pool.pop() {
                        break conn;
                    }
                    pool = inner.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
                }
            };
            let result = read(&conn);
            if !inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                inner.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
            inner.returned.notify_all();
            result.map_err(|e| backend(&e))
        })
        .await
        .map_err(|e| BackendError::Internal(format!("a read stopped: {e}")))?
    }

    /// Removes up to [`PURGE_STEP`] entries expired at `now` (with their index rows; counters and
    /// tiles keep their own expiry). Returns how many went.
    pub async fn purge_expired(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, BackendError> {
        self.write::<usize, ()>(move |conn| entries::purge(conn, now.timestamp(), PURGE_STEP))
            .await?
            .map_err(|()| BackendError::Internal("a purge cannot be refused".into()))
    }

    /// Copies the database, while it is in use, to `out` (SQLite's online backup).
    pub async fn backup_to(&self, out: &Path) -> Result<(), BackendError> {
        let out = out.to_owned();
        self.read(move |conn| copy_online(conn, &out)).await
    }

    /// How many entries the file holds (expired ones not yet removed included).
    pub async fn entry_count(&self) -> Result<u64, BackendError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM entries", [], |row| row.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }

    /// Commits the writes already queued, then closes every connection (the last to close folds
    /// the WAL back into the file, which a copy then holds whole). Later calls fail as unavailable.
    /// Blocks until the writer is done.
    pub fn close(&self) {
        // Readers first: the writer, closing last, is the connection that can checkpoint.
        self.inner.closed.store(true, std::sync::atomic::Ordering::Release);
        self.inner.readers.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.inner.returned.notify_all();
        self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.inner.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The whole database as one snapshot, into a new file at `out`: every page in one step of SQLite's
/// online backup, so the copy is taken inside one read transaction — writers go on (WAL), and the
/// copy is never restarted by them, however busy they are.
fn copy_online(source: &Connection, out: &Path) -> Result<(), rusqlite::Error> {
    use rusqlite::backup::{Backup, StepResult};
    let mut copy = Connection::open(out)?;
    {
        let backup = Backup::new(source, &mut copy)?;
        // A negative step copies every page at once; busy or locked only while a lock is taken.
        while !matches!(backup.step(-1)?, StepResult::Done) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The copy stands alone: one file, no WAL beside it.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    copy.pragma_update(None, "synchronous", "FULL")
}

/// What [`backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    pub entries: u64,
    pub bytes: u64,
}

/// Copies the database at `database` to `out` while a gateway may be using it, for `auditline
/// backup`. The source is opened read-only and checked first; the copy is written beside `out`,
/// checked (`quick_check`, schema version), synced, and only then moved into place. An existing
/// `out` is never overwritten.
pub fn backup(database: &Path, out: &Path) -> Result<BackupSummary, OpenError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| OpenError::Io { path: path.to_owned(), reason: e.to_string() };
    if !database.is_file() {
        return Err(OpenError::Io { path: database.to_owned(), reason: "no database here".into() });
    }
    if out.exists() {
        return Err(OpenError::Io { path: out.to_owned(), reason: "exists already: give a new file".into() });
    }
    let source = open_connection(database, OpenFlags::SQLITE_OPEN_READ_ONLY, Some(READER_CACHE_KIB))
        .map_err(|e| io(database, &e))?;
    let version: i64 = source.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| {
        OpenError::Damaged { path: database.to_owned(), reason: format!("not an auditline database ({e})") }
    })?;
    if !(1..=SCHEMA_VERSION).contains(&version) {
        return Err(OpenError::Damaged {
            path: database.to_owned(),
            reason: format!("schema version {version}: not an auditline database this release reads"),
        });
    }
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        copy_online(&source, &partial).map_err(|e| io(out, &e))?;
        let copy = open_connection(&partial, OpenFlags::SQLITE_OPEN_READ_ONLY, Some(READER_CACHE_KIB))
            .map_err(|e| io(out, &e))?;
        let check: String = copy.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(|e| io(out, &e))?;
        if check != "ok" {
            return Err(io(out, &format!("the copy does not check out: {check}")));
        }
        let entries: i64 =
            copy.query_row("SELECT count(*) FROM entries", [], |row| row.get(0)).map_err(|e| io(out, &e))?;
        drop(copy);
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| io(out, &e))?;
        std::fs::rename(&partial, out).map_err(|e| io(out, &e))?;
        // The rename itself made durable.
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(out, &e))?;
        }
        let bytes = std::fs::metadata(out).map_err(|e| io(out, &e))?.len();
        Ok(BackupSummary { entries: entries as u64, bytes })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// The writer: takes a job, then whatever else is already queued (up to [`GROUP`]), runs each in
/// its own savepoint inside one transaction, commits, and only then answers them.
fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, commits: &std::sync::atomic::AtomicU64) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let error = backend(&e);
                for job in batch {
                    let _ = job.done.send(Err(WriteOutcome::Failed(error.clone())));
                }
                continue;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        // One savepoint name serves every write: each is released (or rolled back) before the next.
        let savepoint = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop);
        for job in batch {
            let outcome = match savepoint("SAVEPOINT write") {
                Err(e) => Err(WriteOutcome::Failed(backend(&e))),
                Ok(()) => match (job.work)(&tx) {
                    Ok(value) => match savepoint("RELEASE write") {
                        Ok(()) => Ok(value),
                        Err(e) => Err(WriteOutcome::Failed(backend(&e))),
                    },
                    Err(e) => {
                        let _ = savepoint("ROLLBACK TO write").and_then(|()| savepoint("RELEASE write"));
                        Err(match e {
                            WriteError::Refused(reason) => WriteOutcome::Refused(reason),
                            WriteError::Sql(e) => WriteOutcome::Failed(backend(&e)),
                        })
                    }
                },
            };
            outcomes.push((job.done, outcome));
        }
        // Only a commit makes a write true: if it fails, every write of the group failed.
        match tx.commit() {
            Ok(()) => {
                commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for (done, outcome) in outcomes {
                    let _ = done.send(outcome);
                }
            }
            Err(e) => {
                let error = backend(&e);
                let _ = conn.execute_batch("ROLLBACK");
                for (done, outcome) in outcomes {
                    let _ = done.send(match outcome {
                        Err(WriteOutcome::Refused(r)) => Err(WriteOutcome::Refused(r)),
                        _ => Err(WriteOutcome::Failed(error.clone())),
                    });
                }
            }
        }
    }
}

/// Refuses a file shorter than its header says (a truncated copy, a cut download). A whole check
/// (`PRAGMA quick_check`) reads every page: seconds for a large file, and start must stay quick.
/// With a WAL beside the file the header may run ahead of a checkpoint a crash cut short, and
/// SQLite's recovery completes it from the WAL: then the length proves nothing.
fn check_length(path: &Path) -> Result<(), String> {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Ok(());
    }
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(|e| format!("the file could not be read ({e})"))?;
    let length = file.metadata().map_err(|e| format!("the file could not be read ({e})"))?.len();
    if std::io::Read::read_exact(&mut file, &mut header).is_err() {
        return Err(format!("the database is damaged (truncated to {length} bytes)"));
    }
    let word = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    // The header's page count holds only when its "valid for" counter matches the change counter.
    let (changes, valid_for, pages) = (word(24), word(92), u64::from(word(28)));
    if pages > 0 && changes == valid_for && pages * page_size > length {
        return Err(format!(
            "the database is damaged (truncated: its header counts {} bytes, the file has {length})",
            pages * page_size
        ));
    }
    Ok(())
}

/// Brings the schema from `from` to [`SCHEMA_VERSION`], one step per version, in one transaction.
fn migrate(conn: &Connection, from: i64) -> Result<(), rusqlite::Error> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (version, step) in (1..).zip(MIGRATIONS) {
        if from < version {
            tx.execute_batch(step)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Each version's step, in order: `MIGRATIONS[v - 1]` brings version `v - 1` to `v`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_1, TO_2, TO_3, TO_4, TO_5, TO_6];

/// Version 1. Ids are the 16 bytes of their UUIDv7 (big-endian: they sort by time); times are
/// epoch seconds (expiry) or milliseconds (seal); entries and checkpoints are kept as their JSON.
const SCHEMA_1: &str = r#"
CREATE TABLE entries (
    tenant TEXT NOT NULL,
    id BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    entity TEXT NOT NULL,
    project TEXT,
    user TEXT,
    action TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX entries_by_entity ON entries (tenant, entity, id);
CREATE INDEX entries_by_project ON entries (tenant, project, id) WHERE project IS NOT NULL;
CREATE INDEX entries_by_user ON entries (tenant, user, id) WHERE user IS NOT NULL;
CREATE INDEX entries_by_action ON entries (tenant, action, id);
CREATE INDEX entries_by_type ON entries (tenant, type, id);
CREATE INDEX entries_by_expiry ON entries (expires_at);

CREATE TABLE counters (
    tenant TEXT NOT NULL,
    hour INTEGER NOT NULL,
    counts TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, hour)
) WITHOUT ROWID;
CREATE INDEX counters_by_hour ON counters (hour, tenant);

CREATE TABLE seal_state (
    tenant TEXT PRIMARY KEY,
    closed_before INTEGER,
    head_end INTEGER,
    head_hash BLOB,
    head_total INTEGER,
    published INTEGER
) WITHOUT ROWID;
CREATE TABLE seal_cursor (only INTEGER PRIMARY KEY CHECK (only = 1), hour INTEGER NOT NULL);
CREATE TABLE checkpoints (
    tenant TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    first_ids BLOB NOT NULL,
    PRIMARY KEY (tenant, end_ms)
) WITHOUT ROWID;
CREATE TABLE cosignatures (
    tenant TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (tenant, end_ms, line)
) WITHOUT ROWID;
CREATE TABLE tiles (
    tenant TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    ids BLOB,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, end_ms, level, idx)
) WITHOUT ROWID;
CREATE TABLE witness_status (
    witness TEXT PRIMARY KEY,
    last_success INTEGER,
    last_failure INTEGER,
    last_error TEXT
) WITHOUT ROWID;

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at, key_id);

CREATE TABLE idempotency (
    tenant TEXT NOT NULL,
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    hash TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    stamped_at INTEGER NOT NULL,
    response TEXT,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, principal, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
"#;

/// Version 2: entries, tiles and idempotency records become rowid tables with a unique index on
/// their key. Their rows (an entry's JSON is about a kilobyte, a tile 8 KiB, a stored response up to
/// 300 KiB) are too large for a clustered key: SQLite gave most of them an overflow page of their
/// own, written again at every commit. In a rowid table new entries append, in time order.
const TO_2: &str = r#"
CREATE TABLE entries_2 (
    tenant TEXT NOT NULL,
    id BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    entity TEXT NOT NULL,
    project TEXT,
    user TEXT,
    action TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
INSERT INTO entries_2 (tenant, id, expires_at, entity, project, user, action, type, body)
    SELECT tenant, id, expires_at, entity, project, user, action, type, body FROM entries ORDER BY id;
DROP TABLE entries;
ALTER TABLE entries_2 RENAME TO entries;
CREATE UNIQUE INDEX entries_by_id ON entries (tenant, id);
CREATE INDEX entries_by_entity ON entries (tenant, entity, id);
CREATE INDEX entries_by_project ON entries (tenant, project, id) WHERE project IS NOT NULL;
CREATE INDEX entries_by_user ON entries (tenant, user, id) WHERE user IS NOT NULL;
CREATE INDEX entries_by_action ON entries (tenant, action, id);
CREATE INDEX entries_by_type ON entries (tenant, type, id);
CREATE INDEX entries_by_expiry ON entries (expires_at);

CREATE TABLE tiles_2 (
    tenant TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    ids BLOB,
    expires_at INTEGER NOT NULL
);
INSERT INTO tiles_2 SELECT tenant, end_ms, level, idx, hashes, ids, expires_at FROM tiles;
DROP TABLE tiles;
ALTER TABLE tiles_2 RENAME TO tiles;
CREATE UNIQUE INDEX tiles_by_key ON tiles (tenant, end_ms, level, idx);
CREATE INDEX tiles_by_expiry ON tiles (expires_at);

CREATE TABLE idempotency_2 (
    tenant TEXT NOT NULL,
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    hash TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    stamped_at INTEGER NOT NULL,
    response TEXT,
    expires_at INTEGER NOT NULL
);
INSERT INTO idempotency_2
    SELECT tenant, principal, key, hash, claimed_at, stamped_at, response, expires_at FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_2 RENAME TO idempotency;
CREATE UNIQUE INDEX idempotency_by_key ON idempotency (tenant, principal, key);
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
"#;

/// Version 3: each tenant's retention and legal holds, as their JSON, versioned.
const TO_3: &str = r#"
CREATE TABLE policies (
    tenant TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Version 4: the keys the archive seals erasable values under; a destroyed key's row keeps only
/// the record that destroyed it (secure_delete overwrites the key's bytes in the file).
const TO_4: &str = r#"
CREATE TABLE archive_keys (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    field TEXT NOT NULL,
    key BLOB,
    record TEXT,
    PRIMARY KEY (tenant, id, field),
    CHECK ((key IS NULL) <> (record IS NULL))
) WITHOUT ROWID;
"#;

/// Version 5: log streams (settings as JSON, secrets sealed inside it; figures beside), the jobs
/// waiting to be delivered (hidden until `visible_at`, ms), and the dead letters.
const TO_5: &str = r#"
CREATE TABLE streams (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    figures TEXT NOT NULL DEFAULT '{}',
    failing INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE stream_jobs (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX stream_jobs_visible ON stream_jobs (visible_at);
CREATE INDEX stream_jobs_stream ON stream_jobs (stream, visible_at);
CREATE TABLE stream_dead_letters (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Version 6: how far the log streams' router has come through the entries (their rowids, which
/// grow as entries are stored). A file that had entries starts past them: streams take what is
/// written from now on, as they always have.
const TO_6: &str = r#"
CREATE TABLE route_cursor (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    position INTEGER NOT NULL
);
INSERT INTO route_cursor (only, position) SELECT 1, COALESCE(MAX(rowid), 0) FROM entries;
"#;
