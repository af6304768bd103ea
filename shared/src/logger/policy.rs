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

/// How long a deployed hold's sweep runs in one request (API Gateway waits 30 s) before it answers
/// with a token to go on from.
pub const HOLD_SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// Entries a sweep reads at a time.
const SWEEP_PAGE: usize = 1000;

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

/// A hold placed or released: the hold, its record, and how many entries' expiry it changed; with
/// a `next_token` when the sweep stopped at its budget (go on with [`AuditLogger::continue_sweep`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldChange {
    pub hold: LegalHold,
    pub record: AuditLogEntry,
    pub entries: usize,
    pub next_token: Option<String>,
}

/// A sweep gone on with: entries changed in this call, and where to go on from (`None`: done).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepProgress {
    pub entries: usize,
    pub next_token: Option<String>,
}

/// How far a hold's sweep has gone: the state of the job is the caller's token, so there is no job
/// table. Forging one gains nothing: a hold sweep changes only entries a standing hold covers, a
/// release sweep only entries no hold covers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sweep {
    tenant: TenantId,
    hold: Uuid,
    scope: HoldScope,
    release: bool,
    /// A hold sweeps twice: everything, then (once writes' cached policies have aged out) what was
    /// stamped since just before it was placed.
    second_pass: bool,
    #[serde(with = "crate::domain::time::serde_millis")]
    placed_at: DateTime<Utc>,
    /// The entry query's page to go on from.
    page: Option<String>,
}

impl Sweep {
    fn token(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a sweep serialises"))
    }

    fn of_token(token: &str, tenant: &TenantId, hold: Option<Uuid>) -> Result<Sweep, PolicyError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim().as_bytes())
            .map_err(|_| PolicyError::SweepToken)?;
        let sweep: Sweep = serde_json::from_slice(&bytes).map_err(|_| PolicyError::SweepToken)?;
        if &sweep.tenant != tenant || hold.is_some_and(|h| h != sweep.hold) {
            return Err(PolicyError::SweepToken);
        }
        Ok(sweep)
    }
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

pub use crate::domain::Actor;

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
        let sweep = Sweep {
            tenant: tenant.clone(),
            hold: hold.id,
            scope: hold.scope.clone(),
            release: false,
            second_pass: false,
            placed_at,
            page: None,
        };
        let progress = self.run_sweep(sweep).await?;
        Ok(HoldChange { hold, record, entries: progress.entries, next_token: progress.next_token })
    }

    /// Goes on with the sweep of placing or releasing a hold (of `hold`, when given) from the
    /// `next_token` it answered.
    pub async fn continue_sweep(
        &self,
        tenant: &TenantId,
        next_token: &str,
        hold: Option<Uuid>,
    ) -> Result<SweepProgress, PolicyFailure> {
        Ok(self.run_sweep(Sweep::of_token(next_token, tenant, hold)?).await?)
    }

    /// Runs a sweep until it is done or its budget is spent.
    async fn run_sweep(&self, mut sweep: Sweep) -> Result<SweepProgress, AuditError> {
        let deadline = self.sweep_budget().and_then(|b| std::time::Instant::now().checked_add(b));
        let default = self.settings().retention_days;
        let hold_id = sweep.hold;
        // Judged by the policy as it is at each page: a hold released meanwhile keeps nothing more,
        // a hold placed meanwhile keeps what it covers.
        let hold_them = move |e: &AuditLogEntry, policy: &TenantPolicy| {
            (e.expires_at != HELD_UNTIL && policy.holds.iter().any(|h| h.id == hold_id)).then_some(HELD_UNTIL)
        };
        let release = move |e: &AuditLogEntry, policy: &TenantPolicy| {
            (e.expires_at == HELD_UNTIL && policy.hold_on(e).is_none()).then(|| policy.expiry_of(e, default))
        };
        let mut entries = 0;
        loop {
            if sweep.second_pass {
                // Writes still using the policy from before the hold have stopped by now.
                let aged = sweep.placed_at + chrono::Duration::from_std(self.policy_ttl()).unwrap_or_default();
                if let Ok(wait) = (aged - self.now()).to_std() {
                    tokio::time::sleep(wait).await;
                }
            }
            let since = sweep.second_pass.then(|| sweep.placed_at - IN_FLIGHT);
            let judge: &(dyn Fn(&AuditLogEntry, &TenantPolicy) -> Option<i64> + Sync) =
                if sweep.release { &release } else { &hold_them };
            let (changed, page) =
                self.sweep(&sweep.tenant, &sweep.scope, since, sweep.page.take(), deadline, judge).await?;
            entries += changed;
            match page {
                Some(page) => sweep.page = Some(page),
                None if sweep.release || sweep.second_pass => return Ok(SweepProgress { entries, next_token: None }),
                None => sweep.second_pass = true,
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(SweepProgress { entries, next_token: Some(sweep.token()) });
            }
        }
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
        let sweep = Sweep {
            tenant: tenant.clone(),
            hold: hold.id,
            scope: hold.scope.clone(),
            release: true,
            second_pass: false,
            placed_at: hold.placed_at,
            page: None,
        };
        let progress = self.run_sweep(sweep).await?;
        Ok(HoldChange { hold, record, entries: progress.entries, next_token: progress.next_token })
    }

    /// Sets the expiry `new_expiry` gives each live entry `scope` covers (stamped from `since`),
    /// judged with the tenant's policy read afresh for each page, from page `from`; stops after the
    /// page that passes `deadline`. Returns how many it changed and the page to go on from.
    async fn sweep(
        &self,
        tenant: &TenantId,
        scope: &HoldScope,
        since: Option<DateTime<Utc>>,
        from: Option<String>,
        deadline: Option<std::time::Instant>,
        new_expiry: &(dyn Fn(&AuditLogEntry, &TenantPolicy) -> Option<i64> + Sync),
    ) -> Result<(usize, Option<String>), AuditError> {
        let (scope_of_query, user_id) = match scope {
            HoldScope::Tenant => (QueryScope::Tenant, None),
            HoldScope::Entity { entity_id } => (QueryScope::Entity(entity_id.clone()), None),
            HoldScope::Project { project_id } => (QueryScope::Project(project_id.clone()), None),
            HoldScope::User { user_id } => (QueryScope::Tenant, Some(user_id.clone())),
        };
        let filter = AuditFilter { user_id, start_date: since, ..AuditFilter::default() };
        let page = PageRequest { next_token: from, ..PageRequest::first(SWEEP_PAGE) };
        let mut query = AuditQuery { scope: scope_of_query, filter, page };
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
                Some(token) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
                    return Ok((changed, Some(token)));
                }
                Some(token) => query.page = PageRequest { next_token: Some(token), ..PageRequest::first(SWEEP_PAGE) },
                None => return Ok((changed, None)),
            }
        }
    }
}
