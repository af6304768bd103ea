//! The logger as the log streams' trail (the port they read entries and write records through).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AuditError, AuditLogger};
use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, NewEntry, TenantId};
use crate::store::StoreError;
use crate::streams::trail::{RecordError, Trail};

fn backend(e: AuditError) -> RecordError {
    match e {
        AuditError::Invalid(v) => RecordError::Invalid(v),
        AuditError::Store(StoreError::Backend(b)) => RecordError::Backend(b),
        // A sealed period or a clash of ids: retried, as any storage trouble.
        AuditError::Store(other) => RecordError::Backend(BackendError::Unavailable(other.to_string())),
    }
}

#[async_trait]
impl Trail for AuditLogger {
    async fn entry(&self, tenant: &TenantId, id: Uuid) -> Result<Option<AuditLogEntry>, BackendError> {
        self.get_log(tenant, id).await.map_err(|e| match backend(e) {
            RecordError::Backend(b) => b,
            RecordError::Invalid(v) => BackendError::Internal(v.to_string()),
        })
    }

    async fn record(&self, entry: NewEntry) -> Result<AuditLogEntry, RecordError> {
        self.log_service_record(entry).await.map_err(backend)
    }

    fn now(&self) -> DateTime<Utc> {
        AuditLogger::now(self)
    }

    fn retention_days(&self) -> u32 {
        self.settings().retention_days
    }
}
