//! What log streams need of the trail, as a port the logger implements: an entry read again by
//! id (a job names entries, never carries them), the service's own records (a stream's changes,
//! its failing and recovery), and the clock and retention the trail stamps with.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, NewEntry, TenantId, ValidationError};

/// Why a record was not written.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

#[async_trait]
pub trait Trail: Send + Sync {
    /// An entry of `tenant`, unless it is gone (expired).
    async fn entry(&self, tenant: &TenantId, id: Uuid) -> Result<Option<AuditLogEntry>, BackendError>;

    /// Writes one of the service's own records.
    async fn record(&self, entry: NewEntry) -> Result<AuditLogEntry, RecordError>;

    fn now(&self) -> DateTime<Utc>;

    /// The retention a new entry gets by default (a test event is stamped with it, never stored).
    fn retention_days(&self) -> u32;
}
