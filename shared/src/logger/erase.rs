//! [`AuditLogger::erase`]: the erasure of [`crate::erasure`], done against the store — the record
//! first, then the entry.

use futures::StreamExt;
use thiserror::Error;
use uuid::Uuid;

use super::{Actor, AuditError, AuditLogger};
use crate::domain::{AuditFilter, AuditLogEntry, AuditQuery, EntityType, PageRequest, QueryScope, TenantId};
use crate::erasure::{Erasure, ErasureError, ErasureRequest, record, record_names, record_of_many, remaining_fields};
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
                    self.log_service_record_covering(new, &[&entry]).await?
                }
            };
            let erasure = Erasure::plan(&entry, &fields, record.id)?;
            self.shred_archived(tenant, id, &fields, record.id).await?;
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

    /// Destroys the archive's keys of `fields` of entry `id` — before the entry is erased, so that
    /// a request cut off between the two leaves the copy in the archive erased (and the record
    /// naming it written), and the next request erases the entry.
    async fn shred_archived(
        &self,
        tenant: &TenantId,
        id: Uuid,
        fields: &[&str],
        record: Uuid,
    ) -> Result<(), StoreError> {
        match &self.archive_keys {
            Some(keys) => Ok(keys.shred(tenant, id, fields, record).await?),
            None => Ok(()),
        }
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

/// The record an erasure names for its fields (the same for all of them).
fn erasure_record(erasure: &Erasure) -> Uuid {
    erasure.fields.first().and_then(|f| erasure.after.erased_by.get(*f)).copied().unwrap_or_default()
}

/// Erasures of one page written at once.
const ERASURES_AT_ONCE: usize = 8;

/// What one call of [`AuditLogger::erase_subject`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubjectProgress {
    /// Entries erased in this call.
    pub erased: usize,
    /// Entries a legal hold kept from erasure (seen in this call).
    pub held: usize,
    /// Entries that changed while being erased (another erasure, a hold placed meanwhile): run
    /// the subject again to take them up.
    pub missed: usize,
    /// Entries that do not match their leaf, left as they are (their failure is the verifier's).
    pub failed: usize,
    /// The erasure records written, one per page of entries.
    pub records: Vec<Uuid>,
    /// Where to go on from (pass it back), or `None`: every entry of the subject is done.
    pub next_token: Option<String>,
    /// When done: the record of the result in the trail.
    pub result: Option<AuditLogEntry>,
}

impl AuditLogger {
    /// Erases `request.fields` from every entry of `user_id` in `tenant`, a page at a time (the
    /// user index), each page under one erasure record; entries a hold covers are skipped and
    /// counted. Stops after `budget` with a `next_token` to go on from; when the subject is done,
    /// writes the result into the trail (counts and fields, never the subject).
    pub async fn erase_subject(
        &self,
        tenant: &TenantId,
        user_id: &str,
        request: &ErasureRequest,
        by: &Actor,
        next_token: Option<String>,
        budget: std::time::Duration,
    ) -> Result<SubjectProgress, EraseFailure> {
        let fields = request.named_fields()?;
        let started = std::time::Instant::now();
        let policy = self.policy_of(tenant).await?;
        let filter = AuditFilter { user_id: Some(user_id.to_owned()), ..AuditFilter::default() };
        let page = PageRequest { next_token, ..PageRequest::first(crate::erasure::ENTRIES_PER_RECORD) };
        let mut query = AuditQuery { scope: QueryScope::Tenant, filter, page };
        let mut progress = SubjectProgress::default();
        loop {
            let page = self.get_logs(tenant, &query).await?;
            let mut targets: Vec<(&AuditLogEntry, Vec<&'static str>)> = Vec::new();
            for e in page.entries.iter().filter(|e| e.user_id.as_deref() == Some(user_id)) {
                let remaining = remaining_fields(e, &fields);
                if remaining.is_empty() {
                    continue;
                }
                if policy.hold_on(e).is_some() {
                    progress.held += 1;
                    continue;
                }
                targets.push((e, remaining));
            }
            // One record per set of fields erased: a record names exactly what each of its
            // entries lost (a service record of the subject keeps more than a plain entry).
            let mut groups: Vec<(Vec<&'static str>, Vec<&AuditLogEntry>)> = Vec::new();
            for (e, remaining) in &targets {
                match groups.iter_mut().find(|(fields, _)| fields == remaining) {
                    Some((_, entries)) => entries.push(e),
                    None => groups.push((remaining.clone(), vec![e])),
                }
            }
            for (group_fields, entries) in groups {
                // Planned before anything is written: an entry that does not match its leaf is
                // skipped (and counted), not a record naming an erasure that never happens.
                let placeholder = Uuid::nil();
                let planned: Vec<&AuditLogEntry> = entries
                    .into_iter()
                    .filter(|e| {
                        let ok = Erasure::plan(e, &group_fields, placeholder).is_ok();
                        progress.failed += usize::from(!ok);
                        ok
                    })
                    .collect();
                if planned.is_empty() {
                    continue;
                }
                let new = record_of_many(
                    &planned,
                    &group_fields,
                    request.reason.trim(),
                    by.user_id.clone(),
                    by.ip_address.clone(),
                );
                let record = self.log_service_record_covering(new, &planned).await?;
                progress.records.push(record.id);
                let erasures: Vec<(Uuid, Erasure)> = planned
                    .iter()
                    .map(|e| Ok((e.id, Erasure::plan(e, &group_fields, record.id)?)))
                    .collect::<Result<_, ErasureError>>()?;
                let writes: Vec<_> = erasures
                    .iter()
                    .map(|(id, erasure)| async move {
                        self.shred_archived(tenant, *id, &erasure.fields, erasure_record(erasure)).await?;
                        self.store().erase(tenant, *id, erasure).await
                    })
                    .collect();
                let outcomes: Vec<Result<(), StoreError>> =
                    futures::stream::iter(writes).buffer_unordered(ERASURES_AT_ONCE).collect().await;
                for outcome in outcomes {
                    match outcome {
                        Ok(()) => progress.erased += 1,
                        // Changed meanwhile (another erasure, or a hold placed since): counted;
                        // run the subject again to take them up.
                        Err(StoreError::Changed(_)) => progress.missed += 1,
                        Err(StoreError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            match page.next_token {
                Some(token) if started.elapsed() >= budget => {
                    progress.next_token = Some(token);
                    return Ok(progress);
                }
                Some(token) => {
                    query.page = PageRequest {
                        next_token: Some(token),
                        ..PageRequest::first(crate::erasure::ENTRIES_PER_RECORD)
                    };
                }
                None => break,
            }
        }
        let mut result = record_of_many(&[], &fields, request.reason.trim(), by.user_id.clone(), by.ip_address.clone());
        result.tenant_id = tenant.clone();
        result.details.changes = Some(serde_json::json!({
            "subject_erasure": {
                "done": progress.missed == 0,
                "fields": fields,
                "erased": progress.erased,
                "held": progress.held,
                "missed": progress.missed,
                "failed": progress.failed,
            }
        }));
        progress.result = Some(self.log_service_record(result).await?);
        Ok(progress)
    }
}
