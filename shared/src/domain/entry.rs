//! The audit entry: what happened, to what, by whom, when and from where.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::time;
pub use super::validation::JsonObject;
use super::validation::{self, ValidationError};
use crate::integrity::canonical::InexactNumber;
use crate::integrity::leaf::Integrity;

/// Largest accepted entry, measured as its JSON serialisation. DynamoDB items may hold 400 KB; the
/// key attributes and DynamoDB's own encoding need headroom, and a smaller bound keeps write cost sane.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The allowed strings, for error messages.
            pub const ALLOWED: &'static str = concat!($($text, " "),+);

            /// The exact wire string.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            /// Strict: only the exact upper-case wire strings are accepted.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::UnknownValue { field: $field, allowed: $name::ALLOWED.trim_end() }),
                }
            }
        }
    };
}

string_enum!(
    /// What was done.
    AuditAction, "action" {
        Create = "CREATE",
        Update = "UPDATE",
        Delete = "DELETE",
        Link = "LINK",
        Unlink = "UNLINK",
        View = "VIEW",
    }
);

string_enum!(
    /// What kind of thing it was done to.
    EntityType, "entity_type" {
        Project = "PROJECT",
        Entity = "ENTITY",
        Relationship = "RELATIONSHIP",
        File = "FILE",
        Report = "REPORT",
        Template = "TEMPLATE",
        Schedule = "SCHEDULE",
        AuditEntry = "AUDIT_ENTRY",
        AuditSettings = "AUDIT_SETTINGS",
        LegalHold = "LEGAL_HOLD",
        LogStream = "LOG_STREAM",
    }
);

impl EntityType {
    /// The resource name used in scopes such as `reports:read`.
    pub fn scope_resource(self) -> &'static str {
        match self {
            EntityType::Project => "projects",
            EntityType::Entity => "entities",
            EntityType::Relationship => "relationships",
            EntityType::File => "files",
            EntityType::Report => "reports",
            EntityType::Template => "templates",
            EntityType::Schedule => "schedules",
            EntityType::AuditEntry | EntityType::AuditSettings | EntityType::LegalHold | EntityType::LogStream => {
                "audit"
            }
        }
    }

    /// The service's own records (erasures, retention changes, legal holds, log streams): written
    /// by the service alone, never through `POST /audit/logs`, so a writer cannot forge one.
    pub fn is_service_record(self) -> bool {
        matches!(
            self,
            EntityType::AuditEntry | EntityType::AuditSettings | EntityType::LegalHold | EntityType::LogStream
        )
    }

    /// The entity types applications write.
    pub fn application_types() -> impl Iterator<Item = EntityType> {
        EntityType::ALL.iter().copied().filter(|t| !t.is_service_record())
    }
}

/// The tenant an entry belongs to. Every read and write is confined to one tenant.
///
/// The character set excludes `#`, which the storage layer uses as a key separator, so that no tenant
/// id can be crafted to collide with another tenant's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The tenant of callers whose credentials name none.
    pub const DEFAULT: &'static str = "default";
    pub const MAX_LEN: usize = validation::MAX_TENANT_BYTES;

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        validation::tenant_id(value)?;
        Ok(TenantId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        TenantId(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validation::tenant_id(&value)?;
        Ok(TenantId(value))
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

/// One immutable audit record. Field names and value strings are the seed's `AuditLogEntry`, plus
/// `tenant_id`, `expires_at` (the retention deadline, epoch seconds, used as DynamoDB TTL) and
/// `integrity` (its leaf hash and the salts behind it; see [`crate::integrity::leaf`]).
///
/// `id` is a UUIDv7 and `timestamp` is the millisecond embedded in it, so ordering by id is ordering
/// by time; the stores rely on that for newest-first reads and date ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLogEntry {
    pub id: Uuid,
    #[serde(with = "time::serde_millis")]
    pub timestamp: DateTime<Utc>,
    pub action: AuditAction,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    pub changes: Option<JsonObject>,
    pub ip_address: Option<IpAddr>,
    pub metadata: Option<JsonObject>,
    pub tenant_id: TenantId,
    pub expires_at: i64,
    pub integrity: Integrity,
}

/// The fields an entry's leaf commits to, in this order: all but `expires_at` (retention may be
/// changed) and `integrity` itself.
pub const COMMITTED_FIELDS: [&str; 11] = [
    "id",
    "timestamp",
    "action",
    "entity_type",
    "entity_id",
    "project_id",
    "user_id",
    "changes",
    "ip_address",
    "metadata",
    "tenant_id",
];

impl AuditLogEntry {
    /// The committed fields with their values, as the entry's JSON has them (each field on its
    /// own: serialising the whole entry would also write what the leaf leaves out).
    pub fn committed_fields(&self) -> Vec<(&'static str, Value)> {
        // Built directly rather than through serde (the verifier does this for every entry); the
        // values are exactly what the entry serialises to, as a test checks.
        let text = |v: &str| Value::String(v.to_owned());
        let optional = |v: &Option<String>| v.as_deref().map_or(Value::Null, text);
        let object = |v: &Option<JsonObject>| v.clone().map_or(Value::Null, Value::Object);
        let fields = [
            ("id", Value::String(self.id.to_string())),
            ("timestamp", Value::String(time::format_timestamp(self.timestamp))),
            ("action", text(self.action.as_str())),
            ("entity_type", text(self.entity_type.as_str())),
            ("entity_id", text(&self.entity_id)),
            ("project_id", optional(&self.project_id)),
            ("user_id", optional(&self.user_id)),
            ("changes", object(&self.changes)),
            ("ip_address", self.ip_address.map_or(Value::Null, |ip| Value::String(ip.to_string()))),
            ("metadata", object(&self.metadata)),
            ("tenant_id", text(self.tenant_id.as_str())),
        ];
        debug_assert!(fields.iter().map(|(n, _)| *n).eq(COMMITTED_FIELDS));
        fields.into()
    }

    /// The committed fields as their RFC 8785 texts, written straight from the entry (the hot path
    /// of writes and of the verifier); equal to the canonical texts of [`Self::committed_fields`].
    pub fn committed_canonical(&self) -> Result<Vec<(&'static str, String)>, (&'static str, InexactNumber)> {
        use crate::integrity::canonical::{object, string};
        let optional = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_owned(), string);
        let map = |name: &'static str, v: &Option<JsonObject>| match v {
            Some(m) => object(m).map_err(|e| (name, e)),
            None => Ok("null".to_owned()),
        };
        let fields = [
            ("id", string(&self.id.to_string())),
            ("timestamp", string(&time::format_timestamp(self.timestamp))),
            ("action", string(self.action.as_str())),
            ("entity_type", string(self.entity_type.as_str())),
            ("entity_id", string(&self.entity_id)),
            ("project_id", optional(&self.project_id)),
            ("user_id", optional(&self.user_id)),
            ("changes", map("changes", &self.changes)?),
            ("ip_address", self.ip_address.map_or_else(|| "null".to_owned(), |ip| string(&ip.to_string()))),
            ("metadata", map("metadata", &self.metadata)?),
            ("tenant_id", string(self.tenant_id.as_str())),
        ];
        debug_assert!(fields.iter().map(|(n, _)| *n).eq(COMMITTED_FIELDS));
        Ok(fields.into())
    }

    /// Whether the entry still matches its leaf; the erased fields when it does.
    pub fn verify_leaf(&self) -> Result<Vec<String>, crate::integrity::leaf::LeafError> {
        use crate::integrity::leaf::LeafError;
        let fields = self.committed_canonical().map_err(|(name, e)| LeafError::Inexact(name.to_owned(), e))?;
        self.integrity.verify_canonical(&fields)
    }

    /// True once the retention period has passed. DynamoDB removes expired items only within a day
    /// or two, so every read checks this itself.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now.timestamp()
    }
}

/// The optional context of an entry, as the seed's `log_*` keyword arguments. Values are unchecked
/// until [`NewEntry::validate`] runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryDetails {
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub changes: Option<Value>,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// An entry as requested, before the server assigns id, timestamp and expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub tenant_id: TenantId,
    pub action: AuditAction,
    pub entity_type: EntityType,
    pub entity_id: String,
    pub details: EntryDetails,
}

/// A [`NewEntry`] whose every field has been checked; only these become stored entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEntry {
    tenant_id: TenantId,
    action: AuditAction,
    entity_type: EntityType,
    entity_id: String,
    project_id: Option<String>,
    user_id: Option<String>,
    changes: Option<JsonObject>,
    ip_address: Option<IpAddr>,
    metadata: Option<JsonObject>,
}

impl NewEntry {
    /// Checks every field, reporting the first invalid one by name.
    pub fn validate(self) -> Result<ValidEntry, ValidationError> {
        let d = self.details;
        validation::identifier("entity_id", &self.entity_id)?;
        if let Some(p) = &d.project_id {
            validation::identifier("project_id", p)?;
        }
        if let Some(u) = &d.user_id {
            validation::identifier("user_id", u)?;
        }
        let ip_address = d.ip_address.as_deref().map(|ip| validation::ip_address("ip_address", ip)).transpose()?;
        let changes = d.changes.map(|v| validation::json_object("changes", v)).transpose()?;
        let metadata = d.metadata.map(|v| validation::json_object("metadata", v)).transpose()?;
        Ok(ValidEntry {
            tenant_id: self.tenant_id,
            action: self.action,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            project_id: d.project_id,
            user_id: d.user_id,
            changes,
            ip_address,
            metadata,
        })
    }
}

impl AuditLogEntry {
    /// The length of the entry's JSON, as the API writes it, without building it.
    pub fn json_len(&self) -> usize {
        struct Counter(usize);
        impl std::io::Write for Counter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, self).map_or(usize::MAX, |()| counter.0)
    }
}

impl ValidEntry {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant_id
    }

    /// Stamps the entry at `now`: a fresh UUIDv7 for that millisecond, the timestamp read back from
    /// it (so the two always agree), and the expiry `retention_days` later. Fails only if the
    /// finished entry is larger than [`MAX_ENTRY_BYTES`].
    pub fn stamp(self, now: DateTime<Utc>, retention_days: u32) -> Result<AuditLogEntry, ValidationError> {
        self.stamp_as(time::uuid_v7_at(now), retention_days)
    }

    /// Stamps the entry with a given UUIDv7 (see [`time::derived_uuid_v7`]); its time is the
    /// entry's timestamp.
    pub fn stamp_as(self, id: Uuid, retention_days: u32) -> Result<AuditLogEntry, ValidationError> {
        let timestamp = time::uuid_v7_time(&id).ok_or(ValidationError::InvalidUuid { field: "id" })?;
        let mut entry = AuditLogEntry {
            id,
            timestamp,
            action: self.action,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            project_id: self.project_id,
            user_id: self.user_id,
            changes: self.changes,
            ip_address: self.ip_address,
            metadata: self.metadata,
            tenant_id: self.tenant_id,
            expires_at: timestamp.timestamp() + i64::from(retention_days) * 86_400,
            integrity: Integrity::default(),
        };
        // Validation let only exactly representable numbers in, so every field has a canonical form.
        let fields = entry.committed_canonical().map_err(|(field, _)| ValidationError::InexactNumber { field })?;
        entry.integrity = Integrity::commit_canonical(&fields);
        let actual = entry.json_len();
        if actual > MAX_ENTRY_BYTES {
            return Err(ValidationError::EntryTooLarge { actual, max: MAX_ENTRY_BYTES });
        }
        Ok(entry)
    }
}

/// Who made a change, from where: the `user_id` and `ip_address` of the service's records of it.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub ip_address: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_serialise_as_the_seed_strings() {
        let actions: Vec<String> = AuditAction::ALL.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        assert_eq!(actions, ["\"CREATE\"", "\"UPDATE\"", "\"DELETE\"", "\"LINK\"", "\"UNLINK\"", "\"VIEW\""]);
        let types: Vec<&str> = EntityType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "PROJECT",
                "ENTITY",
                "RELATIONSHIP",
                "FILE",
                "REPORT",
                "TEMPLATE",
                "SCHEDULE",
                "AUDIT_ENTRY",
                "AUDIT_SETTINGS",
                "LEGAL_HOLD",
                "LOG_STREAM"
            ]
        );
        for t in EntityType::ALL {
            assert_eq!(t.as_str().parse::<EntityType>().unwrap(), *t);
            assert_eq!(serde_json::from_value::<EntityType>(json!(t.as_str())).unwrap(), *t);
        }
        assert!("create".parse::<AuditAction>().is_err());
    }

    #[test]
    fn stamp_sets_id_timestamp_and_expiry_consistently() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:20:30.123456Z").unwrap().to_utc();
        let entry = NewEntry {
            tenant_id: TenantId::default(),
            action: AuditAction::Create,
            entity_type: EntityType::Entity,
            entity_id: "entity-123".into(),
            details: EntryDetails::default(),
        }
        .validate()
        .unwrap()
        .stamp(now, 90)
        .unwrap();
        assert_eq!(entry.id.get_version_num(), 7);
        assert_eq!(entry.timestamp.timestamp_millis(), now.timestamp_millis());
        assert_eq!(entry.expires_at, now.timestamp() + 90 * 86_400);
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["timestamp"], "2026-11-27T10:20:30.123Z");
        assert_eq!(json["project_id"], Value::Null);
        assert_eq!(json["tenant_id"], "default");
    }

    #[test]
    fn committed_fields_are_the_serialised_values() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:20:30.123Z").unwrap().to_utc();
        let full = EntryDetails {
            project_id: Some("p-1".into()),
            user_id: Some("u-1".into()),
            changes: Some(json!({"b": [1, 2.5, "x"], "a": {"n": null}})),
            ip_address: Some("2001:db8::1".into()),
            metadata: Some(json!({"k": "v"})),
        };
        for details in [full, EntryDetails::default()] {
            let entry = NewEntry {
                tenant_id: TenantId::parse("acme").unwrap(),
                action: AuditAction::Link,
                entity_type: EntityType::Relationship,
                entity_id: "r-1".into(),
                details,
            }
            .validate()
            .unwrap()
            .stamp(now, 90)
            .unwrap();
            let json = serde_json::to_value(&entry).unwrap();
            let texts = entry.committed_canonical().unwrap();
            for ((name, value), (text_name, text)) in entry.committed_fields().into_iter().zip(texts) {
                assert_eq!(value, json[name], "{name}");
                assert_eq!((text_name, text), (name, crate::integrity::canonical::to_string(&value).unwrap()));
            }
        }
    }
}
