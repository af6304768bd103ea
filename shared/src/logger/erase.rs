//! [`AuditLogger::erase`]: the erasure of [`crate::erasure`], done against the store — the record
//! first, then the entry.

use thiserror::Error;
use uuid::Uuid;

use super::{Actor, AuditError, AuditLogger};
use crate::domain::{AuditFilter, AuditLogEntry, AuditQuery, EntityType, PageRequest, QueryScope, TenantId};
use crate::erasure::{Erasure, ErasureError, ErasureRequest, record, record_names};
use crate::store::StoreError;

/// An erasure done: the entry as it is now, and its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Erased {
    pub entry: AuditLogEntry,
    pub record: AuditLogEntry,
}

/// Why [`AuditLogger::erase`] did not erase.
#[derive(Debug, Error)]
pub enum EraseFailure {
    #[error("no such entry")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] ErasureError),
    /// A legal hold covers the entry: it cannot be erased until the hold is released.
    #[error("legal hold {0} covers this entry: it cannot be erased until the hold is released")]
    Held(Uuid),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<StoreError> for EraseFailure {
    fn from(e: StoreError) -> Self {
        EraseFailure::Audit(e.into())
    }
}

/// Rounds of read, plan, conditional write when erasures of one entry race.
const ATTEMPTS: usize = 3;

impl AuditLogger {
    /// Erases `request.fields` of entry `id` of `tenant`, on behalf of `by`: the
    /// record first, then the entry. Written whether or not `AUDIT_ENABLED` is on: without its
    /// record an erasure would not verify.
    pub async fn erase(
        &self,
        tenant: &TenantId,
        id: Uuid,
        request: &ErasureRequest,
        by: &Actor,
    ) -> Result<Erased, EraseFailure> {
        let mut last = EraseFailure::Audit(StoreError::Changed(id).into());
        for _ in 0..ATTEMPTS {
            let entry = self.get_log(tenant, id).await?.ok_or(EraseFailure::NotFound)?;
            if let Some(hold) = self.policy_of(tenant).await?.hold_on(&entry) {
                return Err(EraseFailure::Held(hold.id));
            }
            let fields = request.fields_of(&entry)?;
            let record = match self.pending_record(&entry, &fields).await? {
                Some(record) => record,
                None => {
                    let new = record(&entry, &fields, request.reason.trim(), by.user_id.clone(), by.ip_address.clone());
                    self.log_service_record(new).await?
                }
            };
            let erasure = Erasure::plan(&entry, &fields, record.id)?;
            match self.store().erase(tenant, id, &erasure).await {
                Ok(()) => {
                    let mut entry = entry;
                    erasure.apply(&mut entry);
                    tracing::info!(tenant = %tenant, entry = %id, record = %record.id, ?fields, "fields erased");
                    return Ok(Erased { entry, record });
                }
                // Another erasure of this entry won the race: read it again. A record written
                // in this round stays, pending, and the next round finds it.
                Err(StoreError::Changed(_)) => last = EraseFailure::Audit(StoreError::Changed(id).into()),
                Err(StoreError::NotFound(_)) => return Err(EraseFailure::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last)
    }

    /// A record of `entry` naming `fields` whose erasure was never applied (its request stopped
    /// between the two writes): the entry's records are in the entity index under its id.
    async fn pending_record(
        &self,
        entry: &AuditLogEntry,
        fields: &[&'static str],
    ) -> Result<Option<AuditLogEntry>, AuditError> {
        let filter = AuditFilter { entity_type: Some(EntityType::AuditEntry), ..AuditFilter::default() };
        let query = AuditQuery {
            scope: QueryScope::Entity(entry.id.to_string()),
            filter,
            page: PageRequest { limit: 100, ..PageRequest::default() },
        };
        let page = self.get_logs(&entry.tenant_id, &query).await?;
        Ok(page.entries.into_iter().find(|r| record_names(r, entry, fields)))
    }
}
