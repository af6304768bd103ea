//! `AuditLogger`: the Rust counterpart of the seed's audit logging service. Create one per process
//! (a Lambda function makes one per cold start) and share it; it is cheap to clone behind an `Arc`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

mod erase;
mod policy;
mod trail;

pub use erase::{EraseFailure, Erased, SubjectProgress};
pub use policy::{Actor, HOLD_SWEEP_BUDGET, HoldChange, PolicyFailure, RetentionChange, SweepProgress};

use crate::archive::shred::ArchiveKeys;
use crate::domain::StatsBucket;
use crate::domain::query::PAGE_BYTE_BUDGET;
use crate::domain::time;
use crate::domain::{
    AuditAction, AuditFilter, AuditLogEntry, AuditPage, AuditQuery, AuditStats, EntityType, EntryDetails, NewEntry,
    PageRequest, QueryScope, StatsRange, TenantId, ValidEntry, ValidationError,
};
use crate::retention::{HELD_UNTIL, PolicyStore, TenantPolicy};
use crate::store::{AuditStore, StoreError};

pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Ten years: longer retention belongs in an archive, not in the live table.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Whether logging is on and how long entries are kept (`AUDIT_ENABLED`, `AUDIT_RETENTION_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    pub enabled: bool,
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { enabled: true, retention_days: DEFAULT_RETENTION_DAYS }
    }
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of a `log_*` call.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "returned once per call and moved, never stored in bulk")]
pub enum LogOutcome {
    Stored(AuditLogEntry),
    /// `AUDIT_ENABLED` is false: the entry was validated but deliberately not stored.
    Disabled,
}

impl LogOutcome {
    pub fn entry(&self) -> Option<&AuditLogEntry> {
        match self {
            LogOutcome::Stored(e) => Some(e),
            LogOutcome::Disabled => None,
        }
    }
}

/// The seed's per-action shorthands: `log_create(tenant, entity_type, entity_id, details)` and so on.
macro_rules! log_shorthands {
    ($($(#[$doc:meta])* $name:ident => $action:ident),+ $(,)?) => {
        impl AuditLogger {
            $($(#[$doc])*
            pub async fn $name(
                &self,
                tenant: &TenantId,
                entity_type: EntityType,
                entity_id: &str,
                details: EntryDetails,
            ) -> Result<LogOutcome, AuditError> {
                self.log_action(AuditAction::$action, tenant, entity_type, entity_id, details).await
            })+
        }
    };
}

log_shorthands!(
    /// Logs a CREATE.
    log_create => Create,
    /// Logs an UPDATE; put `{"before": …, "after": …}` in `changes`.
    log_update => Update,
    /// Logs a DELETE.
    log_delete => Delete,
    /// Logs a LINK between entities.
    log_link => Link,
    /// Logs an UNLINK.
    log_unlink => Unlink,
    /// Logs a VIEW.
    log_view => View,
);

/// A function told about every stored entry, in the process that stored it.
pub type Listener = Arc<dyn Fn(&AuditLogEntry) + Send + Sync>;

/// Returned by [`AuditLogger::add_listener`]; pass it to [`AuditLogger::remove_listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// Where the current time comes from; tests substitute a fixed one.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageHealth {
    pub backend: &'static str,
    pub reachable: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `healthy`, `degraded` (storage not reachable) or `disabled` (AUDIT_ENABLED=false).
    pub status: &'static str,
    pub enabled: bool,
    pub retention_days: u32,
    pub listeners: usize,
    pub storage: StorageHealth,
}

pub struct AuditLogger {
    store: Arc<dyn AuditStore>,
    settings: AuditSettings,
    clock: Clock,
    listeners: RwLock<Vec<(ListenerId, Listener)>>,
    next_listener: AtomicU64,
    /// Tenants' retention and legal holds; without it, every tenant keeps the default retention.
    policies: Option<Arc<dyn PolicyStore>>,
    /// How long writes may use a policy read before; see [`POLICY_CACHE`].
    policy_ttl: Duration,
    policy_cache: std::sync::Mutex<std::collections::HashMap<TenantId, (Instant, TenantPolicy)>>,
    /// The archive's keys, which an erasure destroys (the archive's copy is write-once).
    archive_keys: Option<Arc<dyn ArchiveKeys>>,
    /// How long a hold's sweep runs before it answers with a token to go on from (`None`: to the end).
    sweep_budget: Option<Duration>,
}

/// How long a deployed function's writes reuse a tenant's policy they read (so most writes read
/// none). A hold placed meanwhile still covers their entries: placing one waits this long, then
/// sweeps the entries written since once more.
pub const POLICY_CACHE: Duration = Duration::from_secs(5);

impl AuditLogger {
    pub fn new(store: Arc<dyn AuditStore>, settings: AuditSettings) -> Self {
        Self::with_clock(store, settings, Arc::new(Utc::now))
    }

    pub fn with_clock(store: Arc<dyn AuditStore>, settings: AuditSettings, clock: Clock) -> Self {
        AuditLogger {
            store,
            settings,
            clock,
            listeners: RwLock::default(),
            next_listener: AtomicU64::new(1),
            policies: None,
            policy_ttl: Duration::ZERO,
            policy_cache: std::sync::Mutex::default(),
            archive_keys: None,
            sweep_budget: None,
        }
    }

    /// A hold's sweep (placing or releasing it) stops after `budget` and answers with a token to go
    /// on from: a request must end before its function's timeout however many entries a hold covers.
    pub fn with_sweep_budget(mut self, budget: Duration) -> Self {
        self.sweep_budget = Some(budget);
        self
    }

    pub(crate) fn sweep_budget(&self) -> Option<Duration> {
        self.sweep_budget
    }

    /// Erasures also destroy the archive's keys of the fields they erase.
    pub fn with_archive_keys(mut self, keys: Arc<dyn ArchiveKeys>) -> Self {
        self.archive_keys = Some(keys);
        self
    }

    /// Stamps each tenant's entries with its own retention, and holds what its holds cover. Each
    /// write reads the tenant's policy afresh.
    pub fn with_policies(mut self, policies: Arc<dyn PolicyStore>) -> Self {
        self.policies = Some(policies);
        self
    }

    /// As [`with_policies`](Self::with_policies), writes reusing a policy for up to `ttl`.
    pub fn with_cached_policies(mut self, policies: Arc<dyn PolicyStore>, ttl: Duration) -> Self {
        self.policies = Some(policies);
        self.policy_ttl = ttl;
        self
    }

    /// How long writes may use a policy read before.
    pub fn policy_ttl(&self) -> Duration {
        self.policy_ttl
    }

    /// The policy a write is stamped under: read within the last [`policy_ttl`](Self::policy_ttl).
    async fn policy_for_write(&self, tenant: &TenantId) -> Result<TenantPolicy, AuditError> {
        if !self.policy_ttl.is_zero() {
            let cache = self.policy_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, policy)) = cache.get(tenant).filter(|(read, _)| read.elapsed() < self.policy_ttl) {
                return Ok(policy.clone());
            }
        }
        self.policy_of(tenant).await
    }

    pub fn policies(&self) -> Option<&Arc<dyn PolicyStore>> {
        self.policies.as_ref()
    }

    /// The tenant's policy (the default one without a policy store), read strongly: a hold placed
    /// a moment ago covers the next write.
    pub async fn policy_of(&self, tenant: &TenantId) -> Result<TenantPolicy, AuditError> {
        let Some(p) = &self.policies else { return Ok(TenantPolicy::default()) };
        let policy = p.policy(tenant).await.map_err(StoreError::Backend)?.0;
        if !self.policy_ttl.is_zero() {
            let mut cache = self.policy_cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.insert(tenant.clone(), (Instant::now(), policy.clone()));
        }
        Ok(policy)
    }

    /// Sets a freshly stamped entry's expiry by its tenant's policy.
    fn expire_by(&self, entry: &mut AuditLogEntry, policy: &TenantPolicy) {
        entry.expires_at = policy.expiry_of(entry, self.settings.retention_days);
    }

    pub fn settings(&self) -> AuditSettings {
        self.settings
    }

    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// The current time, as this logger stamps entries.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Validates, stamps (id, timestamp, expiry), stores and announces one entry.
    pub async fn log(&self, entry: NewEntry) -> Result<LogOutcome, AuditError> {
        let valid = entry.validate()?;
        if !self.settings.enabled {
            return Ok(LogOutcome::Disabled);
        }
        let policy = self.policy_for_write(valid.tenant()).await?;
        let mut entry = valid.clone().stamp((self.clock)(), self.settings.retention_days)?;
        self.expire_by(&mut entry, &policy);
        let put = self.store.put(&entry).await;
        self.finish(valid, entry, put, false).await
    }

    /// Writes one of the service's own records (an erasure, a retention change, a legal hold):
    /// stored and announced as any entry, whether or not `AUDIT_ENABLED` is on.
    pub async fn log_service_record(&self, entry: NewEntry) -> Result<AuditLogEntry, AuditError> {
        self.log_service_record_covering(entry, &[]).await
    }

    /// A service record about `covering` (an erasure's entries), kept at least as long as the
    /// longest-kept of them: a record must not expire before an entry that needs it to verify.
    pub async fn log_service_record_covering(
        &self,
        entry: NewEntry,
        covering: &[&AuditLogEntry],
    ) -> Result<AuditLogEntry, AuditError> {
        let valid = entry.validate()?;
        let policy = self.policy_for_write(valid.tenant()).await?;
        let mut entry = valid.clone().stamp((self.clock)(), self.settings.retention_days)?;
        self.expire_by(&mut entry, &policy);
        entry.expires_at = covering.iter().map(|e| e.expires_at).fold(entry.expires_at, i64::max);
        let put = self.store.put(&entry).await;
        match self.finish(valid, entry, put, false).await? {
            LogOutcome::Stored(entry) => Ok(entry),
            LogOutcome::Disabled => {
                Err(StoreError::Backend(crate::backend::BackendError::Internal("a record was not stored".into()))
                    .into())
            }
        }
    }

    /// Logs an entry whose id is derived from `at`, its `position` in a request and the request's
    /// `identity` (see [`crate::domain::time::derived_uuid_v7`]). Written again with the same
    /// three — a retried request whose first attempt was cut off — it is not stored twice: the
    /// store refuses the existing id and the entry stored the first time is returned.
    pub async fn log_once(
        &self,
        entry: NewEntry,
        at: DateTime<Utc>,
        position: u16,
        identity: &[u8],
    ) -> Result<LogOutcome, AuditError> {
        let valid = entry.validate()?;
        if !self.settings.enabled {
            return Ok(LogOutcome::Disabled);
        }
        let policy = self.policy_for_write(valid.tenant()).await?;
        let mut entry =
            valid.clone().stamp_as(time::derived_uuid_v7(at, position, identity), self.settings.retention_days)?;
        self.expire_by(&mut entry, &policy);
        let put = self.store.put(&entry).await;
        self.finish(valid, entry, put, true).await
    }

    /// Logs one request's entries together — the store writes them in one go where it can — each
    /// as [`log`](Self::log) would, or with `once` (the request's time and identity) as
    /// [`log_once`](Self::log_once) would at its position. Answers each entry's outcome in order.
    pub async fn log_all(
        &self,
        entries: Vec<(u16, NewEntry)>,
        once: Option<(DateTime<Utc>, &[u8])>,
    ) -> Vec<Result<LogOutcome, AuditError>> {
        let mut outcomes: Vec<Result<LogOutcome, AuditError>> = Vec::with_capacity(entries.len());
        let mut stamped = Vec::new();
        // One read of each tenant's policy per request.
        let mut policies: std::collections::HashMap<TenantId, TenantPolicy> = std::collections::HashMap::new();
        for (position, entry) in entries {
            let valid = match entry.validate() {
                Ok(valid) => valid,
                Err(e) => {
                    outcomes.push(Err(e.into()));
                    continue;
                }
            };
            if !self.settings.enabled {
                outcomes.push(Ok(LogOutcome::Disabled));
                continue;
            }
            let policy = match policies.get(valid.tenant()) {
                Some(policy) => policy,
                None => match self.policy_for_write(valid.tenant()).await {
                    Ok(policy) => policies.entry(valid.tenant().clone()).or_insert(policy),
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                },
            };
            let retention = self.settings.retention_days;
            let entry = match once {
                Some((at, identity)) => {
                    valid.clone().stamp_as(time::derived_uuid_v7(at, position, identity), retention)
                }
                None => valid.clone().stamp((self.clock)(), retention),
            };
            match entry {
                Ok(mut entry) => {
                    entry.expires_at = policy.expiry_of(&entry, retention);
                    // A placeholder, replaced below by the put's outcome.
                    stamped.push((outcomes.len(), valid, entry));
                    outcomes.push(Ok(LogOutcome::Disabled));
                }
                Err(e) => outcomes.push(Err(e.into())),
            }
        }
        let entries: Vec<AuditLogEntry> = stamped.iter().map(|(_, _, entry)| entry.clone()).collect();
        let puts = self.store.put_all(&entries).await;
        for ((slot, valid, entry), put) in stamped.into_iter().zip(puts) {
            outcomes[slot] = self.finish(valid, entry, put, once.is_some()).await;
        }
        outcomes
    }

    /// What a put of a stamped entry comes to: stored (and announced to listeners), stamped again
    /// if a seal closed its period meanwhile, or — written `once` before — the entry stored then.
    async fn finish(
        &self,
        valid: ValidEntry,
        entry: AuditLogEntry,
        put: Result<(), StoreError>,
        once: bool,
    ) -> Result<LogOutcome, AuditError> {
        let entry = match put {
            Ok(()) => entry,
            // Stamped, then held up past the seal's grace: nothing was written, so stamp it again.
            Err(StoreError::Sealed(_)) if !once => {
                let mut again = valid.stamp((self.clock)(), self.settings.retention_days)?;
                // The policy read for the first stamp: held stays held, a retention stays the same.
                again.expires_at = match entry.expires_at {
                    HELD_UNTIL => HELD_UNTIL,
                    kept => again.timestamp.timestamp() + (kept - entry.timestamp.timestamp()),
                };
                self.store.put(&again).await?;
                again
            }
            Err(StoreError::AlreadyExists(id)) if once => {
                return match self.store.get(&entry.tenant_id, id, (self.clock)()).await? {
                    Some(first) => Ok(LogOutcome::Stored(first)),
                    None => Err(StoreError::AlreadyExists(id).into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        self.notify(&entry);
        Ok(LogOutcome::Stored(entry))
    }

    async fn log_action(
        &self,
        action: AuditAction,
        tenant: &TenantId,
        entity_type: EntityType,
        entity_id: &str,
        details: EntryDetails,
    ) -> Result<LogOutcome, AuditError> {
        let entry_id = entity_id.to_owned();
        self.log(NewEntry { tenant_id: tenant.clone(), action, entity_type, entity_id: entry_id, details }).await
    }

    /// One entry of `tenant` by id; `None` also for another tenant's id, so existence never leaks.
    pub async fn get_log(&self, tenant: &TenantId, id: Uuid) -> Result<Option<AuditLogEntry>, AuditError> {
        Ok(self.store.get(tenant, id, (self.clock)()).await?)
    }

    /// The general query: any scope, any filters, offset or cursor paging. Newest first.
    pub async fn get_logs(&self, tenant: &TenantId, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let plan = query.plan(tenant)?;
        let stored = if plan.is_empty() { Default::default() } else { self.store.query(&plan, (self.clock)()).await? };
        let stored = stored.within_bytes(PAGE_BYTE_BUDGET);
        Ok(AuditPage {
            entries: stored.entries,
            limit: query.page.limit,
            offset: query.page.offset,
            next_token: stored.continuation.map(|at| plan.next_token(at)),
        })
    }

    async fn filtered(
        &self,
        tenant: &TenantId,
        scope: QueryScope,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        self.get_logs(tenant, &AuditQuery { scope, filter, page }).await
    }

    pub async fn get_logs_by_entity(
        &self,
        tenant: &TenantId,
        entity_id: &str,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        self.filtered(tenant, QueryScope::Entity(entity_id.to_owned()), AuditFilter::default(), page).await
    }

    pub async fn get_logs_by_project(
        &self,
        tenant: &TenantId,
        project_id: &str,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        self.filtered(tenant, QueryScope::Project(project_id.to_owned()), AuditFilter::default(), page).await
    }

    pub async fn get_logs_by_action(
        &self,
        tenant: &TenantId,
        action: AuditAction,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        let filter = AuditFilter { action: Some(action), ..AuditFilter::default() };
        self.filtered(tenant, QueryScope::Tenant, filter, page).await
    }

    pub async fn get_logs_by_user(
        &self,
        tenant: &TenantId,
        user_id: &str,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        let filter = AuditFilter { user_id: Some(user_id.to_owned()), ..AuditFilter::default() };
        self.filtered(tenant, QueryScope::Tenant, filter, page).await
    }

    /// Entries stamped from `start` to `end`, both inclusive.
    pub async fn get_logs_by_date_range(
        &self,
        tenant: &TenantId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<AuditPage, AuditError> {
        let filter = AuditFilter { start_date: Some(start), end_date: Some(end), ..AuditFilter::default() };
        self.filtered(tenant, QueryScope::Tenant, filter, page).await
    }

    /// Totals by action and entity type over whole UTC hours covering `start..=end`.
    pub async fn get_stats(
        &self,
        tenant: &TenantId,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<AuditStats, AuditError> {
        self.get_stats_series(tenant, start, end, None).await
    }

    /// [`get_stats`](Self::get_stats), with the counts per hour or day too when `bucket` is given
    /// (from the same counters, in the same one Query).
    pub async fn get_stats_series(
        &self,
        tenant: &TenantId,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        bucket: Option<StatsBucket>,
    ) -> Result<AuditStats, AuditError> {
        let range = StatsRange::new(start, end)?;
        let hourly = self.store.counts(tenant, &range, (self.clock)()).await?;
        Ok(AuditStats::of_hours(&hourly, &range, bucket))
    }

    /// Reports configuration and whether storage answers within `timeout`; never hangs longer.
    pub async fn health(&self, timeout: Duration) -> HealthReport {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.store.ping()).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "storage health check failed");
                Some("storage did not answer correctly".to_owned())
            }
            Err(_) => Some(format!("storage did not answer within {} ms", timeout.as_millis())),
        };
        let reachable = error.is_none();
        HealthReport {
            status: match (self.settings.enabled, reachable) {
                (false, _) => "disabled",
                (true, true) => "healthy",
                (true, false) => "degraded",
            },
            enabled: self.settings.enabled,
            retention_days: self.settings.retention_days,
            listeners: self.listeners.read().map_or(0, |l| l.len()),
            storage: StorageHealth { backend: self.store.backend(), reachable, latency_ms, error },
        }
    }

    /// Registers a function to be told, in this process, about every entry stored from now on.
    pub fn add_listener(&self, listener: impl Fn(&AuditLogEntry) + Send + Sync + 'static) -> ListenerId {
        let id = ListenerId(self.next_listener.fetch_add(1, Ordering::Relaxed));
        self.listeners.write().unwrap_or_else(|p| p.into_inner()).push((id, Arc::new(listener)));
        id
    }

    /// Unregisters a listener; true if it was registered.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.listeners.write().unwrap_or_else(|p| p.into_inner());
        let before = listeners.len();
        listeners.retain(|(l, _)| *l != id);
        listeners.len() != before
    }

    /// Tells every listener. A panicking listener is logged and skipped: it must not undo a write
    /// that has already been stored, nor keep the other listeners from hearing of it.
    fn notify(&self, entry: &AuditLogEntry) {
        let listeners: Vec<(ListenerId, Listener)> = self.listeners.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (id, listener) in listeners {
            if catch_unwind(AssertUnwindSafe(|| listener(entry))).is_err() {
                tracing::error!(listener = id.0, entry_id = %entry.id, "audit listener panicked");
            }
        }
    }
}
