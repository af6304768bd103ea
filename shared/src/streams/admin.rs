//! Managing a tenant's streams (`audit:admin`): create, change, pause, rotate a webhook's secret,
//! delete, send a test event. Every change is a record in the trail (`LOG_STREAM`), showing the
//! settings and never a secret; a secret is shown once, when it is made.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use thiserror::Error;
use uuid::Uuid;

use super::delivery::{Deliverer, TestDelivery};
use super::destination::{
    CheckedTarget, CreateStream, Destination, Secrets, SigningSecret, StreamError, Target, TargetRequest, UpdateStream,
    check_name,
};
use super::outbound::{Loopback, resolve};
use super::secrets::{SecretBox, SecretContext, open, seal};
use super::store::{StoredStream, StreamStore, StreamStoreError};
use super::trail::{RecordError, Trail};
use super::webhook::WebhookSecret;
use crate::backend::BackendError;
use crate::domain::{Actor, AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry, TenantId};

/// The longest a rotated-out secret keeps signing.
pub const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long it signs unless the rotation says otherwise.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Changes retried when another change came first (and the request named no version).
const ATTEMPTS: usize = 3;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Invalid(#[from] StreamError),
    #[error("no such stream")]
    NotFound,
    #[error("the stream changed since version {0}; read it again")]
    Conflict(u64),
    #[error("a tenant may have at most {} streams", super::destination::MAX_STREAMS_PER_TENANT)]
    Limit,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl From<StreamStoreError> for AdminError {
    fn from(e: StreamStoreError) -> Self {
        match e {
            StreamStoreError::Limit => AdminError::Limit,
            StreamStoreError::Backend(b) => AdminError::Backend(b),
        }
    }
}

/// A change made: the stream as it is now, the secret to show (once), and the trail's record.
pub struct Changed {
    pub stream: StoredStream,
    pub secret: Option<String>,
    /// `None` when the request changed nothing.
    pub record: Option<AuditLogEntry>,
}

pub struct StreamAdmin {
    pub streams: Arc<dyn StreamStore>,
    pub secrets: Arc<dyn SecretBox>,
    pub trail: Arc<dyn Trail>,
    pub deliverer: Arc<Deliverer>,
    /// Whether plain HTTP to loopback is allowed (the local gateway only).
    pub loopback: Loopback,
}

impl StreamAdmin {
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<StoredStream>, AdminError> {
        Ok(self.streams.list(tenant).await?)
    }

    pub async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<StoredStream, AdminError> {
        self.streams.get(tenant, id).await?.ok_or(AdminError::NotFound)
    }

    /// The target checked, its URL resolved to public addresses only.
    async fn checked(&self, target: TargetRequest) -> Result<CheckedTarget, AdminError> {
        let checked = target.check(self.loopback)?;
        self.resolved(&checked).await?;
        Ok(checked)
    }

    /// Refuses a target whose URL's host does not resolve to public addresses only.
    async fn resolved(&self, checked: &CheckedTarget) -> Result<(), AdminError> {
        if let Some(url) = checked.target.url() {
            let parsed = url::Url::parse(url).map_err(|e| StreamError::new("target.url", e.to_string()))?;
            resolve(&parsed, self.loopback).await.map_err(|e| StreamError::url("target.url", &e))?;
        }
        Ok(())
    }

    pub async fn create(&self, tenant: &TenantId, request: CreateStream, by: &Actor) -> Result<Changed, AdminError> {
        let name = check_name(&request.name)?;
        let filter = request.filter.check()?;
        let kind = request.target.kind();
        let checked = self.checked(request.target).await?;
        let mut secrets = Secrets { headers: checked.headers.unwrap_or_default(), ..Secrets::default() };
        let mut shown = None;
        match kind {
            "webhook" => {
                let secret = WebhookSecret::generate().expose();
                secrets.signing.push(SigningSecret { secret: secret.clone(), retires_at: None });
                shown = Some(secret);
            }
            "splunk_hec" | "datadog" => {
                let field = if kind == "datadog" { "target.api_key" } else { "target.token" };
                secrets.token = Some(checked.token.ok_or_else(|| StreamError::new(field, "required"))?);
            }
            _ => {}
        }
        let now = self.trail.now();
        let id = Uuid::now_v7();
        let sealed_secrets = seal(self.secrets.as_ref(), SecretContext { tenant, stream: id }, &secrets).await?;
        let stream = Destination {
            tenant_id: tenant.clone(),
            id,
            name,
            target: checked.target,
            format: request.format,
            filter,
            paused: request.paused,
            sealed_secrets,
            previous_secret_retires_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.streams.create(&stream).await?;
        let record = Some(
            self.record(&stream, AuditAction::Create, settings_changes(&stream, &stream, Change::Create, &[]), by)
                .await?,
        );
        let stream = self.get(tenant, id).await?;
        Ok(Changed { stream, secret: shown, record })
    }

    pub async fn update(
        &self,
        tenant: &TenantId,
        id: Uuid,
        patch: UpdateStream,
        by: &Actor,
    ) -> Result<Changed, AdminError> {
        let name = patch.name.as_deref().map(check_name).transpose()?;
        let filter = patch.filter.map(|f| f.check()).transpose()?;
        let target = match patch.target {
            Some(target) => {
                let kind = target.kind();
                let checked = target.check(self.loopback)?;
                // Refused for its kind or its secrets before its name is looked up.
                let current = self.get(tenant, id).await?.stream;
                same_kind(&current, kind)?;
                secrets_follow(&current, &checked)?;
                self.resolved(&checked).await?;
                Some((kind, checked))
            }
            None => None,
        };
        for _ in 0..ATTEMPTS {
            let old = self.get(tenant, id).await?.stream;
            if patch.version.is_some_and(|v| v != old.version) {
                return Err(AdminError::Conflict(patch.version.unwrap_or_default()));
            }
            let mut new = old.clone();
            let mut secret_changes: Vec<&str> = Vec::new();
            if let Some(name) = &name {
                new.name = name.clone();
            }
            if let Some(filter) = &filter {
                new.filter = filter.clone();
            }
            if let Some(format) = patch.format {
                new.format = format;
            }
            if let Some(paused) = patch.paused {
                new.paused = paused;
            }
            if let Some((kind, checked)) = &target {
                same_kind(&old, kind)?;
                secrets_follow(&old, checked)?;
                new.target = checked.target.clone();
                // Headers left out stay as they were: their names too.
                if checked.headers.is_none()
                    && let (Target::Webhook { header_names, .. }, Target::Webhook { header_names: kept, .. }) =
                        (&mut new.target, &old.target)
                {
                    header_names.clone_from(kept);
                }
                if checked.token.is_some() || checked.headers.is_some() {
                    let context = SecretContext { tenant, stream: id };
                    let mut secrets = open(self.secrets.as_ref(), context, &old.sealed_secrets).await?;
                    if let Some(token) = &checked.token {
                        secrets.token = Some(token.clone());
                        secret_changes.push(if *kind == "datadog" { "api_key" } else { "token" });
                    }
                    if let Some(headers) = &checked.headers {
                        secrets.headers = headers.clone();
                        secret_changes.push("headers");
                    }
                    new.sealed_secrets = seal(self.secrets.as_ref(), context, &secrets).await?;
                }
            }
            let changes = settings_changes(&old, &new, Change::Update, &secret_changes);
            if changes.is_empty() {
                // Nothing to change: no new version, no record.
                let stream = self.get(tenant, id).await?;
                return Ok(Changed { stream, secret: None, record: None });
            }
            new.version = old.version + 1;
            new.updated_at = self.trail.now();
            if self.streams.replace(&new).await? {
                let record = Some(self.record(&new, AuditAction::Update, changes, by).await?);
                let stream = self.get(tenant, id).await?;
                return Ok(Changed { stream, secret: None, record });
            }
            if patch.version.is_some() {
                return Err(AdminError::Conflict(old.version));
            }
        }
        Err(AdminError::Conflict(0))
    }

    /// A new signing secret; the current one keeps signing for `overlap`, older ones stop now.
    pub async fn rotate(
        &self,
        tenant: &TenantId,
        id: Uuid,
        overlap: Duration,
        by: &Actor,
    ) -> Result<Changed, AdminError> {
        if overlap > MAX_OVERLAP {
            return Err(
                StreamError::new("overlap_seconds", format!("at most {} seconds", MAX_OVERLAP.as_secs())).into()
            );
        }
        for _ in 0..ATTEMPTS {
            let old = self.get(tenant, id).await?.stream;
            if old.target.kind() != "webhook" {
                return Err(StreamError::new("stream_id", "only a webhook stream has a signing secret").into());
            }
            let now = self.trail.now();
            let context = SecretContext { tenant, stream: id };
            let mut secrets = open(self.secrets.as_ref(), context, &old.sealed_secrets).await?;
            let retires_at = now + overlap;
            let current: Vec<SigningSecret> = secrets
                .signing
                .iter()
                .filter(|s| s.retires_at.is_none())
                .map(|s| SigningSecret { secret: s.secret.clone(), retires_at: Some(retires_at) })
                .collect();
            let secret = WebhookSecret::generate().expose();
            secrets.signing = std::iter::once(SigningSecret { secret: secret.clone(), retires_at: None })
                .chain(current.into_iter().filter(|_| !overlap.is_zero()))
                .collect();
            let mut new = old.clone();
            new.sealed_secrets = seal(self.secrets.as_ref(), context, &secrets).await?;
            new.previous_secret_retires_at = (!overlap.is_zero()).then_some(retires_at);
            new.version = old.version + 1;
            new.updated_at = now;
            if self.streams.replace(&new).await? {
                let mut changes = Map::new();
                changes.insert("signing_secret".into(), json!("rotated"));
                changes.insert(
                    "previous_secret_retires_at".into(),
                    json!(crate::domain::time::format_timestamp(retires_at)),
                );
                let record = Some(self.record(&new, AuditAction::Update, changes, by).await?);
                let stream = self.get(tenant, id).await?;
                return Ok(Changed { stream, secret: Some(secret), record });
            }
        }
        Err(AdminError::Conflict(0))
    }

    pub async fn delete(&self, tenant: &TenantId, id: Uuid, by: &Actor) -> Result<AuditLogEntry, AdminError> {
        let old = self.get(tenant, id).await?.stream;
        if !self.streams.delete(tenant, id).await? {
            return Err(AdminError::NotFound);
        }
        self.record(&old, AuditAction::Delete, settings_changes(&old, &old, Change::Delete, &[]), by).await
    }

    /// Sends a test event (an entry made for it, never stored) to the stream now, and answers how
    /// the receiver took it.
    pub async fn test(&self, tenant: &TenantId, id: Uuid, by: &Actor) -> Result<TestDelivery, AdminError> {
        let stream = self.get(tenant, id).await?.stream;
        let now = self.trail.now();
        let event = NewEntry {
            tenant_id: tenant.clone(),
            action: AuditAction::View,
            entity_type: EntityType::LogStream,
            entity_id: id.to_string(),
            details: EntryDetails {
                user_id: by.user_id.clone(),
                ip_address: by.ip_address.clone(),
                metadata: Some(json!({"test": true, "message": "a test event from auditline; it is not in the trail"})),
                ..EntryDetails::default()
            },
        };
        let entry = event
            .validate()
            .map_err(RecordError::from)?
            .stamp(now, self.trail.retention_days())
            .map_err(RecordError::from)?;
        Ok(self.deliverer.test(&stream, &entry, now).await)
    }

    async fn record(
        &self,
        stream: &Destination,
        action: AuditAction,
        changes: Map<String, Value>,
        by: &Actor,
    ) -> Result<AuditLogEntry, AdminError> {
        let record = NewEntry {
            tenant_id: stream.tenant_id.clone(),
            action,
            entity_type: EntityType::LogStream,
            entity_id: stream.id.to_string(),
            details: EntryDetails {
                user_id: by.user_id.clone(),
                ip_address: by.ip_address.clone(),
                changes: (!changes.is_empty()).then_some(Value::Object(changes)),
                metadata: Some(json!({"name": stream.name})),
                ..EntryDetails::default()
            },
        };
        Ok(self.trail.record(record).await?)
    }
}

/// A stream keeps its type.
fn same_kind(old: &Destination, kind: &str) -> Result<(), StreamError> {
    if kind == old.target.kind() {
        return Ok(());
    }
    Err(StreamError::new(
        "target.type",
        format!("a {} stream cannot become {kind}; create another stream", old.target.kind()),
    ))
}

/// A stored secret goes only where it was given for: a target whose URL changes (the HEC URL, a
/// Datadog site or intake URL, a webhook's URL) brings its token, API key or custom headers again
/// (`"headers": {}` for none). Otherwise any admin could point a stream at a receiver of their own
/// and read there the secrets the API never shows again.
fn secrets_follow(old: &Destination, new: &CheckedTarget) -> Result<(), StreamError> {
    let (Some(before), Some(after)) = (old.target.url(), new.target.url()) else {
        return Ok(());
    };
    if before == after {
        return Ok(());
    }
    let missing = match &old.target {
        Target::SplunkHec { .. } if new.token.is_none() => Some("target.token"),
        Target::Datadog { .. } if new.token.is_none() => Some("target.api_key"),
        Target::Webhook { header_names, .. } if !header_names.is_empty() && new.headers.is_none() => {
            Some("target.headers")
        }
        _ => None,
    };
    match missing {
        Some(field) => Err(StreamError::new(
            field,
            "required when the URL changes: a stored secret is only ever sent to the URL it was given for",
        )),
        None => Ok(()),
    }
}

/// What a record is of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Create,
    Update,
    Delete,
}

/// The record's changes: each setting that differs as `{old, new}` (all of them, new only, on
/// creation; old only on deletion), and the secrets that changed by name only.
fn settings_changes(old: &Destination, new: &Destination, change: Change, secrets: &[&str]) -> Map<String, Value> {
    let (Value::Object(before), Value::Object(after)) = (old.settings(), new.settings()) else {
        return Map::new();
    };
    let mut changes = Map::new();
    for (field, value) in after {
        let previous = before.get(&field).cloned().unwrap_or(Value::Null);
        match change {
            Change::Create => {
                changes.insert(field, json!({"new": value}));
            }
            Change::Delete => {
                changes.insert(field, json!({"old": previous}));
            }
            Change::Update if previous != value => {
                changes.insert(field, json!({"old": previous, "new": value}));
            }
            Change::Update => {}
        }
    }
    for secret in secrets {
        changes.insert((*secret).to_owned(), json!("changed"));
    }
    changes
}

/// When a rotation's overlap ends, for requests that give seconds.
pub fn overlap_of(seconds: Option<u64>) -> Duration {
    seconds.map_or(DEFAULT_OVERLAP, Duration::from_secs)
}

/// A stream's next retirement of a previous secret, if still ahead.
pub fn overlap_ends(stream: &Destination, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    stream.previous_secret_retires_at.filter(|t| *t > now)
}
