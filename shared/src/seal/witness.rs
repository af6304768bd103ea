//! Witnesses, from the seal's side: after a tenant's chain grows, each configured witness is asked
//! to cosign its head (C2SP `tlog-witness` `add-checkpoint`), with the proof that the head extends
//! what the witness saw last (the note-text hashes of the checkpoints in between, see
//! [`crate::integrity::checkpoint::extends`]). A witness that is down or refuses never blocks
//! sealing: the failure is counted, recorded for the health check, and tried again next run.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SealError, SealReport, Sealer};
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::integrity::Hash;
use crate::integrity::checkpoint::Checkpoint;
use crate::integrity::checkpoint::MAX_PROOF_LINES;
use crate::integrity::note::{CosignerKey, SignatureLine};

/// The most checkpoints a witness may lag and still be caught up in one submission.
pub const MAX_CATCH_UP: usize = 1000;
/// Attempts per witness and run when the witness cannot be reached.
const ATTEMPTS: u32 = 3;

/// What a witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// Its cosignature lines.
    Cosigned(Vec<String>),
    /// 409: it holds a checkpoint of this size, not the one the request named.
    Conflict(u64),
    /// Any other refusal (403 bad signature, 404 unknown origin, 422 bad proof, …).
    Refused { status: u16, reason: String },
}

/// A witness the seal submits checkpoints to.
#[async_trait]
pub trait WitnessClient: Send + Sync {
    /// Where it is (for logs and the health check).
    fn name(&self) -> &str;
    /// The key its cosignatures must verify with: lines that do not are not kept.
    fn key(&self) -> &CosignerKey;
    /// `POST add-checkpoint`: `old` is the size the witness is believed to hold, `proof` the
    /// note-text hashes between that checkpoint and `note`'s.
    async fn add_checkpoint(&self, old: u64, proof: &[Hash], note: &str) -> Result<WitnessAnswer, BackendError>;
}

/// What the seal last found at a witness (kept in the store, read by the health check).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessStatus {
    pub witness: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::domain::time::serde_millis_option")]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::domain::time::serde_millis_option")]
    pub last_failure: Option<DateTime<Utc>>,
    /// Why the last failure failed (an HTTP status or "unreachable"; never a body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl WitnessStatus {
    /// Failing when its last contact failed.
    pub fn failing(&self) -> bool {
        match (self.last_success, self.last_failure) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(ok), Some(failed)) => failed > ok,
        }
    }
}

/// Whether `checkpoint` already carries a valid cosignature by `key`.
fn cosigned_by(checkpoint: &Checkpoint, key: &CosignerKey) -> bool {
    let text = checkpoint.body.note_text();
    checkpoint.cosignatures.iter().filter_map(|l| SignatureLine::parse(l).ok()).any(|l| key.verify(&text, &l).is_some())
}

/// Asks every witness that has not cosigned `head` yet to do so; keeps the cosignatures in the
/// store and on `head`.
pub(super) async fn cosign_head(
    sealer: &Sealer,
    tenant: &TenantId,
    head: &mut Checkpoint,
    report: &mut SealReport,
    now: DateTime<Utc>,
) -> Result<(), SealError> {
    let Some(note) = head.signed_note() else { return Ok(()) };
    let text = head.body.note_text();
    let pending: Vec<_> = sealer.witnesses.iter().filter(|w| !cosigned_by(head, w.key())).cloned().collect();
    // A handful of configured witnesses, asked at once.
    let answers =
        futures::future::join_all(pending.iter().map(|w| submit(sealer, tenant, head, &note, w.as_ref()))).await;
    let mut lines = Vec::new();
    for (witness, answer) in pending.iter().zip(answers) {
        let mut status = WitnessStatus { witness: witness.name().to_owned(), ..WitnessStatus::default() };
        match answer {
            Ok(returned) => {
                let valid: Vec<String> = returned
                    .into_iter()
                    .filter(|l| SignatureLine::parse(l).is_ok_and(|p| witness.key().verify(&text, &p).is_some()))
                    .collect();
                if valid.is_empty() {
                    report.witness_failures += 1;
                    status.last_failure = Some(now);
                    status.last_error = Some("no valid cosignature in its answer".into());
                } else {
                    report.cosigned += valid.len();
                    status.last_success = Some(now);
                    lines.extend(valid);
                }
            }
            Err(reason) => {
                tracing::warn!(witness = witness.name(), tenant = %tenant, %reason, "a witness did not cosign; the next run tries again");
                report.witness_failures += 1;
                status.last_failure = Some(now);
                status.last_error = Some(reason);
            }
        }
        // The health check reads these; a failure to record one must not fail the seal.
        if let Err(e) = sealer.store.record_witness_status(&status).await {
            tracing::warn!(error = %e, "could not record a witness's status");
        }
    }
    if !lines.is_empty() {
        let end = DateTime::parse_from_rfc3339(&head.body.end)
            .map_err(|e| BackendError::Internal(format!("a checkpoint's end: {e}")))?
            .to_utc();
        sealer.store.add_cosignatures(tenant, end, &lines).await?;
        head.cosignatures.extend(lines);
    }
    Ok(())
}

/// One witness: first as if it held the previous checkpoint (the usual case), then, told its size
/// by a 409, with the proof from there — stepping it through checkpoints in between when it missed
/// more than one request may prove. Returns its lines, or why not (never a body).
async fn submit(
    sealer: &Sealer,
    tenant: &TenantId,
    head: &Checkpoint,
    note: &str,
    witness: &dyn WitnessClient,
) -> Result<Vec<String>, String> {
    let Some(mut old) = head.body.total.checked_sub(head.body.size) else {
        return Err("the head's total is below its size".into());
    };
    let mut proof: Vec<Hash> = Vec::new();
    let mut conflicts = 0;
    let mut attempt = 0;
    loop {
        match witness.add_checkpoint(old, &proof, note).await {
            Ok(WitnessAnswer::Cosigned(lines)) => return Ok(lines),
            // A witness that never saw this log takes it from here (no proof from nothing).
            Ok(WitnessAnswer::Conflict(0)) if conflicts == 0 && old != 0 => {
                conflicts += 1;
                (old, proof) = (0, Vec::new());
            }
            Ok(WitnessAnswer::Conflict(size)) if conflicts == 0 && size < head.body.total && size != old => {
                conflicts += 1;
                let between = checkpoints_between(sealer, tenant, head, size).await?;
                let mut rest = &between[..];
                old = size;
                while rest.len() > MAX_PROOF_LINES {
                    let (skipped, tail) = rest.split_at(MAX_PROOF_LINES);
                    let step = &tail[0];
                    let step_note = step.note().ok_or("a stored checkpoint cannot be rendered as a note")?;
                    match witness.add_checkpoint(old, &text_hashes(skipped), &step_note).await {
                        Ok(WitnessAnswer::Cosigned(_)) => {}
                        Ok(other) => return Err(format!("catching up, it answered {other:?}")),
                        Err(e) => return Err(format!("unreachable while catching up ({e})")),
                    }
                    old = step.body.total;
                    rest = &tail[1..];
                }
                proof = text_hashes(rest);
            }
            Ok(WitnessAnswer::Conflict(size)) if size >= head.body.total => {
                tracing::error!(witness = witness.name(), tenant = %tenant, size, head = head.body.total,
                    "ALARM: a witness holds a checkpoint at least as large as this head: the chain it saw is not this one");
                return Err(format!(
                    "FORK? it holds a checkpoint of size {size}, not below this head's {}",
                    head.body.total
                ));
            }
            Ok(WitnessAnswer::Conflict(size)) => return Err(format!("409: it holds size {size}")),
            Ok(WitnessAnswer::Refused { status: 422, reason }) => {
                tracing::error!(witness = witness.name(), tenant = %tenant, %reason,
                    "ALARM: a witness refused this head as not extending what it saw");
                return Err(format!("FORK? HTTP 422: {reason}"));
            }
            Ok(WitnessAnswer::Refused { status, reason }) => return Err(format!("HTTP {status}: {reason}")),
            Err(e) => {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    return Err(format!("unreachable ({e})"));
                }
                tokio::time::sleep(StdDuration::from_millis(200 << (2 * attempt))).await;
            }
        }
    }
}

fn text_hashes(checkpoints: &[Checkpoint]) -> Vec<Hash> {
    checkpoints.iter().map(|c| Hash::of(&[c.body.note_text().as_bytes()])).collect()
}

/// The checkpoints after the one of total `size`, up to `head` (excluded), oldest first.
async fn checkpoints_between(
    sealer: &Sealer,
    tenant: &TenantId,
    head: &Checkpoint,
    size: u64,
) -> Result<Vec<Checkpoint>, String> {
    let recent = sealer
        .store
        .latest_checkpoints(tenant, MAX_CATCH_UP)
        .await
        .map_err(|e| format!("the chain could not be read: {e}"))?;
    let position = recent.iter().position(|c| c.body.total == size).ok_or_else(|| {
        format!("it holds size {size}, which is no checkpoint of the last {MAX_CATCH_UP} of this chain")
    })?;
    // `recent` is newest first: the head (or a later one), …, then the witness's checkpoint.
    let mut between: Vec<Checkpoint> =
        recent[..position].iter().filter(|c| c.body.total < head.body.total).cloned().collect();
    between.reverse();
    Ok(between)
}
