//! API keys. A key is shown once, when it is created; only its SHA-256 hash is stored, and that hash
//! is the record's id, so checking a key is one lookup by id. Keys are 256 random bits, for which an
//! unsalted fast hash is the right tool (there is nothing to brute-force).

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Secret;
use crate::backend::BackendError;
use crate::domain::time::serde_millis;
use crate::domain::{TenantId, ValidationError, validation};

/// Every key starts with this, so secret scanners can recognise a leaked one.
pub const API_KEY_PREFIX: &str = "alk_";
const RANDOM_BYTES: usize = 32;
/// Length of a well-formed key: the prefix and 32 bytes in unpadded base64url.
pub const API_KEY_LEN: usize = API_KEY_PREFIX.len() + 43;

/// What is stored about a key. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Hex SHA-256 of the key: the lookup id.
    pub key_id: String,
    pub tenant_id: TenantId,
    pub user_id: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(with = "serde_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "optional_millis")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked: bool,
}

mod optional_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => crate::domain::time::serde_millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.to_utc()).map_err(serde::de::Error::custom)).transpose()
    }
}

/// A key just created: the only moment its plain text exists.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub key: Secret,
    pub record: ApiKeyRecord,
}

/// The hash that identifies a key.
pub fn key_id(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `key` has the shape of a key this service issues; anything else is refused without a lookup.
pub fn is_well_formed(key: &str) -> bool {
    key.len() == API_KEY_LEN
        && key.starts_with(API_KEY_PREFIX)
        && key[API_KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_scopes(scopes: &[String]) -> Result<(), ValidationError> {
    for scope in scopes {
        validation::identifier("scopes", scope)?;
        if scope.contains(char::is_whitespace) {
            return Err(ValidationError::InvalidCharacters { field: "scopes" });
        }
    }
    Ok(())
}

/// Makes a new key for `user_id` in `tenant` with `scopes`.
pub fn generate(
    tenant_id: TenantId,
    user_id: &str,
    scopes: Vec<String>,
    name: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<CreatedApiKey, ValidationError> {
    validation::identifier("user_id", user_id)?;
    check_scopes(&scopes)?;
    if let Some(n) = &name {
        validation::identifier("name", n)?;
    }
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let record = ApiKeyRecord {
        key_id: key_id(&key),
        tenant_id,
        user_id: user_id.to_owned(),
        scopes,
        name,
        created_at: now,
        expires_at,
        revoked: false,
    };
    Ok(CreatedApiKey { key: Secret::new(key), record })
}

/// The outcome of checking a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyCheck {
    Valid(ApiKeyRecord),
    Unknown,
    Revoked,
    Expired,
}

/// Decides whether a presented API key is good (the seed's `api_key_validator`). Implement it to
/// plug in another key system; every [`ApiKeyStore`] is one.
#[async_trait]
pub trait ApiKeyValidator: Send + Sync {
    async fn check(&self, key: &str, now: DateTime<Utc>) -> Result<ApiKeyCheck, BackendError>;
}

/// Where key records live.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// The record with this id: one read.
    async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, BackendError>;
    /// Adds a record; never overwrites.
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), BackendError>;
    /// The tenant's keys, oldest first.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, BackendError>;
    /// Marks a key revoked; false if there is no such key.
    async fn revoke(&self, key_id: &str) -> Result<bool, BackendError>;
}

#[async_trait]
impl<S: ApiKeyStore + ?Sized> ApiKeyValidator for S {
    async fn check(&self, key: &str, now: DateTime<Utc>) -> Result<ApiKeyCheck, BackendError> {
        if !is_well_formed(key) {
            return Ok(ApiKeyCheck::Unknown);
        }
        Ok(match self.find(&key_id(key)).await? {
            None => ApiKeyCheck::Unknown,
            Some(r) if r.revoked => ApiKeyCheck::Revoked,
            Some(r) if r.expires_at.is_some_and(|e| e <= now) => ApiKeyCheck::Expired,
            Some(r) => ApiKeyCheck::Valid(r),
        })
    }
}

/// Keys held in memory: the local default, and tests.
#[derive(Default)]
pub struct MemoryApiKeys(RwLock<HashMap<String, ApiKeyRecord>>);

impl MemoryApiKeys {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, BackendError> {
        Ok(self.0.read().unwrap_or_else(|p| p.into_inner()).get(key_id).cloned())
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), BackendError> {
        let mut keys = self.0.write().unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(&record.key_id) {
            return Err(BackendError::Internal("an API key with this id exists".into()));
        }
        keys.insert(record.key_id.clone(), record.clone());
        Ok(())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, BackendError> {
        let keys = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut mine: Vec<ApiKeyRecord> = keys.values().filter(|r| &r.tenant_id == tenant).cloned().collect();
        mine.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
        Ok(mine)
    }

    async fn revoke(&self, key_id: &str) -> Result<bool, BackendError> {
        let mut keys = self.0.write().unwrap_or_else(|p| p.into_inner());
        Ok(keys.get_mut(key_id).map(|r| r.revoked = true).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_well_formed_and_stored_only_as_hashes() {
        let now = Utc::now();
        let a = generate(TenantId::default(), "svc", vec!["audit:read".into()], None, None, now).unwrap();
        let b = generate(TenantId::default(), "svc", vec![], None, None, now).unwrap();
        assert_ne!(a.key.expose(), b.key.expose());
        assert!(is_well_formed(a.key.expose()));
        assert_eq!(a.record.key_id, key_id(a.key.expose()));
        assert_eq!(a.record.key_id.len(), 64);
        let stored = serde_json::to_string(&a.record).unwrap();
        assert!(!stored.contains(a.key.expose()), "the record never holds the key");
        assert!(!format!("{a:?}").contains(a.key.expose()), "Debug never prints the key");
        assert!(!is_well_formed("alk_short"));
        assert!(!is_well_formed(&format!("xyz_{}", &a.key.expose()[4..])));
        assert!(generate(TenantId::default(), "svc", vec!["has space".into()], None, None, now).is_err());
    }
}
