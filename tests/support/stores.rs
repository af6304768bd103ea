//! Store wrappers for failure cases: reads go to the real store, puts can be refused on cue.

use std::sync::Arc;

use async_trait::async_trait;
use auditline::domain::{AuditLogEntry, HourlyCounts, QueryPlan, StatsRange, StoredPage, TenantId};
use auditline::erasure::Erasure;
use auditline::store::{AuditStore, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Decides, per put, whether to refuse it (with the error) or pass it to the real store.
pub type PutFilter = Box<dyn Fn(&AuditLogEntry) -> Option<StoreError> + Send + Sync>;

/// `inner`, with its puts refused whenever `refuse` says so.
pub struct RefusingPuts {
    pub inner: Arc<dyn AuditStore>,
    pub refuse: PutFilter,
}

#[async_trait]
impl AuditStore for RefusingPuts {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn put(&self, entry: &AuditLogEntry) -> Result<(), StoreError> {
        match (self.refuse)(entry) {
            Some(e) => Err(e),
            None => self.inner.put(entry).await,
        }
    }
    async fn erase(&self, tenant: &TenantId, id: Uuid, erasure: &Erasure) -> Result<(), StoreError> {
        self.inner.erase(tenant, id, erasure).await
    }
    async fn set_expiry(&self, tenant: &TenantId, id: Uuid, expires_at: i64) -> Result<(), StoreError> {
        self.inner.set_expiry(tenant, id, expires_at).await
    }
    async fn get(&self, tenant: &TenantId, id: Uuid, now: DateTime<Utc>) -> Result<Option<AuditLogEntry>, StoreError> {
        self.inner.get(tenant, id, now).await
    }
    async fn query(&self, plan: &QueryPlan, now: DateTime<Utc>) -> Result<StoredPage, StoreError> {
        self.inner.query(plan, now).await
    }
    async fn counts(
        &self,
        tenant: &TenantId,
        range: &StatsRange,
        now: DateTime<Utc>,
    ) -> Result<HourlyCounts, StoreError> {
        self.inner.counts(tenant, range, now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
