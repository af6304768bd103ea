//! Where the gateway keeps its data: a SQLite file in its data directory (the default: the trail
//! survives a restart), memory (tests, benchmarks), or a DynamoDB API. One gateway per data
//! directory (a lock file says so).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditline::Config;
use auditline::archive::shred::{ArchiveKeys, MemoryArchiveKeys};
use auditline::auth::Secret;
use auditline::auth::api_keys::{self, ApiKeyCheck, ApiKeyStore, ApiKeyValidator, MemoryApiKeys};
use auditline::domain::TenantId;
use auditline::idempotency::{IdempotencyStore, MemoryIdempotency};
use auditline::realtime::{ConnectionStore, MemoryConnections};
use auditline::retention::{MemoryPolicies, PolicyStore};
use auditline::seal::SealStore;
use auditline::store::dynamo::tables::{
    self, API_KEYS, ARCHIVE_KEYS, CHECKPOINTS, CONNECTIONS, COUNTERS, ENTRIES, IDEMPOTENCY, PROOFS, TableSpec,
};
use auditline::store::dynamo::{DynamoApiKeys, DynamoConnections, DynamoIdempotency, client_for_local_endpoint};
use auditline::store::sqlite::DATABASE_FILE;
use auditline::store::{AuditStore, MemoryStore, SqliteStore};
use auditline::streams::queue::{JobQueue, MemoryJobQueue};
use auditline::streams::secrets::{LocalSecretBox, SecretBox};
use auditline::streams::store::{MemoryStreams, StreamStore};
use chrono::{DateTime, Utc};

use crate::{BoxError, DEV_TENANT, DEV_TOKEN_HOURS, Limits};

/// The development API key, kept beside the database so that it survives a restart.
const DEV_KEY_FILE: &str = "dev-api-key";
/// The key log streams' secrets are sealed with, beside the database.
const STREAMS_KEY_FILE: &str = "streams.key";
/// How often expired entries are removed (in bounded steps).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Where the gateway keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Memory {
        max_entries: usize,
        max_bytes: usize,
    },
    /// A SQLite file in `dir` (the default): kept across restarts.
    Sqlite {
        dir: PathBuf,
    },
    /// A DynamoDB API endpoint (moto, DynamoDB Local, …); tables are created if missing.
    DynamoDb {
        endpoint: String,
    },
}

/// The storage side: stores and key records.
pub(crate) struct Backends {
    pub(crate) store: Arc<dyn AuditStore>,
    /// The same store's checkpoints and tiles.
    pub(crate) seal: Arc<dyn SealStore>,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) connections: Arc<dyn ConnectionStore>,
    pub(crate) api_keys: Arc<dyn ApiKeyStore>,
    /// Tenants' retention and legal holds.
    pub(crate) policies: Arc<dyn PolicyStore>,
    /// The keys the archive seals erasable values under.
    pub(crate) archive_keys: Arc<dyn ArchiveKeys>,
    /// The same key records, as the authenticator sees them.
    pub(crate) key_validator: Arc<dyn ApiKeyValidator>,
    /// Log streams, the jobs waiting for delivery, and the key their secrets are sealed with.
    pub(crate) streams: Arc<dyn StreamStore>,
    pub(crate) jobs: Arc<dyn JobQueue>,
    pub(crate) secret_box: Arc<dyn SecretBox>,
    pub(crate) dynamodb: Option<aws_sdk_dynamodb::Client>,
    /// The SQLite store and its data directory, with the directory's lock (held while running).
    pub(crate) sqlite: Option<Local>,
}

/// A SQLite store in its data directory, held by this gateway.
pub(crate) struct Local {
    pub(crate) store: SqliteStore,
    pub(crate) dir: PathBuf,
    pub(crate) _lock: File,
}

/// Takes the data directory's lock: one gateway per directory.
fn lock(dir: &Path) -> Result<File, BoxError> {
    let path = dir.join("gateway.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{} is in use by another auditline-local: stop it, or give this one another --data-dir",
            dir.display()
        )
        .into()),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// The development API key: the one kept in the data directory while it is still good, else a new
/// one (kept there for the next start). Without a data directory, a new one each start.
pub(crate) async fn dev_api_key(backends: &Backends, now: DateTime<Utc>) -> Result<Secret, BoxError> {
    let kept = backends.sqlite.as_ref().map(|l| l.dir.join(DEV_KEY_FILE));
    if let Some(path) = &kept
        && let Ok(text) = std::fs::read_to_string(path)
    {
        let key = text.trim().to_owned();
        // Another gateway's key in the file, a revoked or expired one: not reused.
        if matches!(backends.key_validator.check(&key, now).await?, ApiKeyCheck::Valid(_)) {
            return Ok(Secret::new(key));
        }
    }
    let key = api_keys::generate(
        TenantId::parse(DEV_TENANT)?,
        "developer",
        vec!["audit:read".into(), "audit:write".into()],
        Some("local gateway".into()),
        Some(now + chrono::Duration::hours(DEV_TOKEN_HOURS)),
        now,
    )?;
    backends.api_keys.insert(&key.record).await?;
    if let Some(path) = &kept {
        let _ = std::fs::remove_file(path);
        crate::seal_loop::write_private(path, key.key.expose())?;
    }
    Ok(key.key)
}

/// Removes expired entries every minute, a bounded step at a time, as DynamoDB's TTL would.
pub(crate) fn spawn_purge(store: SqliteStore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PURGE_EVERY);
        loop {
            ticks.tick().await;
            loop {
                match store.purge_expired(Utc::now()).await {
                    Ok(n) if n == auditline::store::sqlite::PURGE_STEP => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "expired entries could not be removed; the next minute tries again");
                        break;
                    }
                }
            }
        }
    })
}

/// Creates the table unless it exists. A DynamoDB API that fails now and then (throttling, a
/// dropped reply) must not stop the gateway from starting: transient failures are tried again.
async fn ensure_table(client: &aws_sdk_dynamodb::Client, spec: &TableSpec, name: &str) -> Result<(), BoxError> {
    const ATTEMPTS: u32 = 6;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        match client.describe_table().table_name(name).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                // Any failure here may be a lost reply: look again before trying again.
                match tables::create_table(client, spec, name).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        }
    }
    Err(format!("table {name}: {last}").into())
}

pub(crate) async fn backends(storage: &Storage, config: &Config, limits: &Limits) -> Result<Backends, BoxError> {
    Ok(match storage {
        Storage::Memory { max_entries, max_bytes } => {
            let keys = Arc::new(MemoryApiKeys::new());
            let store = Arc::new(MemoryStore::bounded(*max_entries, *max_bytes));
            Backends {
                store: store.clone(),
                seal: store,
                idempotency: Arc::new(MemoryIdempotency::bounded(limits.idempotency_bytes)),
                connections: Arc::new(MemoryConnections::new()),
                api_keys: keys.clone(),
                policies: Arc::new(MemoryPolicies::default()),
                archive_keys: Arc::new(MemoryArchiveKeys::default()),
                key_validator: keys,
                streams: Arc::new(MemoryStreams::default()),
                jobs: Arc::new(MemoryJobQueue::default()),
                secret_box: Arc::new(LocalSecretBox::ephemeral()),
                dynamodb: None,
                sqlite: None,
            }
        }
        Storage::Sqlite { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let lock = lock(dir)?;
            let store = SqliteStore::open(&dir.join(DATABASE_FILE))?;
            let shared = Arc::new(store.clone());
            Backends {
                store: shared.clone(),
                seal: shared.clone(),
                idempotency: shared.clone(),
                // Live connections die with the process: they stay in memory.
                connections: Arc::new(MemoryConnections::new()),
                api_keys: shared.clone(),
                policies: shared.clone(),
                archive_keys: shared.clone(),
                streams: shared.clone(),
                jobs: shared.clone(),
                secret_box: Arc::new(LocalSecretBox::from_file(&dir.join(STREAMS_KEY_FILE))?),
                key_validator: shared,
                dynamodb: None,
                sqlite: Some(Local { store, dir: dir.clone(), _lock: lock }),
            }
        }
        Storage::DynamoDb { endpoint } => {
            let client = client_for_local_endpoint(endpoint, None);
            for (spec, name) in [
                (&ENTRIES, &config.entries_table),
                (&COUNTERS, &config.counters_table),
                (&API_KEYS, &config.api_keys_table),
                (&IDEMPOTENCY, &config.idempotency_table),
                (&CONNECTIONS, &config.connections_table),
                (&CHECKPOINTS, &config.checkpoints_table),
                (&PROOFS, &config.proofs_table),
                (&ARCHIVE_KEYS, &config.archive_keys_table),
            ] {
                ensure_table(&client, spec, name).await.map_err(|e| format!("table {name} at {endpoint}: {e}"))?;
            }
            let keys = Arc::new(DynamoApiKeys::new(client.clone(), &config.api_keys_table));
            let store = Arc::new(auditline::bootstrap::dynamo_store(client.clone(), config));
            Backends {
                store: store.clone(),
                seal: store.clone(),
                policies: store,
                archive_keys: Arc::new(auditline::bootstrap::archive_keys(client.clone(), config)),
                idempotency: Arc::new(DynamoIdempotency::new(client.clone(), &config.idempotency_table)),
                connections: Arc::new(DynamoConnections::new(client.clone(), &config.connections_table)),
                api_keys: keys.clone(),
                key_validator: keys,
                // Streams in memory beside a DynamoDB API: the gateway's jobs and key are its own.
                streams: Arc::new(MemoryStreams::default()),
                jobs: Arc::new(MemoryJobQueue::default()),
                secret_box: Arc::new(LocalSecretBox::ephemeral()),
                dynamodb: Some(client),
                sqlite: None,
            }
        }
    })
}
