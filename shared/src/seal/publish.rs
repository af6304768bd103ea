//! Publication outside the tables: every new checkpoint, as JSON with its signed note, under
//! `checkpoints/tenant=<t>/<countdown>-<end>.json` in a write-once store (an S3 bucket with Object
//! Lock in compliance mode on AWS, see `store/s3.rs`; a directory locally). Nobody who can write
//! the tables can take back what was published there, and the seal reads the newest back before
//! it signs on (its anchor outside the tables). The countdown (10^13 − 1 − end in epoch ms, 13
//! digits) makes a plain listing, oldest key first, start with the newest checkpoint: one request.

use async_trait::async_trait;
use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::CheckpointSink;
use crate::backend::BackendError;
use crate::domain::TenantId;
use crate::integrity::checkpoint::Checkpoint;

/// Where a tenant's checkpoints are published.
pub fn publication_prefix(tenant: &str) -> String {
    format!("checkpoints/tenant={tenant}/")
}

/// Where a checkpoint is published: the countdown (newest first), then its end with the
/// separators dropped (no `:`).
pub fn publication_key(checkpoint: &Checkpoint) -> String {
    let end: String = checkpoint.body.end.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let millis = DateTime::parse_from_rfc3339(&checkpoint.body.end).map_or(0, |t| t.timestamp_millis()).clamp(0, LAST);
    format!("{}{:013}-{end}.json", publication_prefix(&checkpoint.body.tenant), LAST - millis)
}

/// The largest epoch-ms a countdown of 13 digits holds (the year 2286).
const LAST: i64 = 9_999_999_999_999;

#[derive(Serialize, Deserialize)]
struct Published {
    checkpoint: Checkpoint,
    #[serde(default)]
    note: Option<String>,
}

/// What is published: the checkpoint (with the cosignatures it had then) and its note.
pub fn publication_body(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut body =
        serde_json::to_vec(&Published { checkpoint: checkpoint.clone(), note: checkpoint.note() }).unwrap_or_default();
    body.push(b'\n');
    body
}

/// The checkpoint in a published object.
pub fn read_publication(bytes: &[u8]) -> Result<Checkpoint, BackendError> {
    serde_json::from_slice::<Published>(bytes)
        .map(|p| p.checkpoint)
        .map_err(|e| BackendError::Internal(format!("a published checkpoint could not be read: {e}")))
}

/// Whether an object already published for the same period holds the same checkpoint (its
/// cosignatures may differ); if not, two different checkpoints were signed for one period.
pub fn same_checkpoint(published: &Checkpoint, ours: &Checkpoint) -> Result<(), BackendError> {
    if published.body == ours.body && published.signature == ours.signature {
        Ok(())
    } else {
        Err(BackendError::Internal(format!(
            "ALARM: another checkpoint was already published for the period ending {} of tenant {}: the chain forked",
            ours.body.end, ours.body.tenant
        )))
    }
}

/// The local adapter: files under a directory, each created once (an existing one is left as is).
pub struct DirectoryCheckpoints {
    pub root: std::path::PathBuf,
}

#[async_trait]
impl CheckpointSink for DirectoryCheckpoints {
    fn name(&self) -> &str {
        "directory"
    }

    async fn publish(&self, checkpoint: &Checkpoint) -> Result<(), BackendError> {
        let path = self.root.join(publication_key(checkpoint));
        let io = |e: std::io::Error| BackendError::Unavailable(format!("checkpoint {}: {e}", path.display()));
        if tokio::fs::try_exists(&path).await.map_err(io)? {
            let existing = read_publication(&tokio::fs::read(&path).await.map_err(io)?)?;
            return same_checkpoint(&existing, checkpoint);
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let partial = path.with_extension("json.partial");
        tokio::fs::write(&partial, publication_body(checkpoint)).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)
    }

    async fn latest(&self, tenant: &TenantId) -> Result<Option<Checkpoint>, BackendError> {
        let dir = self.root.join(publication_prefix(tenant.as_str()));
        let io = |e: std::io::Error| BackendError::Unavailable(format!("checkpoints {}: {e}", dir.display()));
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut newest: Option<std::path::PathBuf> = None;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") && newest.as_ref().is_none_or(|n| path < *n) {
                newest = Some(path);
            }
        }
        match newest {
            Some(path) => Ok(Some(read_publication(&tokio::fs::read(&path).await.map_err(io)?)?)),
            None => Ok(None),
        }
    }
}
