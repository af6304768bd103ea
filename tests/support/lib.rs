//! Test support: the local DynamoDB-API server started by `scripts/test.sh`, fresh tables per test,
//! controllable clocks and entry fixtures.

pub mod auth;
pub mod client;
pub mod cpu_quota;
pub mod dynamo_faults;
pub mod fault_proxy;
pub mod feed;
pub mod http;
pub mod kms;
pub mod receiver;
pub mod runtime;
pub mod soak;
pub mod stores;
pub mod tls;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use auditline::domain::{AuditAction, EntityType, EntryDetails, NewEntry, TenantId};
use auditline::logger::Clock;
use auditline::store::dynamo::tables::{self, COUNTERS, ENTRIES, TableSpec};
use auditline::store::dynamo::{RequestCounter, client_for_local_endpoint};
use auditline::store::{AuditStore, DynamoStore, MemoryStore};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};

/// Set by `scripts/test.sh` to the local DynamoDB-API server it started.
pub const ENDPOINT_VARIABLE: &str = "AUDITLINE_TEST_DYNAMODB_ENDPOINT";

/// The local DynamoDB-API server. Tests that need it fail (never skip) when it is missing.
pub fn dynamodb_endpoint() -> String {
    std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VARIABLE} is not set: run the tests with ./scripts/test.sh, which starts a local DynamoDB API"
        )
    })
}

/// A name no other test uses, so tests can run in parallel against one server.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A client for the local DynamoDB API, and the counter of the requests it sends.
pub fn local_client() -> (Client, RequestCounter) {
    let counter = RequestCounter::default();
    (client_for_local_endpoint(&dynamodb_endpoint(), Some(counter.clone())), counter)
}

/// Creates a table as `spec` describes, under a fresh name, and returns the name.
pub async fn fresh_table(client: &Client, spec: &TableSpec, prefix: &str) -> String {
    let name = unique_name(prefix);
    tables::create_table(client, spec, &name).await.unwrap_or_else(|e| panic!("create {prefix} table: {e}"));
    name
}

/// A DynamoDB store on freshly created tables, and the counter of requests its client sends.
pub async fn fresh_dynamo_store(counter_shards: u8) -> (DynamoStore, RequestCounter) {
    let (client, counter) = local_client();
    let entries = fresh_table(&client, &ENTRIES, "entries").await;
    let counters = fresh_table(&client, &COUNTERS, "counters").await;
    counter.reset();
    (DynamoStore::new(client, entries, counters).with_counter_shards(counter_shards), counter)
}

/// A loopback port that nothing listens on: bound, then released (never assume a port is closed).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// The URL of [`closed_port`]: a connection there is refused.
pub fn unreachable_url() -> String {
    format!("http://127.0.0.1:{}", closed_port())
}

/// Where this workspace's binaries are: `AUDITLINE_BIN_DIR`, or beside the running test executable
/// (`<target>/<profile>/deps/suite-…` → `<target>/<profile>`), wherever `CARGO_TARGET_DIR` put it.
pub fn binary_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("AUDITLINE_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the executable's directory");
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of this workspace, built by `scripts/test.sh` before the tests run. Missing is a failure.
pub fn binary(name: &str) -> std::path::PathBuf {
    let dir = binary_dir();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with ./scripts/test.sh, which builds the binaries first",
        path.display()
    );
    path
}

/// A sample event from `events/`, as JSON.
pub fn event(file: &str) -> serde_json::Value {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs each named `async fn(Backend)` on every store, as `memory::name`, `dynamodb::name` and
/// `sqlite::name`, on a multi-threaded runtime (concurrency in a store is real in each).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Backend::Memory).await
            })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Backend::Dynamo).await
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name($crate::Backend::Sqlite).await
            })*
        }
    };
}

/// Which store a contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Dynamo,
    Sqlite,
}

pub async fn fresh_store(backend: Backend) -> Arc<dyn AuditStore> {
    match backend {
        Backend::Memory => Arc::new(MemoryStore::new()),
        Backend::Dynamo => Arc::new(fresh_dynamo_store(1).await.0),
        Backend::Sqlite => Arc::new(fresh_sqlite_store()),
    }
}

/// A fresh audit store and, beside it, where the backend keeps tenants' policies (the same store
/// for SQLite and DynamoDB; a map in memory).
pub async fn fresh_store_with_policies(
    backend: Backend,
) -> (Arc<dyn AuditStore>, Arc<dyn auditline::retention::PolicyStore>) {
    match backend {
        Backend::Memory => (Arc::new(MemoryStore::new()), Arc::new(auditline::retention::MemoryPolicies::default())),
        Backend::Dynamo => {
            let store = Arc::new(fresh_dynamo_store(1).await.0);
            (store.clone(), store)
        }
        Backend::Sqlite => {
            let store = Arc::new(fresh_sqlite_store());
            (store.clone(), store)
        }
    }
}

/// A fresh audit store and, beside it, where the backend keeps the archive's keys (the same SQLite
/// file; a table of their own in DynamoDB; a map in memory).
pub async fn fresh_store_with_archive_keys(
    backend: Backend,
) -> (Arc<dyn AuditStore>, Arc<dyn auditline::archive::shred::ArchiveKeys>) {
    match backend {
        Backend::Memory => {
            (Arc::new(MemoryStore::new()), Arc::new(auditline::archive::shred::MemoryArchiveKeys::default()))
        }
        Backend::Dynamo => (Arc::new(fresh_dynamo_store(1).await.0), Arc::new(fresh_dynamo_archive_keys().await)),
        Backend::Sqlite => {
            let store = Arc::new(fresh_sqlite_store());
            (store.clone(), store)
        }
    }
}

/// Archive keys in a new table on the local DynamoDB API, kept the template's default seven years.
pub async fn fresh_dynamo_archive_keys() -> auditline::store::dynamo::DynamoArchiveKeys {
    let (client, _) = local_client();
    let table = fresh_table(&client, &auditline::store::dynamo::tables::ARCHIVE_KEYS, "archive-keys").await;
    auditline::store::dynamo::DynamoArchiveKeys::new(client, table, 2557)
}

/// Archive objects kept in memory: key → gzip'd JSON lines.
#[derive(Default)]
pub struct MemorySink(pub std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>);

#[async_trait::async_trait]
impl auditline::archive::ArchiveSink for MemorySink {
    async fn put(&self, key: &str, gzip_jsonl: Vec<u8>) -> Result<(), auditline::backend::BackendError> {
        self.0.lock().unwrap().insert(key.to_owned(), gzip_jsonl);
        Ok(())
    }
}

impl MemorySink {
    /// Every object's lines, as written (sealed), decompressed into one text.
    pub fn raw_text(&self) -> String {
        use std::io::Read;
        let mut out = String::new();
        for bytes in self.0.lock().unwrap().values() {
            flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut out).expect("gzip");
        }
        out
    }

    /// Every archived entry, opened with `keys`.
    pub async fn opened(
        &self,
        keys: &dyn auditline::archive::shred::ArchiveKeys,
    ) -> Vec<auditline::domain::AuditLogEntry> {
        let objects: Vec<Vec<u8>> = self.0.lock().unwrap().values().cloned().collect();
        let mut out = Vec::new();
        for bytes in objects {
            out.extend(auditline::archive::open_object(&bytes, keys).await.expect("an archive object opens"));
        }
        out.sort_by_key(|e| e.id);
        out
    }
}

/// A new, empty directory under the temporary directory.
pub fn fresh_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A SQLite store in a new file under the temporary directory.
pub fn fresh_sqlite_store() -> auditline::store::SqliteStore {
    let dir = fresh_dir("auditline-sqlite");
    auditline::store::SqliteStore::open(&dir.join("auditline.db")).expect("a new database opens")
}

/// A clock that advances by `step_ms` on every reading, starting at `start`: each logged entry gets
/// its own millisecond, and reads see "now" just after the latest write.
pub fn stepping_clock(start: DateTime<Utc>, step_ms: i64) -> (Clock, Arc<AtomicI64>) {
    let millis = Arc::new(AtomicI64::new(start.timestamp_millis()));
    let shared = millis.clone();
    let clock: Clock = Arc::new(move || {
        let ms = shared.fetch_add(step_ms, Ordering::SeqCst);
        DateTime::from_timestamp_millis(ms).expect("valid time")
    });
    (clock, millis)
}

pub fn fixed_clock(at: DateTime<Utc>) -> Clock {
    Arc::new(move || at)
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

pub fn hours_ago(h: i64) -> DateTime<Utc> {
    Utc::now() - Duration::hours(h)
}

/// A request for one entry with the usual context filled in.
pub fn new_entry(
    tenant: &TenantId,
    action: AuditAction,
    entity_type: EntityType,
    entity_id: &str,
    project_id: Option<&str>,
    user_id: Option<&str>,
) -> NewEntry {
    NewEntry {
        tenant_id: tenant.clone(),
        action,
        entity_type,
        entity_id: entity_id.to_owned(),
        details: EntryDetails {
            project_id: project_id.map(str::to_owned),
            user_id: user_id.map(str::to_owned),
            ip_address: Some("192.168.1.1".to_owned()),
            ..EntryDetails::default()
        },
    }
}

/// Every live entry of `tenant`, read page by page through the logger as the API reads them.
pub async fn all_entries(store: Arc<dyn AuditStore>, tenant: &TenantId) -> Vec<auditline::domain::AuditLogEntry> {
    use auditline::domain::{AuditQuery, QueryScope};
    let logger = auditline::AuditLogger::new(store, auditline::AuditSettings::default());
    let mut out = Vec::new();
    let mut query = AuditQuery::new(QueryScope::Tenant);
    query.page.limit = 1000;
    loop {
        let page = logger.get_logs(tenant, &query).await.expect("entries are listed");
        out.extend(page.entries);
        match page.next_token {
            Some(token) => query.page.next_token = Some(token),
            None => return out,
        }
    }
}
