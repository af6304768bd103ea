//! An entry's leaf: a commitment to each field on its own, so that one field can later be erased
//! (GDPR art. 17) while the entry — and the tree it is in — still verifies.
//!
//! Format `auditline-leaf/1`:
//! - every field gets a 16-byte salt: `SHA-256("auditline-salt/1" ‖ 0x00 ‖ seed ‖ 0x00 ‖ name)`,
//!   truncated, where `seed` is 16 random bytes kept with the entry (never in the leaf). One seed per
//!   entry keeps entries small; an erasure replaces it with the explicit salts of the other fields.
//! - a field's commitment is `SHA-256(salt ‖ JCS(value))` (RFC 8785; an absent field is `null`);
//! - the leaf is `SHA-256(0x00 ‖ JCS({"_format": "auditline-leaf/1", name: hex(commitment), …}))`,
//!   an RFC 6962 leaf hash of the canonical object of commitments.
//!
//! Without the salt, a commitment says nothing about even a short value: guessing an IPv4 address
//! means guessing 128 salt bits with it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use super::canonical::{self, InexactNumber};
use super::{Hash, merkle};

pub const LEAF_FORMAT: &str = "auditline-leaf/1";
const SALT_CONTEXT: &[u8] = b"auditline-salt/1";
pub const SALT_BYTES: usize = 16;

/// 16 random bytes; written in unpadded base64url.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Salt(pub [u8; SALT_BYTES]);

impl Salt {
    pub fn random() -> Salt {
        let mut bytes = [0u8; SALT_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        Salt(bytes)
    }

    /// The salt of field `name` of the entry whose seed is `self`.
    pub fn for_field(&self, name: &str) -> Salt {
        let digest = Hash::of(&[SALT_CONTEXT, &[0], &self.0, &[0], name.as_bytes()]);
        let mut out = [0u8; SALT_BYTES];
        out.copy_from_slice(&digest.0[..SALT_BYTES]);
        Salt(out)
    }
}

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(…)")
    }
}

impl Serialize for Salt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).map_err(serde::de::Error::custom)?;
        let array: [u8; SALT_BYTES] = bytes.try_into().map_err(|_| serde::de::Error::custom("a salt is 16 bytes"))?;
        Ok(Salt(array))
    }
}

/// `SHA-256(salt ‖ JCS(value))`.
pub fn commitment(salt: &Salt, value: &Value) -> Result<Hash, InexactNumber> {
    Ok(commitment_of_canonical(salt, &canonical::to_string(value)?))
}

/// The commitment to a value given as its canonical text.
pub fn commitment_of_canonical(salt: &Salt, canonical_text: &str) -> Hash {
    Hash::of(&[&salt.0, canonical_text.as_bytes()])
}

/// Each field's canonical text, from values.
fn canonical_texts<'a>(fields: &[(&'a str, Value)]) -> Result<Vec<(&'a str, String)>, (String, InexactNumber)> {
    fields
        .iter()
        .map(|(name, value)| canonical::to_string(value).map(|t| (*name, t)).map_err(|e| ((*name).to_owned(), e)))
        .collect()
}

/// The leaf of `(field, commitment)` pairs with distinct names.
pub fn leaf(commitments: &[(&str, Hash)]) -> Hash {
    // Field names are plain identifiers: for those, the canonical form can be written directly (no
    // escapes; UTF-16 order is byte order). Anything else goes through the general writer.
    let plain = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !commitments.iter().all(|(n, _)| plain(n)) {
        return leaf_via_json(commitments);
    }
    let mut members: Vec<(&str, Option<&Hash>)> = Vec::with_capacity(commitments.len() + 1);
    members.push(("_format", None));
    members.extend(commitments.iter().map(|(n, c)| (*n, Some(c))));
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut text = String::with_capacity(members.len() * 80);
    text.push('{');
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('"');
        text.push_str(name);
        text.push_str("\":\"");
        match value {
            Some(c) => c.push_hex(&mut text),
            None => text.push_str(LEAF_FORMAT),
        }
        text.push('"');
    }
    text.push('}');
    merkle::leaf_hash(text.as_bytes())
}

/// The leaf through the general canonical writer: the definition the direct one must match.
fn leaf_via_json(commitments: &[(&str, Hash)]) -> Hash {
    let mut object = serde_json::Map::new();
    object.insert("_format".into(), Value::from(LEAF_FORMAT));
    for (name, c) in commitments {
        object.insert((*name).to_owned(), Value::from(c.to_hex()));
    }
    let text = canonical::to_string(&Value::Object(object)).expect("hex strings are canonical");
    merkle::leaf_hash(text.as_bytes())
}

/// What an entry keeps to prove itself: its leaf, and the salts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Integrity {
    pub format: String,
    pub leaf_hash: Hash,
    /// The seed every salt derives from; absent once a field has been erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Salt>,
    /// After an erasure: the salts of the fields that remain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub salts: BTreeMap<String, Salt>,
    /// Erased fields: their commitments, which the leaf still needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub erased: BTreeMap<String, Hash>,
    /// Erased fields: the erasure record (an entry of the trail) that names each. Not in the leaf;
    /// the verifier requires the record itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub erased_by: BTreeMap<String, Uuid>,
}

impl Integrity {
    /// Commits to `fields` with salts from a fresh seed.
    pub fn commit(fields: &[(&str, Value)]) -> Result<Integrity, InexactNumber> {
        Ok(Self::commit_canonical(&canonical_texts(fields).map_err(|(_, e)| e)?))
    }

    /// Commits to fields given as their canonical texts.
    pub fn commit_canonical(fields: &[(&str, String)]) -> Integrity {
        let seed = Salt::random();
        let mut commitments = Vec::with_capacity(fields.len());
        for (name, text) in fields {
            commitments.push((*name, commitment_of_canonical(&seed.for_field(name), text)));
        }
        Integrity {
            format: LEAF_FORMAT.to_owned(),
            leaf_hash: leaf(&commitments),
            seed: Some(seed),
            salts: BTreeMap::new(),
            erased: BTreeMap::new(),
            erased_by: BTreeMap::new(),
        }
    }

    /// The salt of field `name`, while it has one (not once erased).
    pub fn salt(&self, name: &str) -> Option<Salt> {
        match self.seed {
            Some(seed) => Some(seed.for_field(name)),
            None => self.salts.get(name).copied(),
        }
    }

    /// Erases field `name` under erasure record `record`: keeps its commitment, forgets its salt
    /// (and the seed, replaced by the other fields' salts). The caller removes the value itself.
    pub fn erase(&mut self, name: &str, value: &Value, others: &[&str], record: Uuid) -> Result<(), LeafError> {
        let salt = self.salt(name).ok_or_else(|| LeafError::NoSalt(name.to_owned()))?;
        let c = commitment(&salt, value).map_err(|e| LeafError::Inexact(name.to_owned(), e))?;
        if self.seed.is_some() {
            for other in others.iter().filter(|o| **o != name) {
                self.salts.insert((*other).to_owned(), self.salt(other).expect("derived from the seed"));
            }
            self.seed = None;
        }
        self.salts.remove(name);
        self.erased.insert(name.to_owned(), c);
        self.erased_by.insert(name.to_owned(), record);
        Ok(())
    }

    /// Recomputes the leaf from `fields` (erased ones from their kept commitments) and checks it.
    /// Returns the names of the erased fields.
    pub fn verify(&self, fields: &[(&str, Value)]) -> Result<Vec<String>, LeafError> {
        self.verify_canonical(&canonical_texts(fields).map_err(|(name, e)| LeafError::Inexact(name, e))?)
    }

    /// [`Integrity::verify`] for fields given as their canonical texts (`null` when absent).
    pub fn verify_canonical(&self, fields: &[(&str, String)]) -> Result<Vec<String>, LeafError> {
        if self.format != LEAF_FORMAT {
            return Err(LeafError::UnknownFormat(self.format.clone()));
        }
        let mut commitments = Vec::with_capacity(fields.len());
        let mut erased = Vec::new();
        for (name, text) in fields {
            let c = match self.erased.get(*name) {
                Some(kept) => {
                    if text != "null" {
                        return Err(LeafError::ErasedButPresent((*name).to_owned()));
                    }
                    erased.push((*name).to_owned());
                    *kept
                }
                None => {
                    let salt = self.salt(name).ok_or_else(|| LeafError::NoSalt((*name).to_owned()))?;
                    commitment_of_canonical(&salt, text)
                }
            };
            commitments.push((*name, c));
        }
        if leaf(&commitments) != self.leaf_hash {
            return Err(LeafError::Mismatch);
        }
        Ok(erased)
    }
}

/// Why an entry does not match its leaf.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeafError {
    #[error("the fields do not match the leaf hash")]
    Mismatch,
    #[error("no salt for field {0}")]
    NoSalt(String),
    #[error("field {0} is marked erased but has a value")]
    ErasedButPresent(String),
    #[error("field {0}: {1}")]
    Inexact(String, InexactNumber),
    #[error("unknown leaf format {0}")]
    UnknownFormat(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> Vec<(&'static str, Value)> {
        vec![("action", json!("UPDATE")), ("ip_address", json!("10.1.2.3")), ("changes", json!({"b": 1, "a": [true]}))]
    }

    #[test]
    fn the_direct_leaf_writer_matches_the_canonical_one() {
        let names = ["id", "tenant_id", "_x", "A", "Z9", "a_b", "ab", "a", "b_"];
        let commitments: Vec<(&str, Hash)> =
            names.iter().enumerate().map(|(i, n)| (*n, Hash::of(&[&[i as u8]]))).collect();
        for k in 0..=commitments.len() {
            assert_eq!(leaf(&commitments[..k]), leaf_via_json(&commitments[..k]), "{k}");
        }
        // Names that need the general writer take it.
        let odd = [("é", Hash::of(&[b"1"])), ("a\"b", Hash::of(&[b"2"]))];
        assert_eq!(leaf(&odd), leaf_via_json(&odd));
    }

    #[test]
    fn a_committed_entry_verifies_and_any_change_does_not() {
        let integrity = Integrity::commit(&fields()).unwrap();
        assert_eq!(integrity.verify(&fields()), Ok(vec![]));
        let mut changed = fields();
        changed[2].1 = json!({"b": 2, "a": [true]});
        assert_eq!(integrity.verify(&changed), Err(LeafError::Mismatch));
        // Key order and spelling are not the value: the canonical form is.
        let mut reordered = fields();
        reordered[2].1 = serde_json::from_str(r#"{"a":[true],"b":1.0}"#).unwrap();
        assert_eq!(integrity.verify(&reordered), Ok(vec![]));
    }

    #[test]
    fn an_erased_field_still_verifies_and_is_reported() {
        let mut integrity = Integrity::commit(&fields()).unwrap();
        let names: Vec<&str> = fields().iter().map(|(n, _)| *n).collect();
        integrity.erase("ip_address", &json!("10.1.2.3"), &names, Uuid::nil()).unwrap();
        assert_eq!(integrity.seed, None, "the seed would give the erased salt back");
        assert!(!integrity.salts.contains_key("ip_address"));
        let mut erased = fields();
        erased[1].1 = Value::Null;
        assert_eq!(integrity.verify(&erased), Ok(vec!["ip_address".to_owned()]));
        let mut tampered = erased.clone();
        tampered[0].1 = json!("DELETE");
        assert_eq!(integrity.verify(&tampered), Err(LeafError::Mismatch), "the other fields are still bound");
        assert_eq!(integrity.verify(&fields()), Err(LeafError::ErasedButPresent("ip_address".into())));
    }
}
