//! Crypto-shredding: the archive is write-once (Object Lock), so an erasure cannot reach the copy of
//! a value there. It destroys the value's key instead.
//!
//! Each erasable field an archived entry has a value in is **sealed** under a key of its own (one
//! per entry and field): AES-256-GCM over the field's salt and canonical value, bound to the
//! tenant, entry and field. The line keeps the field's commitment in the clear, and neither the
//! seed nor the salt, so without the key nothing about the value can be learnt or guessed. The keys
//! live in the store ([`ArchiveKeys`]: a DynamoDB table, SQLite, memory) for as long as the archive
//! keeps the entry. An erasure replaces the key with a tombstone naming its erasure record; from
//! then on the line opens to the entry with that field erased, which still verifies — with the
//! record, as any erasure.
//!
//! Per entry and field, not per subject: erasure is asked for per entry and field (and a subject's
//! erasure is that, for each of its entries), so one key per subject would either take more than
//! was asked or miss the fields of entries without a `user_id`. The cost is one small key item per
//! archived entry (see the docs for the figures).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::backend::BackendError;
use crate::domain::{AuditLogEntry, TenantId};
use crate::erasure::{clear_field, erasable_in};
use crate::integrity::Hash;
use crate::integrity::leaf::{SALT_BYTES, Salt, commitment_of_canonical};

/// The format of a sealed field, also the start of what its encryption is bound to.
pub const SEALED_FORMAT: &str = "auditline-sealed/1";
pub const KEY_BYTES: usize = 32;

/// A field's key: 32 random bytes, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldKey(pub [u8; KEY_BYTES]);

impl FieldKey {
    pub fn random() -> FieldKey {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        FieldKey(bytes)
    }
}

impl std::fmt::Debug for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldKey(…)")
    }
}

/// What the key store holds for one field of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySlot {
    Key(FieldKey),
    /// Destroyed by the erasure whose record is this.
    Shredded(Uuid),
}

/// One entry's slots, by field.
pub type EntryKeys = BTreeMap<String, KeySlot>;

/// Where archive keys live: the same store as the entries (SQLite, memory), or a DynamoDB table
/// of their own that outlives the entries table's TTL as long as the archive keeps the entry.
#[async_trait]
pub trait ArchiveKeys: Send + Sync {
    /// The slots of `fields` of each entry `ids[i]`: an existing slot (a key issued before, or a
    /// tombstone) wins, else a fresh key is stored. So a redelivered batch seals under the keys it
    /// used before, and an erasure that came before the archive leaves nothing to seal under.
    async fn issue(
        &self,
        tenant: &TenantId,
        wanted: &[(Uuid, Vec<&'static str>)],
    ) -> Result<Vec<EntryKeys>, BackendError>;

    /// The slots of entries, for reading the archive; entries with none are absent.
    async fn keys(&self, tenant: &TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, EntryKeys>, BackendError>;

    /// Destroys the keys of `fields` of entry `id`: a tombstone naming `record` replaces each,
    /// also where no key was issued yet. Repeating it changes nothing more.
    async fn shred(&self, tenant: &TenantId, id: Uuid, fields: &[&str], record: Uuid) -> Result<(), BackendError>;
}

/// The fields of `entry` the archive seals: those it has a value in and that an erasure may take.
pub fn sealed_fields(entry: &AuditLogEntry) -> Vec<&'static str> {
    match entry.committed_canonical() {
        Ok(texts) => sealable(entry, &texts),
        // Not storable in the first place; `seal` says so.
        Err(_) => Vec::new(),
    }
}

/// [`sealed_fields`] from the entry's canonical texts (`null` for a field without a value).
fn sealable(entry: &AuditLogEntry, texts: &[(&'static str, String)]) -> Vec<&'static str> {
    erasable_in(entry)
        .iter()
        .copied()
        .filter(|f| !entry.integrity.erased.contains_key(*f))
        .filter(|f| texts.iter().any(|(name, text)| name == f && text != "null"))
        .collect()
}

/// A sealed field on an archive line: its commitment, and its salt and value encrypted (absent
/// when the field was erased before the archive got the entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedField {
    pub commitment: Hash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
}

/// One line of an archive object: the entry without its sealed fields' values (nor the seed or
/// their salts), and the sealed fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedEntry {
    #[serde(flatten)]
    pub entry: AuditLogEntry,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed: BTreeMap<String, SealedField>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShredError {
    #[error("entry {0}: no archive key for field {1}")]
    NoKey(Uuid, String),
    #[error("entry {0}: field {1} does not match its leaf")]
    Leaf(Uuid, String),
    #[error("entry {0}: sealed field {1} does not open under its key (damaged, or not this entry's)")]
    Damaged(Uuid, String),
}

/// What a field's encryption is bound to: the format, tenant, entry and field — a ciphertext moved
/// to another line or field does not open.
fn aad(entry: &AuditLogEntry, field: &str) -> Vec<u8> {
    [SEALED_FORMAT, entry.tenant_id.as_str(), &entry.id.to_string(), field].join("\0").into_bytes()
}

fn cipher(key: &FieldKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).expect("a 32-byte key"))
}

/// Seals `entry` for the archive under `keys` (its slots from [`ArchiveKeys::issue`]).
pub fn seal(entry: &AuditLogEntry, keys: &EntryKeys) -> Result<ArchivedEntry, ShredError> {
    let texts = entry.committed_canonical().map_err(|(name, _)| ShredError::Leaf(entry.id, name.to_owned()))?;
    let fields = sealable(entry, &texts);
    // Taking the fields out is an erasure in all but name: the leaf keeps their commitments (on
    // the line, beside the sealed values) and the fields that stay get explicit salts.
    let mut out = entry.clone();
    let integrity = &mut out.integrity;
    if integrity.seed.is_some() {
        for (name, _) in &texts {
            if !fields.contains(name) && !integrity.erased.contains_key(*name) {
                let salt = entry.integrity.salt(name).expect("derived from the seed");
                integrity.salts.insert((*name).to_owned(), salt);
            }
        }
        integrity.seed = None;
    }
    let mut sealed = BTreeMap::new();
    for field in fields {
        let salt = entry.integrity.salt(field).ok_or_else(|| ShredError::Leaf(entry.id, field.to_owned()))?;
        out.integrity.salts.remove(field);
        let text = &texts.iter().find(|(n, _)| *n == field).expect("a committed field").1;
        let commitment = commitment_of_canonical(&salt, text);
        clear_field(&mut out, field);
        let ciphertext = match keys.get(field) {
            Some(KeySlot::Key(key)) => {
                let mut buffer = Vec::with_capacity(SALT_BYTES + text.len() + 16);
                buffer.extend_from_slice(&salt.0);
                buffer.extend_from_slice(text.as_bytes());
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::fill(&mut nonce).expect("the operating system provides randomness");
                cipher(key)
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad(entry, field)),
                        &mut buffer,
                    )
                    .expect("AES-GCM seals any length an entry has");
                let mut bytes = nonce.to_vec();
                bytes.extend_from_slice(&buffer);
                Some(URL_SAFE_NO_PAD.encode(bytes))
            }
            // Erased before it reached the archive: nothing is kept.
            Some(KeySlot::Shredded(_)) => None,
            None => return Err(ShredError::NoKey(entry.id, field.to_owned())),
        };
        sealed.insert(field.to_owned(), SealedField { commitment, ciphertext });
    }
    Ok(ArchivedEntry { entry: out, sealed })
}

/// Opens an archive line with its slots (`None`: the store has none for it): each sealed field
/// whose key is there gets its value and salt back, checked against its commitment; a shredded
/// one reads as erased by its record; one with no slot at all reads as erased with no record, which
/// the verifier refuses.
pub fn open(archived: ArchivedEntry, keys: Option<&EntryKeys>) -> Result<AuditLogEntry, ShredError> {
    let ArchivedEntry { mut entry, sealed } = archived;
    for (field, SealedField { commitment, ciphertext }) in sealed {
        let id = entry.id;
        let damaged = || ShredError::Damaged(id, field.clone());
        match (keys.and_then(|k| k.get(&field)), ciphertext) {
            (Some(KeySlot::Key(key)), Some(text)) => {
                let mut bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).map_err(|_| damaged())?;
                if bytes.len() < NONCE_LEN + SALT_BYTES {
                    return Err(damaged());
                }
                let mut body = bytes.split_off(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| damaged())?;
                let plain = cipher(key)
                    .open_in_place(nonce, Aad::from(aad(&entry, &field)), &mut body)
                    .map_err(|_| damaged())?;
                let (salt, text) = plain.split_at(SALT_BYTES);
                let salt = Salt(salt.try_into().expect("split at its length"));
                let text = std::str::from_utf8(text).map_err(|_| damaged())?;
                if commitment_of_canonical(&salt, text) != commitment {
                    return Err(damaged());
                }
                let value: Value = serde_json::from_str(text).map_err(|_| damaged())?;
                set_field(&mut entry, &field, value).ok_or_else(damaged)?;
                entry.integrity.salts.insert(field, salt);
            }
            (slot, _) => {
                if let Some(KeySlot::Shredded(record)) = slot {
                    entry.integrity.erased_by.insert(field.clone(), *record);
                }
                entry.integrity.erased.insert(field, commitment);
            }
        }
    }
    Ok(entry)
}

/// Puts a sealed field's value back; `None` for a name or value no entry field takes.
fn set_field(entry: &mut AuditLogEntry, field: &str, value: Value) -> Option<()> {
    match field {
        "user_id" => entry.user_id = Some(serde_json::from_value(value).ok()?),
        "changes" => entry.changes = Some(serde_json::from_value(value).ok()?),
        "ip_address" => entry.ip_address = Some(serde_json::from_value(value).ok()?),
        "metadata" => entry.metadata = Some(serde_json::from_value(value).ok()?),
        _ => return None,
    }
    Some(())
}

/// Archive keys in memory: for tests and the in-memory gateway.
#[derive(Default)]
pub struct MemoryArchiveKeys {
    slots: std::sync::Mutex<HashMap<(TenantId, Uuid), EntryKeys>>,
}

#[async_trait]
impl ArchiveKeys for MemoryArchiveKeys {
    async fn issue(
        &self,
        tenant: &TenantId,
        wanted: &[(Uuid, Vec<&'static str>)],
    ) -> Result<Vec<EntryKeys>, BackendError> {
        let mut slots = self.slots.lock().expect("not poisoned");
        Ok(wanted
            .iter()
            .map(|(id, fields)| {
                let entry = slots.entry((tenant.clone(), *id)).or_default();
                for field in fields {
                    entry.entry((*field).to_owned()).or_insert_with(|| KeySlot::Key(FieldKey::random()));
                }
                entry.clone()
            })
            .collect())
    }

    async fn keys(&self, tenant: &TenantId, ids: &[Uuid]) -> Result<HashMap<Uuid, EntryKeys>, BackendError> {
        let slots = self.slots.lock().expect("not poisoned");
        Ok(ids.iter().filter_map(|id| slots.get(&(tenant.clone(), *id)).map(|k| (*id, k.clone()))).collect())
    }

    async fn shred(&self, tenant: &TenantId, id: Uuid, fields: &[&str], record: Uuid) -> Result<(), BackendError> {
        let mut slots = self.slots.lock().expect("not poisoned");
        let entry = slots.entry((tenant.clone(), id)).or_default();
        for field in fields {
            entry.insert((*field).to_owned(), KeySlot::Shredded(record));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditAction, EntityType, EntryDetails, NewEntry};
    use crate::erasure::record;

    fn entry() -> AuditLogEntry {
        NewEntry {
            tenant_id: TenantId::parse("acme").unwrap(),
            action: AuditAction::Update,
            entity_type: EntityType::File,
            entity_id: "f-1".into(),
            details: EntryDetails {
                project_id: Some("p-1".into()),
                user_id: Some("alice@example.com".into()),
                changes: Some(serde_json::json!({"name": "Alice Liddell"})),
                ip_address: Some("203.0.113.77".into()),
                metadata: None,
            },
        }
        .validate()
        .unwrap()
        .stamp(chrono::Utc::now(), 90)
        .unwrap()
    }

    fn keys_for(e: &AuditLogEntry) -> EntryKeys {
        sealed_fields(e).into_iter().map(|f| (f.to_owned(), KeySlot::Key(FieldKey::random()))).collect()
    }

    #[test]
    fn a_sealed_line_keeps_no_value_seed_or_salt_of_its_sealed_fields_and_opens_to_the_entry() {
        let e = entry();
        let keys = keys_for(&e);
        let line = serde_json::to_string(&seal(&e, &keys).unwrap()).unwrap();
        for secret in ["alice", "Liddell", "203.0.113.77", "seed"] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
        let opened = open(serde_json::from_str(&line).unwrap(), Some(&keys)).unwrap();
        assert_eq!(opened.committed_fields(), e.committed_fields());
        assert_eq!(opened.integrity.verify(&opened.committed_fields()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_shredded_field_opens_as_erased_by_its_record_and_still_verifies() {
        let e = entry();
        let mut keys = keys_for(&e);
        let line = seal(&e, &keys).unwrap();
        let erasure = Uuid::now_v7();
        keys.insert("ip_address".into(), KeySlot::Shredded(erasure));
        let opened = open(line.clone(), Some(&keys)).unwrap();
        assert_eq!(opened.ip_address, None);
        assert_eq!(opened.user_id, e.user_id);
        assert_eq!(opened.integrity.erased_by.get("ip_address"), Some(&erasure));
        assert_eq!(opened.integrity.verify(&opened.committed_fields()).unwrap(), vec!["ip_address".to_owned()]);
        // No slot at all: erased, and no record to show for it.
        let opened = open(line, None).unwrap();
        assert!(opened.integrity.erased_by.is_empty());
        assert_eq!(opened.integrity.erased.len(), 3, "user_id, changes, ip_address");
    }

    #[test]
    fn a_field_erased_before_archiving_is_not_sealed_at_all() {
        let e = entry();
        let mut keys = keys_for(&e);
        keys.insert("user_id".into(), KeySlot::Shredded(Uuid::now_v7()));
        let line = seal(&e, &keys).unwrap();
        assert_eq!(line.sealed["user_id"].ciphertext, None);
        assert!(line.sealed["ip_address"].ciphertext.is_some());
        assert!(seal(&e, &EntryKeys::new()).is_err(), "a field without a key is not archived in the clear");
    }

    #[test]
    fn a_ciphertext_moved_to_another_field_or_entry_or_a_wrong_key_does_not_open() {
        let (a, b) = (entry(), entry());
        let (keys_a, keys_b) = (keys_for(&a), keys_for(&b));
        let (line_a, mut line_b) = (seal(&a, &keys_a).unwrap(), seal(&b, &keys_b).unwrap());
        let mut moved = line_a.clone();
        moved.sealed.get_mut("user_id").unwrap().ciphertext = line_a.sealed["ip_address"].ciphertext.clone();
        assert!(matches!(open(moved, Some(&keys_a)), Err(ShredError::Damaged(_, f)) if f == "user_id"));
        line_b.sealed.get_mut("user_id").unwrap().ciphertext = line_a.sealed["user_id"].ciphertext.clone();
        assert!(open(line_b, Some(&keys_a)).is_err());
        assert!(open(line_a.clone(), Some(&keys_b)).is_err());
        let mut cut = line_a;
        cut.sealed.get_mut("changes").unwrap().ciphertext = Some("AAAA".into());
        assert!(open(cut, Some(&keys_a)).is_err());
    }

    #[test]
    fn a_service_record_seals_only_what_may_be_erased_from_it() {
        let e = entry();
        let r = record(&e, &["user_id"], "asked", Some("dpo@example.com".into()), Some("198.51.100.1".into()))
            .validate()
            .unwrap()
            .stamp(chrono::Utc::now(), 90)
            .unwrap();
        let line = seal(&r, &keys_for(&r)).unwrap();
        assert_eq!(line.sealed.keys().collect::<Vec<_>>(), vec!["ip_address", "user_id"]);
        assert!(line.entry.changes.is_some(), "what the record names stays readable");
    }
}
