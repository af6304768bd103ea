//! Retention per tenant, and legal holds. A tenant's policy sets how long its new entries are kept
//! (within the deployment's bounds; `AUDIT_RETENTION_DAYS` when unset) and the holds placed on it:
//! the whole tenant, or one entity, project or user. An entry a hold covers does not expire and
//! cannot be erased; its expiry (`expires_at`, outside the leaf) is set to [`HELD_UNTIL`] while held
//! and back to its tenant's retention when the last hold covering it is released.
//!
//! A changed retention applies to entries written after the change: entries already stored keep
//! the expiry they were written with (rewriting it would cost a write per stored entry).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, TenantId};

/// The expiry of a held entry: 9999-12-31T23:59:59Z, which DynamoDB's TTL never reaches.
pub const HELD_UNTIL: i64 = 253_402_300_799;
/// The shortest retention a tenant may set.
pub const MIN_RETENTION_DAYS: u32 = 1;
/// Holds one tenant may have at once: every write checks its entries against them.
pub const MAX_HOLDS: usize = 100;
pub const MAX_REASON_CHARS: usize = 1000;

/// What a hold covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HoldScope {
    Tenant,
    Entity { entity_id: String },
    Project { project_id: String },
    User { user_id: String },
}

/// Read by hand, not by serde's internally tagged enums: those take a variant's number for its
/// name (`"type": 0` would be a tenant-wide hold) and let a tenant scope carry stray ids.
impl<'de> Deserialize<'de> for HoldScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            entity_id: Option<String>,
            project_id: Option<String>,
            user_id: Option<String>,
        }
        let Raw { kind, entity_id, project_id, user_id } = Raw::deserialize(d)?;
        let scope = match (kind.as_str(), entity_id, project_id, user_id) {
            ("tenant", None, None, None) => HoldScope::Tenant,
            ("entity", Some(entity_id), None, None) => HoldScope::Entity { entity_id },
            ("project", None, Some(project_id), None) => HoldScope::Project { project_id },
            ("user", None, None, Some(user_id)) => HoldScope::User { user_id },
            (kind @ ("tenant" | "entity" | "project" | "user"), ..) => {
                let wanted = match kind {
                    "tenant" => "no id",
                    "entity" => "entity_id alone",
                    "project" => "project_id alone",
                    _ => "user_id alone",
                };
                return Err(serde::de::Error::custom(format!("a {kind} scope takes {wanted}")));
            }
            (other, ..) => {
                return Err(serde::de::Error::unknown_variant(other, &["tenant", "entity", "project", "user"]));
            }
        };
        Ok(scope)
    }
}

impl HoldScope {
    pub fn covers(&self, e: &AuditLogEntry) -> bool {
        match self {
            HoldScope::Tenant => true,
            HoldScope::Entity { entity_id } => &e.entity_id == entity_id,
            HoldScope::Project { project_id } => e.project_id.as_ref() == Some(project_id),
            HoldScope::User { user_id } => e.user_id.as_ref() == Some(user_id),
        }
    }
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    pub id: Uuid,
    pub scope: HoldScope,
    pub reason: String,
    pub placed_by: Option<String>,
    #[serde(with = "crate::domain::time::serde_millis")]
    pub placed_at: DateTime<Utc>,
}

/// A tenant's retention and holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// Days new entries are kept; `None`: the deployment's default.
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub holds: Vec<LegalHold>,
}

impl TenantPolicy {
    pub fn retention_days(&self, default: u32) -> u32 {
        self.retention_days.unwrap_or(default)
    }

    /// The first hold covering `e`, if any.
    pub fn hold_on(&self, e: &AuditLogEntry) -> Option<&LegalHold> {
        self.holds.iter().find(|h| h.scope.covers(e))
    }

    /// When `e` expires under this policy: never while a hold covers it, else its tenant's
    /// retention after its timestamp.
    pub fn expiry_of(&self, e: &AuditLogEntry, default_days: u32) -> i64 {
        match self.hold_on(e) {
            Some(_) => HELD_UNTIL,
            None => e.timestamp.timestamp() + i64::from(self.retention_days(default_days)) * 86_400,
        }
    }
}

/// Why a policy change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("retention_days must be {min} to {max}")]
    RetentionOutOfBounds { min: u32, max: u32 },
    #[error("reason must be 1 to {MAX_REASON_CHARS} characters")]
    Reason,
    #[error("{field} must be a non-empty identifier")]
    Scope { field: &'static str },
    #[error("a tenant may have at most {MAX_HOLDS} holds")]
    TooManyHolds,
    #[error("no hold {0}")]
    NoSuchHold(Uuid),
    #[error("next_token is not one a sweep of this hold answered")]
    SweepToken,
}

pub fn check_retention(days: u32, max: u32) -> Result<(), PolicyError> {
    if (MIN_RETENTION_DAYS..=max).contains(&days) {
        Ok(())
    } else {
        Err(PolicyError::RetentionOutOfBounds { min: MIN_RETENTION_DAYS, max })
    }
}

pub fn check_hold(scope: &HoldScope, reason: &str) -> Result<(), PolicyError> {
    if reason.trim().is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(PolicyError::Reason);
    }
    let (field, value) = match scope {
        HoldScope::Tenant => return Ok(()),
        HoldScope::Entity { entity_id } => ("entity_id", entity_id),
        HoldScope::Project { project_id } => ("project_id", project_id),
        HoldScope::User { user_id } => ("user_id", user_id),
    };
    crate::domain::validation::identifier(field, value).map_err(|_| PolicyError::Scope { field })
}

/// Where tenants' policies live. Versioned: a write names the version it read, so two changes
/// made at once cannot lose one another.
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync {
    /// The tenant's policy and its version (0 when it has none yet).
    async fn policy(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), BackendError>;

    /// Replaces the policy if its version is still `version` (it becomes `version + 1`); `false`
    /// if another change came first.
    async fn put_policy(&self, tenant: &TenantId, policy: &TenantPolicy, version: u64) -> Result<bool, BackendError>;
}

/// Policies in memory: tests, and the local gateway without a data directory.
#[derive(Default)]
pub struct MemoryPolicies {
    policies: std::sync::Mutex<std::collections::HashMap<TenantId, (TenantPolicy, u64)>>,
}

#[async_trait::async_trait]
impl PolicyStore for MemoryPolicies {
    async fn policy(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), BackendError> {
        let policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        Ok(policies.get(tenant).cloned().unwrap_or_default())
    }

    async fn put_policy(&self, tenant: &TenantId, policy: &TenantPolicy, version: u64) -> Result<bool, BackendError> {
        let mut policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        let current = policies.get(tenant).map_or(0, |(_, v)| *v);
        if current != version {
            return Ok(false);
        }
        policies.insert(tenant.clone(), (policy.clone(), version + 1));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditAction, EntityType, EntryDetails, NewEntry};

    fn entry(user: &str) -> AuditLogEntry {
        NewEntry {
            tenant_id: TenantId::parse("acme").unwrap(),
            action: AuditAction::Update,
            entity_type: EntityType::Report,
            entity_id: "report-7".into(),
            details: EntryDetails { user_id: Some(user.into()), ..EntryDetails::default() },
        }
        .validate()
        .unwrap()
        .stamp(Utc::now(), 90)
        .unwrap()
    }

    #[test]
    fn a_hold_keeps_what_it_covers_and_retention_sets_the_rest() {
        let hold = |scope| LegalHold {
            id: Uuid::now_v7(),
            scope,
            reason: "case".into(),
            placed_by: None,
            placed_at: Utc::now(),
        };
        let mut policy = TenantPolicy { retention_days: Some(7), holds: vec![] };
        let (alice, bob) = (entry("alice"), entry("bob"));
        assert_eq!(policy.expiry_of(&alice, 90), alice.timestamp.timestamp() + 7 * 86_400);
        policy.holds.push(hold(HoldScope::User { user_id: "alice".into() }));
        assert_eq!(policy.expiry_of(&alice, 90), HELD_UNTIL);
        assert_eq!(policy.expiry_of(&bob, 90), bob.timestamp.timestamp() + 7 * 86_400);
        policy.holds.push(hold(HoldScope::Tenant));
        assert_eq!(policy.expiry_of(&bob, 90), HELD_UNTIL);
        assert!(check_retention(0, 3650).is_err() && check_retention(3651, 3650).is_err());
        assert!(check_hold(&HoldScope::Entity { entity_id: "".into() }, "case").is_err());
        assert!(check_hold(&HoldScope::Tenant, " ").is_err());
    }

    #[test]
    fn a_scope_reads_only_by_its_name_with_exactly_its_id() {
        let read = |v: serde_json::Value| serde_json::from_value::<HoldScope>(v);
        assert_eq!(read(serde_json::json!({"type": "tenant"})).unwrap(), HoldScope::Tenant);
        let user = read(serde_json::json!({"type": "user", "user_id": "u-1"})).unwrap();
        assert_eq!(user, HoldScope::User { user_id: "u-1".into() });
        assert_eq!(read(serde_json::to_value(&user).unwrap()).unwrap(), user, "round trip");
        for bad in [
            serde_json::json!({"type": 0}),
            serde_json::json!({"type": 0, "user_id": "0"}),
            serde_json::json!({"type": "tenant", "user_id": "u-1"}),
            serde_json::json!({"type": "entity"}),
            serde_json::json!({"type": "entity", "entity_id": "e", "project_id": "p"}),
            serde_json::json!({"type": "team", "user_id": "u"}),
            serde_json::json!({"type": "user", "user_id": "u", "colour": "red"}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad} is refused");
        }
    }
}
