//! The live feed: WebSocket connections, which entries each may see, and pushing entries to them.
//! No AWS types here: connections live behind [`ConnectionStore`], delivery behind [`Pusher`], so the
//! Lambda functions and the local gateway share all of it.

pub mod checkpoints;
pub mod fanout;
pub mod redelivery;

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::scopes::{self, AUDIT_READ};
use crate::auth::{AuthMethod, Caller};
use crate::backend::BackendError;
use crate::domain::time::serde_millis;
use crate::domain::{AuditAction, AuditLogEntry, EntityType, TenantId, ValidationError, validation};

/// API Gateway closes a WebSocket after 2 hours at most; a record never outlives that, so one whose
/// `$disconnect` never arrived does not linger, and a revoked API key stops receiving within it.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::hours(2);

/// How many live connections one tenant, and one principal (user or API key holder) within it, may
/// hold. A tenant cannot take the feed's whole capacity, nor one leaked credential its tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub per_tenant: usize,
    pub per_principal: usize,
}

impl ConnectionLimits {
    pub const DEFAULT_PER_TENANT: usize = 10_000;
    pub const DEFAULT_PER_PRINCIPAL: usize = 100;
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { per_tenant: Self::DEFAULT_PER_TENANT, per_principal: Self::DEFAULT_PER_PRINCIPAL }
    }
}

/// A tenant's live connections, and how many of them belong to one principal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub tenant: usize,
    pub principal: usize,
}

impl ConnectionCounts {
    /// Counts a tenant's live connections by their owners (`None`: anonymous).
    pub fn tally<'a>(owners: impl IntoIterator<Item = Option<&'a str>>, principal: Option<&str>) -> Self {
        owners.into_iter().fold(ConnectionCounts::default(), |mut counts, owner| {
            counts.tenant += 1;
            counts.principal += usize::from(principal.is_some() && owner == principal);
            counts
        })
    }
}

/// Why a connection is refused although its credentials are good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    #[error("a read scope is required to receive entries: audit:read or <kind>:read (e.g. reports:read)")]
    NoReadScope,
    #[error("this tenant has {0} live connections, its limit; close some or ask for a higher limit")]
    TenantLimit(usize),
    #[error("these credentials hold {0} live connections, their limit; close some before opening more")]
    PrincipalLimit(usize),
}

/// Whether `scopes` let a client receive anything at all: `audit:read`, or `<kind>:read` for at
/// least one entity type (wildcards as usual).
pub fn may_subscribe<S: AsRef<str>>(scopes: &[S]) -> bool {
    scopes::has_scope(scopes, AUDIT_READ)
        || EntityType::ALL.iter().any(|t| scopes::has_scope(scopes, &scopes::read_scope_for(*t)))
}

/// The `$connect` rule: a read scope, and room under both limits.
pub fn admit(caller: &Caller, counts: ConnectionCounts, limits: ConnectionLimits) -> Result<(), ConnectRefusal> {
    if !may_subscribe(&caller.scopes) {
        return Err(ConnectRefusal::NoReadScope);
    }
    if counts.tenant >= limits.per_tenant {
        return Err(ConnectRefusal::TenantLimit(limits.per_tenant));
    }
    if counts.principal >= limits.per_principal {
        return Err(ConnectRefusal::PrincipalLimit(limits.per_principal));
    }
    Ok(())
}

/// What a client may ask for when it connects, to narrow (never widen) what it receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionFilters {
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub entity_type: Option<EntityType>,
    #[serde(default)]
    pub action: Option<AuditAction>,
}

impl ConnectionFilters {
    /// Reads `project_id`, `entity_type` and `action` from the connect request's query.
    pub fn from_query<'q>(get: impl Fn(&str) -> Option<&'q str>) -> Result<Self, ValidationError> {
        let present = |name: &str| get(name).map(str::trim).filter(|v| !v.is_empty());
        let project_id = present("project_id").map(str::to_owned);
        if let Some(p) = &project_id {
            validation::identifier("project_id", p)?;
        }
        Ok(ConnectionFilters {
            project_id,
            entity_type: present("entity_type").map(str::parse).transpose()?,
            action: present("action").map(str::parse).transpose()?,
        })
    }

    pub fn matches(&self, e: &AuditLogEntry) -> bool {
        self.project_id.as_ref().is_none_or(|p| e.project_id.as_ref() == Some(p))
            && self.entity_type.is_none_or(|t| e.entity_type == t)
            && self.action.is_none_or(|a| e.action == a)
    }
}

/// One open WebSocket connection (the seed's `WebSocketConnectionInfo`), as stored at `$connect`
/// from what the authorizer established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSocketConnectionInfo {
    pub connection_id: String,
    pub tenant_id: TenantId,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub auth_method: AuthMethod,
    #[serde(with = "serde_millis")]
    pub connected_at: DateTime<Utc>,
    /// Epoch seconds after which the record is ignored and removed (TTL): the earlier of the
    /// credential's expiry and [`MAX_CONNECTION_LIFETIME`].
    pub expires_at: i64,
    #[serde(default)]
    pub filters: ConnectionFilters,
    /// Stream batches in which delivery to this connection failed; at the fan-out's limit the
    /// connection is dropped instead of holding the stream back.
    #[serde(default)]
    pub strikes: u32,
}

impl WebSocketConnectionInfo {
    pub fn new(connection_id: &str, caller: &Caller, filters: ConnectionFilters, now: DateTime<Utc>) -> Self {
        WebSocketConnectionInfo {
            connection_id: connection_id.to_owned(),
            tenant_id: caller.tenant_id.clone(),
            user_id: caller.user_id.clone(),
            scopes: caller.scopes.clone(),
            auth_method: caller.auth_method,
            connected_at: now,
            expires_at: caller
                .credential_expires_at
                .map_or(i64::MAX, |e| e.timestamp())
                .min((now + MAX_CONNECTION_LIFETIME).timestamp()),
            filters,
            strikes: 0,
        }
    }

    /// The identity the connection was opened with (the seed's `auth_info`).
    pub fn auth_info(&self) -> Caller {
        Caller {
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            scopes: self.scopes.clone(),
            auth_method: self.auth_method,
            credential_expires_at: DateTime::from_timestamp(self.expires_at, 0),
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.auth_method != AuthMethod::Anonymous
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        scopes::has_scope(&self.scopes, scope)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now.timestamp()
    }

    /// The delivery rule: an entry of the connection's own tenant, which the connection may read
    /// (`audit:read`, or `<kind>:read` for the entry's entity type; wildcards as usual), and which
    /// its filters let through.
    pub fn may_receive(&self, entry: &AuditLogEntry) -> bool {
        entry.tenant_id == self.tenant_id
            && (self.has_scope(AUDIT_READ) || self.has_scope(&scopes::read_scope_for(entry.entity_type)))
            && self.filters.matches(entry)
    }

    /// Whether the connection is told of an erasure record it may not receive whole: every
    /// connection of the tenant may have a copy of an erased entry to drop, whatever its scope
    /// and filters. The notice carries ids and field names only.
    pub fn may_receive_erasure_notice(&self, entry: &AuditLogEntry) -> bool {
        entry.tenant_id == self.tenant_id && crate::erasure::named_by_record(entry).is_some()
    }
}

/// Where connection records live.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn put(&self, connection: &WebSocketConnectionInfo) -> Result<(), BackendError>;
    /// Removes a record; removing one that is not there is not an error.
    async fn remove(&self, connection_id: &str) -> Result<(), BackendError>;
    /// A tenant's live connections: one Query on the tenant index, never a Scan.
    async fn tenant_connections(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError>;
    /// How many live connections the tenant has, and how many of them `principal` holds.
    async fn count(
        &self,
        tenant: &TenantId,
        principal: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ConnectionCounts, BackendError>;
    /// Counts one more failed batch against a connection; returns its strikes so far (0 if the
    /// record is gone).
    async fn strike(&self, connection_id: &str) -> Result<u32, BackendError>;
}

/// The seed's connection-manager queries, over a tenant's connections.
pub struct ConnectionManager<'a> {
    store: &'a dyn ConnectionStore,
}

impl<'a> ConnectionManager<'a> {
    pub fn new(store: &'a dyn ConnectionStore) -> Self {
        ConnectionManager { store }
    }

    pub async fn get_authenticated_connections(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        self.matching(tenant, |c| c.is_authenticated()).await
    }

    pub async fn get_connections_by_user_id(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        self.matching(tenant, |c| c.user_id.as_deref() == Some(user_id)).await
    }

    /// Connections granted `scope` (so `reports:*` and `*` count for `reports:read`).
    pub async fn get_connections_with_scope(
        &self,
        tenant: &TenantId,
        scope: &str,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        self.matching(tenant, |c| c.has_scope(scope)).await
    }

    async fn matching(
        &self,
        tenant: &TenantId,
        keep: impl Fn(&WebSocketConnectionInfo) -> bool,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        let mut all = self.store.tenant_connections(tenant, Utc::now()).await?;
        all.retain(keep);
        Ok(all)
    }
}

/// Connection records in memory: the local gateway's default, and tests. Kept by tenant (as the
/// DynamoDB table's `by_tenant` index), so reading one tenant's never walks another's.
#[derive(Default)]
pub struct MemoryConnections(RwLock<Records>);

#[derive(Default)]
struct Records {
    tenant_of: HashMap<String, TenantId>,
    by_tenant: HashMap<TenantId, BTreeMap<String, WebSocketConnectionInfo>>,
}

impl MemoryConnections {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).tenant_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Records> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Records {
    fn remove(&mut self, connection_id: &str) {
        if let Some(tenant) = self.tenant_of.remove(connection_id)
            && let Some(records) = self.by_tenant.get_mut(&tenant)
        {
            records.remove(connection_id);
            if records.is_empty() {
                self.by_tenant.remove(&tenant);
            }
        }
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn put(&self, connection: &WebSocketConnectionInfo) -> Result<(), BackendError> {
        let mut records = self.write();
        records.remove(&connection.connection_id);
        let Records { tenant_of, by_tenant } = &mut *records;
        let mine = by_tenant.entry(connection.tenant_id.clone()).or_default();
        // Expired records go when their tenant connects again (TTL's part, in memory).
        let now = Utc::now();
        let expired: Vec<String> =
            mine.values().filter(|c| c.is_expired(now)).map(|c| c.connection_id.clone()).collect();
        for id in expired {
            mine.remove(&id);
            tenant_of.remove(&id);
        }
        mine.insert(connection.connection_id.clone(), connection.clone());
        tenant_of.insert(connection.connection_id.clone(), connection.tenant_id.clone());
        Ok(())
    }

    async fn remove(&self, connection_id: &str) -> Result<(), BackendError> {
        self.write().remove(connection_id);
        Ok(())
    }

    async fn tenant_connections(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        let records = self.read();
        let mine = records.by_tenant.get(tenant).into_iter().flat_map(|m| m.values());
        Ok(mine.filter(|c| !c.is_expired(now)).cloned().collect())
    }

    async fn count(
        &self,
        tenant: &TenantId,
        principal: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ConnectionCounts, BackendError> {
        let records = self.read();
        let live = records.by_tenant.get(tenant).into_iter().flat_map(|m| m.values()).filter(|c| !c.is_expired(now));
        Ok(ConnectionCounts::tally(live.map(|c| c.user_id.as_deref()), principal))
    }

    async fn strike(&self, connection_id: &str) -> Result<u32, BackendError> {
        let mut records = self.write();
        let Some(tenant) = records.tenant_of.get(connection_id).cloned() else { return Ok(0) };
        Ok(records.by_tenant.get_mut(&tenant).and_then(|m| m.get_mut(connection_id)).map_or(0, |c| {
            c.strikes += 1;
            c.strikes
        }))
    }
}

/// Why a message could not be pushed to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The connection is gone (HTTP 410): remove its record; not a failure of the entry.
    Gone,
    /// The message is larger than the connection accepts.
    TooLarge,
    /// Too many messages at once; a retry may succeed.
    Throttled,
    /// Not allowed to post (a configuration fault); retrying will not help.
    Forbidden,
    /// Anything else (network, 5xx); a retry may succeed.
    Other(String),
}

impl PushError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PushError::Throttled | PushError::Other(_))
    }
}

/// Sends a message to one connection: the API Gateway Management API when deployed, the local
/// gateway's own WebSocket sessions when run locally.
#[async_trait]
pub trait Pusher: Send + Sync {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError>;
    /// Closes a connection (the client sees it close, reconnects and catches up over HTTP).
    async fn close(&self, connection_id: &str) -> Result<(), PushError>;
}
