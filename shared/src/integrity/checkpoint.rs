//! Checkpoints: one tenant's sealed periods, each a signed commitment to the tree of its entries,
//! chained to the one before, and published as a C2SP `tlog-checkpoint` note.
//!
//! Format `auditline-checkpoint/2`. The signed bytes are the note text:
//!
//! ```text
//! <origin>                      the tenant's log: "<deployment origin>/<tenant>"
//! <total>                       entries sealed in the tenant's chain up to and with this period
//! <base64 root>                 RFC 6962 root of this period's tree
//! auditline-checkpoint/2
//! period <start> <end> <size>   the period (RFC 3339, ms; start inclusive, end exclusive), its leaves
//! ids <base64>                  SHA-256 of the period's entry ids (16 bytes each) in tree order
//! previous <base64>             the link of the previous checkpoint (32 zero bytes for the first)
//! ```
//!
//! signed with ECDSA P-256 / SHA-256 (note signature type 0x02, key name = origin, key id = the
//! first 4 bytes of SHA-256 of the key's DER SubjectPublicKeyInfo; low s only).
//!
//! The mapping to C2SP: a tenant's log is the concatenation of its periods, so the size line is the
//! log's size after this period; the root line is the root of this period's tree (the leaves
//! `total − size .. total`), not of the whole log. What makes the log append-only is the chain:
//! `link = SHA-256(previous ‖ SHA-256(note text))`, and each checkpoint's `previous` is the link
//! before it. The link covers the signed text, not the signature. Consistent periods meet
//! (`start` = the previous `end`), so a period without entries lies inside the next checkpoint's
//! range and nothing can go missing between them.
//!
//! Extension lines are not audited by generic C2SP monitors; auditline's witness checks them (the
//! chain, see [`extends`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Hash;
use super::note::{self, Note, NoteError, SignatureLine};

pub const CHECKPOINT_FORMAT: &str = "auditline-checkpoint/2";

/// The `previous` of a tenant's first checkpoint.
pub const GENESIS: Hash = Hash([0; 32]);

/// What a checkpoint states: the signed part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub format: String,
    /// The tenant's log identity: the deployment's origin, `/`, the tenant.
    pub origin: String,
    pub tenant: String,
    /// The period's first instant (RFC 3339, UTC, milliseconds).
    pub start: String,
    /// The first instant after it.
    pub end: String,
    /// Entries in this period's tree.
    pub size: u64,
    /// Entries in the tenant's chain up to and with this period.
    pub total: u64,
    pub root: Hash,
    /// SHA-256 of the period's entry ids, in tree order (see [`ids_hash`]).
    pub ids: Hash,
    pub previous: Hash,
    /// The signing key's fingerprint (see [`super::signing::key_id`]).
    pub key_id: String,
}

/// SHA-256 of the concatenated 16-byte ids, in tree order.
pub fn ids_hash<'a>(ids: impl IntoIterator<Item = &'a [u8; 16]>) -> Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id);
    }
    Hash(h.finalize().into())
}

/// The link after `previous` of a checkpoint whose note text hashes to `text_hash`.
pub fn link(previous: &Hash, text_hash: &Hash) -> Hash {
    Hash::of(&[&previous.0, &text_hash.0])
}

/// Why a note is not an auditline checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("not an {CHECKPOINT_FORMAT} note: {0}")]
    Format(&'static str),
}

impl CheckpointBody {
    /// The note text: what the seal key signs, witnesses cosign, and the link hashes.
    pub fn note_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\nperiod {} {} {}\nids {}\nprevious {}\n",
            self.origin,
            self.total,
            STANDARD.encode(self.root.0),
            self.format,
            self.start,
            self.end,
            self.size,
            STANDARD.encode(self.ids.0),
            STANDARD.encode(self.previous.0),
        )
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.note_text().into_bytes()
    }

    /// What the next checkpoint names as `previous`.
    pub fn link(&self) -> Hash {
        link(&self.previous, &Hash::of(&[self.note_text().as_bytes()]))
    }

    /// Whether the origin names the tenant (`…/<tenant>`) and is a valid key name.
    pub fn origin_names_tenant(&self) -> bool {
        note::valid_key_name(&self.origin)
            && self.origin.strip_suffix(&self.tenant).is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('/'))
    }

    /// Reads a note text back; `key_id` is not in the text (the signature line names the key).
    /// Only a text this module would write is accepted.
    pub fn from_note_text(text: &str) -> Result<CheckpointBody, CheckpointError> {
        let bad = CheckpointError::Format;
        let lines: Vec<&str> = text.strip_suffix('\n').ok_or(bad("no final newline"))?.split('\n').collect();
        let [origin, total, root, format, period, ids, previous] = lines[..] else {
            return Err(bad("it does not have the seven lines of the format"));
        };
        if format != CHECKPOINT_FORMAT {
            return Err(bad("the fourth line does not name the format"));
        }
        let number = |s: &str| -> Option<u64> {
            (!s.is_empty() && (s == "0" || !s.starts_with('0')) && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let hash = |s: &str| -> Option<Hash> { STANDARD.decode(s).ok()?.try_into().ok().map(Hash) };
        let mut period_parts = period.strip_prefix("period ").ok_or(bad("no period line"))?.split(' ');
        let (Some(start), Some(end), Some(size), None) =
            (period_parts.next(), period_parts.next(), period_parts.next(), period_parts.next())
        else {
            return Err(bad("the period line is not: period <start> <end> <size>"));
        };
        let tenant = origin.rsplit_once('/').map(|(_, t)| t).ok_or(bad("the origin names no tenant"))?;
        let body = CheckpointBody {
            format: format.to_owned(),
            origin: origin.to_owned(),
            tenant: tenant.to_owned(),
            start: start.to_owned(),
            end: end.to_owned(),
            size: number(size).ok_or(bad("the period's size is not a number"))?,
            total: number(total).ok_or(bad("the size line is not a number"))?,
            root: hash(root).ok_or(bad("the root is not a base64 hash"))?,
            ids: ids.strip_prefix("ids ").and_then(hash).ok_or(bad("no ids line"))?,
            previous: previous.strip_prefix("previous ").and_then(hash).ok_or(bad("no previous line"))?,
            key_id: String::new(),
        };
        if body.note_text() != text {
            return Err(bad("it is not in canonical form"));
        }
        if !body.origin_names_tenant() {
            return Err(bad("the origin is not <origin>/<tenant>"));
        }
        Ok(body)
    }
}

/// A signed checkpoint, as stored and as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub body: CheckpointBody,
    /// DER ECDSA signature (low s), base64.
    pub signature: String,
    /// Witnesses' cosignature lines (`— <name> <base64>`), as they returned them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosignatures: Vec<String>,
}

impl Checkpoint {
    pub fn signature_bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.signature).ok()
    }

    /// What the next checkpoint names as `previous`.
    pub fn link(&self) -> Hash {
        self.body.link()
    }

    /// The signed note: the text, the seal key's signature (key name = origin), then the
    /// cosignatures. `None` when the stored signature is not base64 or the key id not hex.
    pub fn note(&self) -> Option<String> {
        let mut note = self.log_note()?;
        note.signatures.extend(self.cosignatures.iter().filter_map(|l| SignatureLine::parse(l).ok()));
        Some(note.render())
    }

    /// The note with the seal key's signature only: what witnesses are sent (stored cosignature
    /// lines, which whoever writes the tables could add, never reach them).
    pub fn signed_note(&self) -> Option<String> {
        Some(self.log_note()?.render())
    }

    fn log_note(&self) -> Option<Note> {
        let key_id = self.body.key_id.get(..8).and_then(|hex| {
            let bytes: Vec<u8> =
                (0..4).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<_>>()?;
            bytes.try_into().ok()
        })?;
        let signature = SignatureLine { name: self.body.origin.clone(), key_id, signature: self.signature_bytes()? };
        Some(Note { text: self.body.note_text(), signatures: vec![signature] })
    }

    /// Keeps only the cosignatures that verify with one of `keys`.
    pub fn retain_cosignatures(&mut self, keys: &[note::CosignerKey]) {
        let text = self.body.note_text();
        self.cosignatures.retain(|line| {
            SignatureLine::parse(line).is_ok_and(|l| keys.iter().any(|k| k.verify(&text, &l).is_some()))
        });
    }
}

/// Encodes a signature for [`Checkpoint::signature`].
pub fn encode_signature(der: &[u8]) -> String {
    STANDARD.encode(der)
}

/// Hashes a chain proof may carry: as many as a C2SP `tlog-witness` request allows (63). A
/// witness further behind is stepped through checkpoints in between.
pub const MAX_PROOF_LINES: usize = 63;

/// Whether `new` extends the chain at `old`, given the note-text hashes of the checkpoints strictly
/// between them, oldest first: the proof a witness checks (see docs/ARCHITECTURE.md, Witnesses).
/// Sizes must grow, and the links folded from `old` must reach `new.previous`.
pub fn extends(old: &CheckpointBody, between: &[Hash], new: &CheckpointBody) -> bool {
    if old.origin != new.origin || new.total <= old.total {
        return false;
    }
    let reached = between.iter().fold(old.link(), |at, text_hash| link(&at, text_hash));
    reached == new.previous
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(previous: Hash, total: u64, end: &str) -> CheckpointBody {
        CheckpointBody {
            format: CHECKPOINT_FORMAT.into(),
            origin: "auditline.local/acme".into(),
            tenant: "acme".into(),
            start: "2026-12-06T03:00:00.000Z".into(),
            end: end.into(),
            size: 3,
            total,
            root: Hash::of(&[b"root"]),
            ids: Hash::of(&[b"ids"]),
            previous,
            key_id: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn a_note_text_reads_back_as_itself() {
        let b = body(GENESIS, 3, "2026-12-06T04:00:00.000Z");
        let text = b.note_text();
        let back = CheckpointBody::from_note_text(&text).unwrap();
        assert_eq!(CheckpointBody { key_id: b.key_id.clone(), ..back }, b);
        assert!(CheckpointBody::from_note_text(&text.replace("\n3\n", "\n03\n")).is_err());
        assert!(CheckpointBody::from_note_text(&text.replace("period", "periods")).is_err());
        assert!(CheckpointBody::from_note_text(&format!("{text}extra\n")).is_err());
    }

    #[test]
    fn the_chain_proof_folds_links() {
        let first = body(GENESIS, 3, "2026-12-06T04:00:00.000Z");
        let second = body(first.link(), 6, "2026-12-06T05:00:00.000Z");
        let third = body(second.link(), 9, "2026-12-06T06:00:00.000Z");
        let between = [Hash::of(&[second.note_text().as_bytes()])];
        assert!(extends(&first, &between, &third));
        assert!(extends(&first, &[], &second));
        assert!(!extends(&first, &[], &third), "a checkpoint skipped");
        assert!(!extends(&second, &[], &first), "a rollback");
        assert!(!extends(&third, &[], &third), "not larger");
    }
}
