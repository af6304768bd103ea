//! What the SQLite store promises beyond the contract every store meets (store_contract.rs,
//! seal.rs and the others run it too): it keeps everything across a reopen, the chain continues
//! where it stopped (no second genesis), concurrent writes share commits, expired entries go in
//! bounded steps, a backup taken while it writes is a whole database, and a file that is not one of
//! its databases is refused by name — never opened empty over.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditline::auth::api_keys::{self, ApiKeyStore};
use auditline::domain::{AuditAction, EntityType, TenantId};
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::verify::{Bundle, Verifier};
use auditline::seal::{SealSettings, SealStore, Sealer};
use auditline::store::SqliteStore;
use auditline::store::sqlite::{OpenError, SCHEMA_VERSION};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{all_entries, new_entry, stepping_clock, tenant, unique_name};
use chrono::{Duration, DurationRound, Utc};

fn new_path() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("sqlite-store"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("auditline.db")
}

async fn log_hours(store: Arc<SqliteStore>, t: &TenantId, start: chrono::DateTime<Utc>, count: usize, step_ms: i64) {
    let (clock, _) = stepping_clock(start, step_ms);
    let logger = AuditLogger::with_clock(store, AuditSettings::default(), clock);
    for i in 0..count {
        let request = new_entry(t, AuditAction::ALL[i % 6], EntityType::ALL[i % 7], &format!("e-{i}"), None, Some("u"));
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen_and_the_chain_continues_where_it_stopped() {
    let path = new_path();
    let acme = tenant("acme");
    let key = Arc::new(LocalSigner::generate().unwrap());
    let settings = SealSettings { lookback_hours: 12, ..SealSettings::default() };
    let start = (Utc::now() - Duration::hours(6)).duration_trunc(Duration::hours(1)).unwrap();
    let (head, api_key) = {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        log_hours(store.clone(), &acme, start + Duration::minutes(1), 6, 20 * 60_000).await;
        let report = Sealer::new(store.clone(), key.clone(), settings)
            .run(start + Duration::hours(2) + Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!(report.checkpoints, 2);
        let generated =
            api_keys::generate(acme.clone(), "dev", vec!["audit:read".into()], None, None, Utc::now()).unwrap();
        store.insert(&generated.record).await.unwrap();
        let chain = store.checkpoints(&acme, None, None, 10).await.unwrap();
        store.close();
        assert!(store.checkpoints(&acme, None, None, 10).await.is_err(), "closed: reads are refused");
        (chain.last().unwrap().link(), generated)
    };
    // Reopened: the entries, the chain, the seal state and the key are all there.
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(all_entries(store.clone(), &acme).await.len(), 6);
    let state = store.seal_state(&acme).await.unwrap();
    assert_eq!(state.head.map(|h| h.hash), Some(head));
    assert!(store.find(&api_key.record.key_id).await.unwrap().is_some(), "the API key survives");
    // More entries, sealed by a run after the reopen: the chain goes on from its head, and a
    // verifier pinned to the head from before the reopen passes.
    log_hours(store.clone(), &acme, start + Duration::hours(3) + Duration::minutes(1), 3, 20 * 60_000).await;
    let report = Sealer::new(store.clone(), key.clone(), settings).run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.refused), (1, 0), "{report:?}");
    let bundle = Bundle {
        entries: all_entries(store.clone(), &acme).await,
        checkpoints: store.checkpoints(&acme, None, None, 10).await.unwrap(),
        ..Bundle::default()
    };
    assert_eq!(bundle.checkpoints.len(), 3, "one chain: no second genesis");
    let summary = Verifier::new([key.public_key_der()]).with_head(head).verify(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
    assert_eq!(summary.added_since_head, Some(1));
}

/// The three tables version 2 rebuilt, as version 1 (the first release with the SQLite store)
/// made them: clustered on their keys; and without the policies version 3, the archive keys
/// version 4, the streams version 5 and the router's position version 6 added.
const VERSION_1_TABLES: &str = r#"
DROP TABLE route_cursor;
DROP TABLE policies;
DROP TABLE archive_keys;
DROP TABLE streams;
DROP TABLE stream_jobs;
DROP TABLE stream_dead_letters;
CREATE TABLE entries_1 (
    tenant TEXT NOT NULL, id BLOB NOT NULL, expires_at INTEGER NOT NULL, entity TEXT NOT NULL,
    project TEXT, user TEXT, action TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
INSERT INTO entries_1 SELECT tenant, id, expires_at, entity, project, user, action, type, body FROM entries;
DROP TABLE entries;
ALTER TABLE entries_1 RENAME TO entries;
CREATE INDEX entries_by_entity ON entries (tenant, entity, id);
CREATE INDEX entries_by_project ON entries (tenant, project, id) WHERE project IS NOT NULL;
CREATE INDEX entries_by_user ON entries (tenant, user, id) WHERE user IS NOT NULL;
CREATE INDEX entries_by_action ON entries (tenant, action, id);
CREATE INDEX entries_by_type ON entries (tenant, type, id);
CREATE INDEX entries_by_expiry ON entries (expires_at);
CREATE TABLE tiles_1 (
    tenant TEXT NOT NULL, end_ms INTEGER NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL,
    hashes BLOB NOT NULL, ids BLOB, expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, end_ms, level, idx)
) WITHOUT ROWID;
INSERT INTO tiles_1 SELECT * FROM tiles;
DROP TABLE tiles;
ALTER TABLE tiles_1 RENAME TO tiles;
CREATE TABLE idempotency_1 (
    tenant TEXT NOT NULL, principal TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL,
    claimed_at INTEGER NOT NULL, stamped_at INTEGER NOT NULL, response TEXT, expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, principal, key)
) WITHOUT ROWID;
INSERT INTO idempotency_1 SELECT * FROM idempotency;
DROP TABLE idempotency;
ALTER TABLE idempotency_1 RENAME TO idempotency;
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
PRAGMA user_version = 1;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_migrated_at_open_and_keeps_its_trail() {
    let path = new_path();
    let acme = tenant("acme");
    let key = Arc::new(LocalSigner::generate().unwrap());
    let settings = SealSettings { lookback_hours: 12, ..SealSettings::default() };
    let start = (Utc::now() - Duration::hours(6)).duration_trunc(Duration::hours(1)).unwrap();
    let head = {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        log_hours(store.clone(), &acme, start + Duration::minutes(1), 6, 20 * 60_000).await;
        Sealer::new(store.clone(), key.clone(), settings)
            .run(start + Duration::hours(2) + Duration::minutes(5))
            .await
            .unwrap();
        let head = store.checkpoints(&acme, None, None, 10).await.unwrap().last().unwrap().link();
        store.close();
        head
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(VERSION_1_TABLES).unwrap();
        assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 1);
    }
    let store = Arc::new(SqliteStore::open(&path).expect("a version 1 file opens"));
    // Its history is not sent to log streams made later: the router starts past it.
    let unrouted = store.unrouted(1_000).await.unwrap();
    assert_eq!((unrouted.from, unrouted.through, unrouted.entries.len()), (6, 6, 0), "{unrouted:?}");
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION, "migrated");
    let entries = all_entries(store.clone(), &acme).await;
    assert_eq!(entries.len(), 6, "every entry kept");
    for e in &entries {
        e.verify_leaf().unwrap();
    }
    // The unique key still refuses a second write of an id.
    assert!(matches!(
        auditline::store::AuditStore::put(store.as_ref(), &entries[0]).await,
        Err(auditline::store::StoreError::AlreadyExists(_))
    ));
    // And the chain goes on from the head it had.
    log_hours(store.clone(), &acme, start + Duration::hours(3) + Duration::minutes(1), 3, 20 * 60_000).await;
    let report = Sealer::new(store.clone(), key.clone(), settings).run(Utc::now()).await.unwrap();
    assert_eq!(report.refused, 0, "{report:?}");
    let bundle = Bundle {
        entries: all_entries(store.clone(), &acme).await,
        checkpoints: store.checkpoints(&acme, None, None, 10).await.unwrap(),
        ..Bundle::default()
    };
    let summary = Verifier::new([key.public_key_der()]).with_head(head).verify(&bundle);
    assert!(summary.is_valid(), "{summary}: {:?}", summary.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_each_is_durable_once() {
    let store = Arc::new(SqliteStore::open(&new_path()).unwrap());
    let acme = tenant("acme");
    let before = store.commits();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, acme) = (store.clone(), acme.clone());
            tokio::spawn(async move {
                let logger = AuditLogger::new(store, AuditSettings::default());
                for i in 0..50 {
                    let request =
                        new_entry(&acme, AuditAction::Create, EntityType::File, &format!("w{w}-{i}"), None, None);
                    let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(all_entries(store.clone(), &acme).await.len(), 400);
    let commits = store.commits() - before;
    assert!(commits < 400, "eight writers' 400 puts took {commits} commits: groups share them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_invisible_then_removed_in_bounded_steps() {
    let store = Arc::new(SqliteStore::open(&new_path()).unwrap());
    let acme = tenant("acme");
    let settings = AuditSettings { retention_days: 1, ..AuditSettings::default() };
    let (clock, _) = stepping_clock(Utc::now() - Duration::days(2), 1);
    let logger = AuditLogger::with_clock(store.clone(), settings, clock);
    for i in 0..(auditline::store::sqlite::PURGE_STEP + 10) {
        let request = new_entry(&acme, AuditAction::Create, EntityType::File, &format!("old-{i}"), None, None);
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
    assert!(all_entries(store.clone(), &acme).await.is_empty(), "expired: invisible at once");
    assert_eq!(store.entry_count().await.unwrap(), auditline::store::sqlite::PURGE_STEP as u64 + 10);
    assert_eq!(store.purge_expired(Utc::now()).await.unwrap(), auditline::store::sqlite::PURGE_STEP, "a bounded step");
    assert_eq!(store.purge_expired(Utc::now()).await.unwrap(), 10);
    assert_eq!(store.entry_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_is_a_whole_database() {
    let store = Arc::new(SqliteStore::open(&new_path()).unwrap());
    let acme = tenant("acme");
    let writing = {
        let store = store.clone();
        let acme = acme.clone();
        tokio::spawn(async move { log_hours(store, &acme, Utc::now() - Duration::minutes(30), 300, 1).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let out = new_path().with_file_name("backup.db");
    store.backup_to(&out).await.unwrap();
    writing.await.unwrap();
    let copy = SqliteStore::open(&out).expect("the backup opens as a database");
    let copied = copy.entry_count().await.unwrap();
    assert!(copied <= 300, "{copied}");
    // Whatever it caught, it caught whole: every entry it holds verifies against its leaf.
    for e in all_entries(Arc::new(copy), &acme).await {
        e.verify_leaf().unwrap();
    }
}

fn refused(path: &Path) -> String {
    match SqliteStore::open(path) {
        Err(e @ OpenError::Damaged { .. }) => e.to_string(),
        Err(other) => panic!("refused, but as {other}"),
        Ok(_) => panic!("{} opened", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_one_of_its_databases_is_refused_by_name() {
    // Garbage.
    let garbage = new_path();
    std::fs::write(&garbage, b"this is not a database, it only sits where one should be ".repeat(100)).unwrap();
    let said = refused(&garbage);
    assert!(said.contains(&garbage.display().to_string()) && said.contains("not an auditline database"), "{said}");
    assert_eq!(std::fs::read(&garbage).unwrap().len(), 5700, "left as it was");

    // Truncated: a real database with entries, cut in half.
    let truncated = new_path();
    {
        let store = Arc::new(SqliteStore::open(&truncated).unwrap());
        log_hours(store.clone(), &tenant("acme"), Utc::now() - Duration::minutes(10), 500, 1).await;
        store.close();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Fold the WAL into the file first, as a clean shutdown does, then cut it.
    {
        let conn = rusqlite::Connection::open(&truncated).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(len / 2).unwrap();
    let said = refused(&truncated);
    assert!(said.contains(&truncated.display().to_string()), "{said}");

    // A newer schema than this release's.
    let newer = new_path();
    SqliteStore::open(&newer).unwrap().close();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    assert!(refused(&newer).contains("newer than this release's"));

    // Another application's database.
    let other = new_path();
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE notes (text TEXT);").unwrap();
    assert!(refused(&other).contains("another schema"));
}

/// An erased value is gone from the file itself, not only from what reads return: the row's old
/// bytes are overwritten (`secure_delete`), in the database and in its write-ahead log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_value_cannot_be_read_from_the_file() {
    let path = new_path();
    let acme = tenant("acme");
    let secret = "changes-only-value-4711@example.com";
    {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let logger = AuditLogger::new(store.clone(), AuditSettings::default());
        let mut request = new_entry(&acme, AuditAction::Update, EntityType::Report, "r-1", None, Some("alice"));
        request.details.changes = Some(serde_json::json!({"email": secret}));
        let Ok(LogOutcome::Stored(entry)) = logger.log(request).await else { panic!("stored") };
        let file = |p: &Path| std::fs::read(p).unwrap_or_default();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let holds = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(holds(&file(&path)) || holds(&file(&wal)), "the value is in the file before");
        let erasure = auditline::erasure::ErasureRequest { fields: vec!["changes".into()], reason: "GDPR".into() };
        logger.erase(&acme, entry.id, &erasure, &Default::default()).await.unwrap();
        store.close();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!holds(&file(&path)), "the value is gone from the database file");
        assert!(!holds(&file(&wal)), "and from its write-ahead log");
    }
}

/// Log streams on SQLite are routed from a kept position: the entries of tenants with a stream
/// are read once, jobs and position move together (never one without the other), the position
/// survives a reopen, and a purge of the newest rows never leaves the next rowid behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_streams_are_routed_from_a_kept_position_once_across_a_reopen_and_a_purge() {
    use auditline::streams::delivery::Job;
    use auditline::streams::destination::{Destination, Encoding, Format, StreamFilter, Target};
    use auditline::streams::queue::JobQueue;
    use auditline::streams::store::StreamStore;

    let path = new_path();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let now = Utc::now();
    let stream = Destination {
        tenant_id: acme.clone(),
        id: uuid::Uuid::now_v7(),
        name: "SIEM".into(),
        target: Target::Webhook {
            url: "https://siem.example.com/hook".into(),
            encoding: Encoding::JsonArray,
            header_names: vec![],
        },
        format: Format::Entry,
        filter: StreamFilter::default(),
        paused: false,
        sealed_secrets: String::new(),
        previous_secret_retires_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store.create(&stream).await.unwrap();
    let logger = AuditLogger::new(store.clone(), AuditSettings::default());
    let mut acme_ids = Vec::new();
    for (i, t) in [&acme, &globex, &acme, &globex, &acme].into_iter().enumerate() {
        let request = new_entry(t, AuditAction::Create, EntityType::File, &format!("f-{i}"), None, None);
        let Ok(LogOutcome::Stored(e)) = logger.log(request).await else { panic!("stored") };
        if t == &acme {
            acme_ids.push(e.id);
        }
    }

    // Only the tenant with a stream is read; a window bounds the rows looked through.
    let first = store.unrouted(2).await.unwrap();
    assert_eq!((first.from, first.through), (0, 2));
    assert_eq!(first.entries.iter().map(|e| e.id).collect::<Vec<_>>(), acme_ids[..1]);
    let all = store.unrouted(1_000).await.unwrap();
    assert_eq!((all.from, all.through), (0, 5));
    assert_eq!(all.entries.iter().map(|e| e.id).collect::<Vec<_>>(), acme_ids);

    // Jobs and position together; a second router holding the old position queues nothing.
    let job = Job::new(acme.clone(), stream.id, acme_ids.clone(), now);
    assert!(store.enqueue_routed(std::slice::from_ref(&job), 0, 5).await.unwrap());
    assert!(!store.enqueue_routed(std::slice::from_ref(&job), 0, 5).await.unwrap(), "the position moved");
    assert_eq!(store.depth().await.unwrap(), 1);

    // Kept across a reopen.
    store.close();
    drop(logger);
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let after = store.unrouted(1_000).await.unwrap();
    assert_eq!((after.from, after.through, after.entries.len()), (5, 5, 0), "nothing routed twice");

    // The newest rows expire and are purged after they were routed: the next entry is still routed.
    let settings = AuditSettings { retention_days: 1, ..AuditSettings::default() };
    let (clock, _) = stepping_clock(Utc::now() - Duration::days(2), 1);
    let old = AuditLogger::with_clock(store.clone(), settings, clock);
    for i in 0..2 {
        let request = new_entry(&acme, AuditAction::Update, EntityType::File, &format!("old-{i}"), None, None);
        let Ok(LogOutcome::Stored(_)) = old.log(request).await else { panic!("stored") };
    }
    let expired = store.unrouted(1_000).await.unwrap();
    assert_eq!((expired.from, expired.through), (5, 7));
    assert!(store.enqueue_routed(&[], 5, 7).await.unwrap());
    assert_eq!(store.purge_expired(Utc::now()).await.unwrap(), 2);
    let logger = AuditLogger::new(store.clone(), AuditSettings::default());
    let request = new_entry(&acme, AuditAction::Delete, EntityType::File, "f-new", None, None);
    let Ok(LogOutcome::Stored(newest)) = logger.log(request).await else { panic!("stored") };
    let next = store.unrouted(1_000).await.unwrap();
    assert_eq!(next.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [newest.id], "{next:?}");
}
