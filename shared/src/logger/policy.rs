//! Retention changes and legal holds, done against the stores: the policy first (versioned, so two
//! changes at once cannot lose one), then its record in the trail, then — for holds — the expiry of
//! the entries the hold covers.

use chrono::{DateTime, Utc};
use serde_json::json;
use thiserror::Error;
use uuid::Uuid;

use super::{AuditError, AuditLogger, MAX_RETENTION_DAYS};
use crate::domain::time::uuid_v7_at;
use crate::domain::{
    AuditAction, AuditFilter, AuditLogEntry, AuditQuery, EntityType, EntryDetails, NewEntry, PageRequest, QueryScope,
    TenantId,
};
use crate::retention::{
    HELD_UNTIL, HoldScope, LegalHold, MAX_HOLDS, PolicyError, PolicyStore, TenantPolicy, check_hold, check_retention,
};
use crate::store::StoreError;

/// Rounds of read and conditional write when policy changes race.
const ATTEMPTS: usize = 5;
/// Writes that read the policy before a hold was placed may land after the first sweep passed
/// them: a second sweep, once their policy has aged out, covers the entries stamped since this
/// long before the hold (a write takes seconds at most).
const IN_FLIGHT: chrono::Duration = chrono::Duration::seconds(60);

/// A retention change done.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionChange {
    pub policy: TenantPolicy,
    pub record: AuditLogEntry,
}

/// A hold placed or released: the hold, its record, and how many entries' expiry it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldChange {
    pub hold: LegalHold,
    pub record: AuditLogEntry,
    pub entries: usize,
}

#[derive(Debug, Error)]
pub enum PolicyFailure {
    #[error("this deployment keeps no tenant policies")]
    Unsupported,
    #[error(transparent)]
    Refused(#[from] PolicyError),
    #[error("the tenant's policy kept changing while this request ran; send it again")]
    Conflict,
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<crate::backend::BackendError> for PolicyFailure {
    fn from(e: crate::backend::BackendError) -> Self {
        PolicyFailure::Audit(StoreError::Backend(e).into())
    }
}

/// Who made a change, from where: the record's `user_id` and `ip_address`.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub ip_address: Option<String>,
}

impl AuditLogger {
    fn policy_store(&self) -> Result<&dyn PolicyStore, PolicyFailure> {
        self.policies().map(|p| p.as_ref()).ok_or(PolicyFailure::Unsupported)
    }

    /// Reads the tenant's policy, applies `change`, and writes it at the version read; again if
    /// another change came first. Returns what `change` returned and the policy written.
    async fn change_policy<T>(
        &self,
        tenant: &TenantId,
        mut change: impl FnMut(&mut TenantPolicy) -> Result<T, PolicyError>,
    ) -> Result<(T, TenantPolicy), PolicyFailure> {
        let store = self.policy_store()?;
        for _ in 0..ATTEMPTS {
            let (mut policy, version) = store.policy(tenant).await?;
            let value = change(&mut policy)?;
            if store.put_policy(tenant, &policy, version).await? {
                return Ok((value, policy));
            }
        }
        Err(PolicyFailure::Conflict)
    }

    fn record(tenant: &TenantId, action: AuditAction, entity_type: EntityType, id: &str, by: &Actor) -> NewEntry {
        NewEntry {
            tenant_id: tenant.clone(),
            action,
            entity_type,
            entity_id: id.to_owned(),
            details: EntryDetails {
                user_id: by.user_id.clone(),
                ip_address: by.ip_address.clone(),
                ..EntryDetails::default()
            },
        }
    }

    /// Sets how long the tenant's new entries are kept; recorded in the trail.
    pub async fn set_retention(
        &self,
        tenant: &TenantId,
        days: u32,
        by: &Actor,
    ) -> Result<RetentionChange, PolicyFailure> {
        check_retention(days, MAX_RETENTION_DAYS)?;
        let default = self.settings().retention_days;
        let (old, policy) = self
            .change_policy(tenant, |p| {
                let old = p.retention_days(default);
                p.retention_days = Some(days);
                Ok(old)
            })
            .await?;
        let mut record = Self::record(tenant, AuditAction::Update, EntityType::AuditSettings, "retention", by);
        record.details.changes = Some(json!({"retention_days": {"old": old, "new": days}}));
        let record = self.log_service_record(record).await?;
        Ok(RetentionChange { policy, record })
    }

    /// Places a legal hold: recorded, then every entry it covers kept (its expiry set to never).
    pub async fn place_hold(
        &self,
        tenant: &TenantId,
        scope: HoldScope,
        reason: &str,
        by: &Actor,
    ) -> Result<HoldChange, PolicyFailure> {
        check_hold(&scope, reason)?;
        let placed_at = self.now();
        let hold = LegalHold {
            id: uuid_v7_at(placed_at),
            scope,
            reason: reason.trim().to_owned(),
            placed_by: by.user_id.clone(),
            placed_at,
        };
        self.change_policy(tenant, |p| {
            if p.holds.len() >= MAX_HOLDS {
                return Err(PolicyError::TooManyHolds);
            }
            p.holds.push(hold.clone());
            Ok(())
        })
        .await?;
        let mut record = Self::record(tenant, AuditAction::Create, EntityType::LegalHold, &hold.id.to_string(), by);
        record.details.changes = Some(json!({"scope": hold.scope}));
        record.details.metadata = Some(json!({"reason": hold.reason}));
        let record = self.log_service_record(record).await?;
        let hold_them = |e: &AuditLogEntry, _: &TenantPolicy| (e.expires_at != HELD_UNTIL).then_some(HELD_UNTIL);
        let mut entries = self.sweep(tenant, &hold.scope, None, hold_them).await?;
        // Writes still using the policy from before the hold have stopped by now.
        tokio::time::sleep(self.policy_ttl()).await;
        entries += self.sweep(tenant, &hold.scope, Some(placed_at - IN_FLIGHT), hold_them).await?;
        Ok(HoldChange { hold, record, entries })
    }

    /// Releases a legal hold: recorded, then the entries it kept and no other hold covers expire
    /// again by their tenant's retention (at once, if that is past).
    pub async fn release_hold(&self, tenant: &TenantId, id: Uuid, by: &Actor) -> Result<HoldChange, PolicyFailure> {
        let (hold, _) = self
            .change_policy(tenant, |p| {
                let at = p.holds.iter().position(|h| h.id == id).ok_or(PolicyError::NoSuchHold(id))?;
                Ok(p.holds.remove(at))
            })
            .await?;
        let mut record = Self::record(tenant, AuditAction::Delete, EntityType::LegalHold, &hold.id.to_string(), by);
        record.details.changes = Some(json!({"scope": hold.scope}));
        let record = self.log_service_record(record).await?;
        let default = self.settings().retention_days;
        // Judged by the policy as it is at each page: a hold placed meanwhile keeps what it covers.
        let release = |e: &AuditLogEntry, policy: &TenantPolicy| {
            (e.expires_at == HELD_UNTIL && policy.hold_on(e).is_none()).then(|| policy.expiry_of(e, default))
        };
        let entries = self.sweep(tenant, &hold.scope, None, release).await?;
        Ok(HoldChange { hold, record, entries })
    }

    /// Sets the expiry `new_expiry` gives each live entry `scope` covers (stamped from `since`),
    /// judged with the tenant's policy read afresh for each page; returns how many it changed.
    async fn sweep(
        &self,
        tenant: &TenantId,
        scope: &HoldScope,
        since: Option<DateTime<Utc>>,
        new_expiry: impl Fn(&AuditLogEntry, &TenantPolicy) -> Option<i64>,
    ) -> Result<usize, AuditError> {
        let (scope_of_query, user_id) = match scope {
            HoldScope::Tenant => (QueryScope::Tenant, None),
            HoldScope::Entity { entity_id } => (QueryScope::Entity(entity_id.clone()), None),
            HoldScope::Project { project_id } => (QueryScope::Project(project_id.clone()), None),
            HoldScope::User { user_id } => (QueryScope::Tenant, Some(user_id.clone())),
        };
        let filter = AuditFilter { user_id, start_date: since, ..AuditFilter::default() };
        let mut query = AuditQuery { scope: scope_of_query, filter, page: PageRequest::first(1000) };
        let mut changed = 0;
        loop {
            let page = self.get_logs(tenant, &query).await?;
            let policy = self.policy_of(tenant).await?;
            for e in page.entries.iter().filter(|e| scope.covers(e)) {
                if let Some(expires_at) = new_expiry(e, &policy) {
                    match self.store().set_expiry(tenant, e.id, expires_at).await {
                        Ok(()) => changed += 1,
                        // Expired meanwhile: nothing left to keep or release.
                        Err(StoreError::NotFound(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    // A held entry's erasure records are kept with it (on release they stay:
                    // a record may cover other entries still held).
                    if expires_at == HELD_UNTIL {
                        for record in e.integrity.erased_by.values().collect::<std::collections::BTreeSet<_>>() {
                            match self.store().set_expiry(tenant, *record, HELD_UNTIL).await {
                                Ok(()) | Err(StoreError::NotFound(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                }
            }
            match page.next_token {
                Some(token) => query.page = PageRequest { next_token: Some(token), ..PageRequest::first(1000) },
                None => return Ok(changed),
            }
        }
    }
}
