//! Erasure that keeps the proofs (GDPR art. 17): a field's value and its salt leave the stored
//! entry, its commitment stays (see [`crate::integrity::leaf`]), and an **erasure record** — an
//! entry of the trail in its own right — says who erased what, when, and why, never the value.
//!
//! The record comes first: it is written, then the entry is changed to point at it. A request
//! that fails between the two leaves a record whose erasure is not applied yet; the next request
//! for the same entry finds it and applies it, instead of writing a second one. The verifier
//! accepts an erased field only with its record in the bundle, naming that entry and that field:
//! whoever can write the tables cannot quietly erase a field, only leave a failure behind.

use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;
use uuid::Uuid;

use crate::domain::entry::COMMITTED_FIELDS;
use crate::domain::{AuditAction, AuditLogEntry, EntityType, EntryDetails, NewEntry};
use crate::integrity::leaf::{Integrity, LeafError};

/// The fields that can be erased: those that may hold personal data. The others identify and
/// place the entry (and key the indexes), and stay.
pub const ERASABLE_FIELDS: [&str; 4] = ["user_id", "changes", "ip_address", "metadata"];
/// Of a service record (an erasure, a retention change, a legal hold), only who made it and from
/// where can be erased: what it did must stay readable.
const ERASABLE_IN_SERVICE_RECORDS: [&str; 2] = ["user_id", "ip_address"];
pub const MAX_REASON_CHARS: usize = 1000;

/// `POST /audit/logs/{id}/erasure`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    pub fields: Vec<String>,
    pub reason: String,
}

/// Why an erasure was refused. Each names the field or the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErasureError {
    #[error("fields must name at least one field to erase")]
    NoFields,
    #[error("{0} is not a field of an audit entry")]
    UnknownField(String),
    #[error("{field} cannot be erased; erasable: {allowed}")]
    NotErasable { field: String, allowed: String },
    #[error("{0} is named twice")]
    Duplicate(String),
    #[error("reason must be 1 to {MAX_REASON_CHARS} characters")]
    Reason,
    #[error("{field} is already erased (erasure record {record})")]
    AlreadyErased { field: String, record: Uuid },
    #[error("{0} has no value to erase")]
    NoValue(String),
    #[error("the entry does not match its leaf: {0}")]
    Leaf(LeafError),
}

impl ErasureRequest {
    /// The fields, checked against `entry` (which can be erased, which are not yet): in
    /// [`COMMITTED_FIELDS`] order, each once.
    /// The fields named, checked on their own (erasable, each once) with the reason; in
    /// [`COMMITTED_FIELDS`] order.
    pub fn named_fields(&self) -> Result<Vec<&'static str>, ErasureError> {
        if self.reason.trim().is_empty() || self.reason.chars().count() > MAX_REASON_CHARS {
            return Err(ErasureError::Reason);
        }
        if self.fields.is_empty() {
            return Err(ErasureError::NoFields);
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            let Some(field) = COMMITTED_FIELDS.iter().find(|f| **f == name.as_str()) else {
                return Err(ErasureError::UnknownField(name.clone()));
            };
            if !ERASABLE_FIELDS.contains(field) {
                return Err(ErasureError::NotErasable { field: name.clone(), allowed: ERASABLE_FIELDS.join(", ") });
            }
            if fields.contains(field) {
                return Err(ErasureError::Duplicate(name.clone()));
            }
            fields.push(*field);
        }
        fields.sort_by_key(|f| COMMITTED_FIELDS.iter().position(|c| c == f));
        Ok(fields)
    }

    /// The fields named, checked against `entry` too (its kind's erasable fields; not erased yet;
    /// with a value).
    pub fn fields_of(&self, entry: &AuditLogEntry) -> Result<Vec<&'static str>, ErasureError> {
        let fields = self.named_fields()?;
        let allowed = erasable_in(entry);
        for field in &fields {
            if !allowed.contains(field) {
                return Err(ErasureError::NotErasable { field: (*field).to_owned(), allowed: allowed.join(", ") });
            }
            if let Some(record) = entry.integrity.erased_by.get(*field) {
                return Err(ErasureError::AlreadyErased { field: (*field).to_owned(), record: *record });
            }
            if value_of(entry, field).is_null() {
                return Err(ErasureError::NoValue((*field).to_owned()));
            }
        }
        Ok(fields)
    }
}

/// Of `fields`, those `entry` still has a value in and may lose: what erasing a subject's
/// `fields` from it comes to (nothing, for an entry erased before).
pub fn remaining_fields(entry: &AuditLogEntry, fields: &[&'static str]) -> Vec<&'static str> {
    let allowed = erasable_in(entry);
    fields
        .iter()
        .copied()
        .filter(|f| allowed.contains(f) && !entry.integrity.erased_by.contains_key(*f) && !value_of(entry, f).is_null())
        .collect()
}

/// The fields an erasure may remove from `entry`: fewer for the service's own records.
pub fn erasable_in(entry: &AuditLogEntry) -> &'static [&'static str] {
    if entry.entity_type.is_service_record() { &ERASABLE_IN_SERVICE_RECORDS } else { &ERASABLE_FIELDS }
}

/// A field's committed value, as the leaf has it.
fn value_of(entry: &AuditLogEntry, field: &str) -> Value {
    entry.committed_fields().into_iter().find(|(name, _)| *name == field).map_or(Value::Null, |(_, v)| v)
}

/// What a store applies to one entry: the fields' values removed and `integrity` replaced by
/// `after` — only while the stored integrity is still `before` (else two erasures racing would
/// undo each other's salts).
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    pub fields: Vec<&'static str>,
    pub before: Integrity,
    pub after: Integrity,
}

impl Erasure {
    /// Erasing `fields` of `entry` under the erasure record `record`.
    pub fn plan(entry: &AuditLogEntry, fields: &[&'static str], record: Uuid) -> Result<Erasure, ErasureError> {
        let mut after = entry.integrity.clone();
        for field in fields {
            after.erase(field, &value_of(entry, field), &COMMITTED_FIELDS, record).map_err(ErasureError::Leaf)?;
        }
        Ok(Erasure { fields: fields.to_vec(), before: entry.integrity.clone(), after })
    }

    /// Applies the erasure to an entry in hand.
    pub fn apply(&self, entry: &mut AuditLogEntry) {
        for field in &self.fields {
            clear_field(entry, field);
        }
        entry.integrity = self.after.clone();
    }
}

/// Removes the value of erasable field `field` from an entry in hand (other names change nothing).
pub fn clear_field(entry: &mut AuditLogEntry, field: &str) {
    match field {
        "user_id" => entry.user_id = None,
        "changes" => entry.changes = None,
        "ip_address" => entry.ip_address = None,
        "metadata" => entry.metadata = None,
        _ => {}
    }
}

/// The erasure record of `fields` of `entry`: `UPDATE AUDIT_ENTRY <entry id>`, by `by` from
/// `from_ip`, in the entry's project; its `changes` name the entry and the fields, its `metadata`
/// the reason. Never a value.
pub fn record(
    entry: &AuditLogEntry,
    fields: &[&str],
    reason: &str,
    by: Option<String>,
    from_ip: Option<String>,
) -> NewEntry {
    let mut new = record_of_many(&[entry], fields, reason, by, from_ip);
    new.entity_id = entry.id.to_string();
    new.details.project_id = entry.project_id.clone();
    new
}

/// The erasure record of `fields` of several entries of one tenant (a subject's, a page at a
/// time): `UPDATE AUDIT_ENTRY subject-erasure`, naming each entry.
pub fn record_of_many(
    entries: &[&AuditLogEntry],
    fields: &[&str],
    reason: &str,
    by: Option<String>,
    from_ip: Option<String>,
) -> NewEntry {
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    NewEntry {
        tenant_id: entries.first().map(|e| e.tenant_id.clone()).unwrap_or_default(),
        action: AuditAction::Update,
        entity_type: EntityType::AuditEntry,
        entity_id: SUBJECT_ERASURE.to_owned(),
        details: EntryDetails {
            project_id: None,
            user_id: by,
            changes: Some(json!({"erased": {"entries": ids, "fields": fields}})),
            ip_address: from_ip,
            metadata: Some(json!({"reason": reason})),
        },
    }
}

/// The entity id of a subject erasure's records.
pub const SUBJECT_ERASURE: &str = "subject-erasure";
/// Entries one record names at most: 100 ids keep a record near 4 KB.
pub const ENTRIES_PER_RECORD: usize = 100;

/// What an erasure record says it erased: the entries and the fields. `None` if `e` is not one.
pub fn named_by_record(e: &AuditLogEntry) -> Option<(Vec<Uuid>, Vec<String>)> {
    if e.entity_type != EntityType::AuditEntry || e.action != AuditAction::Update {
        return None;
    }
    let erased = e.changes.as_ref()?.get("erased")?;
    let entries = serde_json::from_value(erased.get("entries")?.clone()).ok()?;
    let fields = serde_json::from_value(erased.get("fields")?.clone()).ok()?;
    Some((entries, fields))
}

/// Whether `record` is an erasure record of `entry` naming every one of `fields`.
pub fn record_names(record: &AuditLogEntry, entry: &AuditLogEntry, fields: &[&str]) -> bool {
    named_by_record(record).is_some_and(|(entries, named)| {
        record.tenant_id == entry.tenant_id
            && record.id > entry.id
            && entries.contains(&entry.id)
            && fields.iter().all(|f| named.iter().any(|n| n == f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use chrono::Utc;

    fn entry() -> AuditLogEntry {
        NewEntry {
            tenant_id: TenantId::parse("acme").unwrap(),
            action: AuditAction::Update,
            entity_type: EntityType::Report,
            entity_id: "report-7".into(),
            details: EntryDetails {
                project_id: Some("p1".into()),
                user_id: Some("alice".into()),
                changes: Some(json!({"email": "alice@example.com"})),
                ip_address: Some("10.1.2.3".into()),
                metadata: None,
            },
        }
        .validate()
        .unwrap()
        .stamp(Utc::now(), 90)
        .unwrap()
    }

    fn request(fields: &[&str]) -> ErasureRequest {
        ErasureRequest { fields: fields.iter().map(|f| (*f).to_owned()).collect(), reason: "GDPR #12".into() }
    }

    #[test]
    fn an_erased_entry_verifies_with_the_fields_reported_and_its_record_named() {
        let mut e = entry();
        let fields = request(&["ip_address", "user_id"]).fields_of(&e).unwrap();
        assert_eq!(fields, ["user_id", "ip_address"]);
        let rec = record(&e, &fields, "GDPR #12", Some("dpo".into()), None).validate().unwrap();
        let rec = rec.stamp(Utc::now() + chrono::Duration::milliseconds(5), 90).unwrap();
        let erasure = Erasure::plan(&e, &fields, rec.id).unwrap();
        erasure.apply(&mut e);
        assert_eq!((e.user_id.as_deref(), e.ip_address), (None, None));
        assert_eq!(e.verify_leaf().unwrap(), ["user_id", "ip_address"]);
        assert_eq!(e.integrity.erased_by.get("user_id"), Some(&rec.id));
        assert!(record_names(&rec, &e, &fields));
        assert!(!record_names(&rec, &e, &["changes"]));
        assert!(!serde_json::to_string(&rec).unwrap().contains("10.1.2.3"));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = entry();
        assert_eq!(request(&["colour"]).fields_of(&e), Err(ErasureError::UnknownField("colour".into())));
        assert!(matches!(request(&["entity_id"]).fields_of(&e), Err(ErasureError::NotErasable { .. })));
        assert_eq!(request(&["metadata"]).fields_of(&e), Err(ErasureError::NoValue("metadata".into())));
        assert_eq!(request(&["changes", "changes"]).fields_of(&e), Err(ErasureError::Duplicate("changes".into())));
        assert_eq!(request(&[]).fields_of(&e), Err(ErasureError::NoFields));
        let blank = ErasureRequest { fields: vec!["changes".into()], reason: " ".into() };
        assert_eq!(blank.fields_of(&e), Err(ErasureError::Reason));
        let mut erased = e.clone();
        let record_id = Uuid::now_v7();
        Erasure::plan(&e, &["changes"], record_id).unwrap().apply(&mut erased);
        assert_eq!(
            request(&["changes"]).fields_of(&erased),
            Err(ErasureError::AlreadyErased { field: "changes".into(), record: record_id })
        );
    }
}
