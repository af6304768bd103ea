//! `next_token`: an opaque position in one query's results.
//!
//! Layout, base64url without padding: a version byte, the 16-byte id to continue after, the number
//! of matching entries still to skip (4 bytes; non-zero only when a store stopped a page before the
//! requested offset was used up), and the first 8 bytes of SHA-256 over (query, id, skip). The digest ties a token to the tenant and filters it
//! was issued for, so a token from another query or tenant, or a damaged one, is refused with a
//! clear error. It is not a signature and needs none: a token only narrows the id range of the
//! caller's own query inside the caller's own tenant (see `AuditQuery::plan`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::validation::ValidationError;

const VERSION: u8 = 1;
const DIGEST_LEN: usize = 8;
const TOKEN_LEN: usize = 1 + 16 + 4 + DIGEST_LEN;

/// Where a query continues: strictly after (older than) `after`, still skipping `skip` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation {
    pub after: Uuid,
    pub skip: u32,
}

fn digest(query_key: &str, at: Continuation) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update([VERSION]);
    h.update(query_key.as_bytes());
    h.update(at.after.as_bytes());
    h.update(at.skip.to_be_bytes());
    let full = h.finalize();
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

pub(super) fn encode(at: Continuation, query_key: &str) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(at.after.as_bytes());
    bytes.extend_from_slice(&at.skip.to_be_bytes());
    bytes.extend_from_slice(&digest(query_key, at));
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn decode(token: &str, query_key: &str) -> Result<Continuation, ValidationError> {
    let malformed = ValidationError::InvalidCursor { reason: "is not a token this service issued" };
    // Bound the work before decoding anything a client sent.
    if token.len() > 64 {
        return Err(malformed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| malformed.clone())?;
    if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
        return Err(malformed);
    }
    let after = Uuid::from_slice(&bytes[1..17]).map_err(|_| malformed.clone())?;
    let skip = u32::from_be_bytes(bytes[17..21].try_into().map_err(|_| malformed)?);
    let at = Continuation { after, skip };
    if bytes[21..] != digest(query_key, at) {
        return Err(ValidationError::InvalidCursor {
            reason: "belongs to a different query; repeat the query without it",
        });
    }
    Ok(at)
}
