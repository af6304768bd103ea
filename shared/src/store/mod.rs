//! The storage port and its adapters. Stores add entries; there is no delete, and retention (TTL)
//! is the only way an entry leaves. The one change an entry may undergo is an erasure of some of
//! its fields ([`crate::erasure`]), which keeps its leaf.

pub mod dynamo;
pub mod eventbridge;
pub mod memory;
pub mod s3;
pub mod sqlite;
pub mod sqs;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, HourlyCounts, QueryPlan, StatsRange, StoredPage, TenantId};
use crate::erasure::Erasure;

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// Why an audit store could not do what was asked: the entry exists already (entries are never
/// overwritten), or the backend failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("an entry with id {0} already exists")]
    AlreadyExists(Uuid),
    /// The entry's period is sealed: it can no longer be stored there (a write that took longer
    /// than the seal's grace, or a late retry). Nothing was written.
    #[error("the period of entry {0} is already sealed")]
    Sealed(Uuid),
    /// No such entry of the tenant (or it has expired).
    #[error("no entry with id {0}")]
    NotFound(Uuid),
    /// The entry changed since it was read (a concurrent erasure): read it again.
    #[error("entry {0} changed meanwhile")]
    Changed(Uuid),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Puts of one [`AuditStore::put_all`] in flight at once, by default: DynamoDB's transactions on
/// one tenant-hour's counter conflict when many run together.
pub const PUTS_AT_ONCE: usize = 8;

/// Where audit entries live.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// A short name for health reports, e.g. `dynamodb` or `memory`.
    fn backend(&self) -> &'static str;

    /// Adds an entry. Never overwrites: an existing id is [`StoreError::AlreadyExists`] and leaves
    /// the stored entry as it was. Statistics are counted with the entry, exactly once. An entry
    /// stamped before its tenant's seal marker is [`StoreError::Sealed`] and not stored.
    async fn put(&self, entry: &AuditLogEntry) -> Result<(), StoreError>;

    /// Adds several entries (one request's batch), each exactly as [`put`](Self::put) would, and
    /// answers each one's result in order. A store that can write them together does (SQLite: one
    /// transaction, with the counters moved once per tenant-hour); by default a few at a time.
    async fn put_all(&self, entries: &[AuditLogEntry]) -> Vec<Result<(), StoreError>> {
        use futures::StreamExt;
        let puts: Vec<_> = entries.iter().map(|e| self.put(e)).collect();
        futures::stream::iter(puts).buffered(PUTS_AT_ONCE).collect().await
    }

    /// Erases fields of an entry of `tenant`: their values removed (and the entry gone from the
    /// indexes they key), `integrity` replaced by `erasure.after` — only while the stored one is
    /// still `erasure.before`, else [`StoreError::Changed`]. Sealed periods allow it: the leaf
    /// stays. A missing or expired entry is [`StoreError::NotFound`].
    async fn erase(&self, tenant: &TenantId, id: Uuid, erasure: &Erasure) -> Result<(), StoreError>;

    /// Sets the expiry of an entry of `tenant` (outside its leaf): how a legal hold keeps an entry
    /// and its release lets it go. A missing or expired entry is [`StoreError::NotFound`].
    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError>;

    /// One entry of `tenant`, unless it does not exist, belongs to another tenant, or has expired.
    async fn get(&self, tenant: &TenantId, id: Uuid, now: DateTime<Utc>) -> Result<Option<AuditLogEntry>, StoreError>;

    /// Runs a plan made by [`crate::domain::AuditQuery::plan`].
    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError>;

    /// The hourly counters of `tenant` over `range` (hours without entries may be left out).
    async fn counts(
        &self,
        tenant: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<HourlyCounts, StoreError>;

    /// A cheap round trip that proves the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
