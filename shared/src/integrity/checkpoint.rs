//! Checkpoints: one tenant's sealed periods, each a signed commitment to the tree of its entries,
//! chained to the one before.
//!
//! Format `auditline-checkpoint/1`. The signed bytes are the RFC 8785 canonical JSON of the body
//! `{format, tenant, start, end, size, root, previous, key_id}` (times as RFC 3339 UTC with
//! milliseconds; `start` inclusive, `end` exclusive); the signature is ECDSA P-256 over SHA-256 of
//! them, DER-encoded, in base64. `previous` is the hash of the previous checkpoint — SHA-256 of the
//! canonical JSON of its body *and* signature — or 64 zeros for a tenant's first. So a checkpoint
//! removed, replaced, re-signed or reordered breaks the next link; consecutive checkpoints meet
//! (`start` = the previous `end`), so a period without entries lies inside the next checkpoint's
//! range and nothing can go missing between them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Hash, canonical};

pub const CHECKPOINT_FORMAT: &str = "auditline-checkpoint/1";

/// The `previous` of a tenant's first checkpoint.
pub const GENESIS: Hash = Hash([0; 32]);

/// What a checkpoint states: the signed part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    pub format: String,
    pub tenant: String,
    /// The period's first instant (RFC 3339, UTC, milliseconds).
    pub start: String,
    /// The first instant after it.
    pub end: String,
    /// Entries in the tree.
    pub size: u64,
    pub root: Hash,
    pub previous: Hash,
    /// The signing key's fingerprint (see [`super::signing::key_id`]).
    pub key_id: String,
}

impl CheckpointBody {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).expect("a body serialises");
        canonical::to_string(&value).expect("a body has no inexact numbers").into_bytes()
    }
}

/// A signed checkpoint, as stored and as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub body: CheckpointBody,
    /// DER ECDSA signature, base64.
    pub signature: String,
}

impl Checkpoint {
    pub fn signature_bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(&self.signature).ok()
    }

    /// What the next checkpoint names as `previous`.
    pub fn hash(&self) -> Hash {
        let value = serde_json::to_value(self).expect("a checkpoint serialises");
        Hash::of(&[canonical::to_string(&value).expect("no inexact numbers").as_bytes()])
    }
}

/// Encodes a signature for [`Checkpoint::signature`].
pub fn encode_signature(der: &[u8]) -> String {
    STANDARD.encode(der)
}
