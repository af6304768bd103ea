//! Publication outside the tables: every new checkpoint, as JSON with its signed note, under
//! `checkpoints/tenant=<t>/<end>.json` in a write-once store (an S3 bucket with Object Lock in
//! compliance mode on AWS, see `store/s3.rs`; a directory locally). Nobody who can write the
//! tables can take back what was published there.

use async_trait::async_trait;
use serde::Serialize;

use super::CheckpointSink;
use crate::backend::BackendError;
use crate::integrity::checkpoint::Checkpoint;

/// Where a checkpoint is published: its end with the separators dropped, so keys sort by time and
/// hold no `:`.
pub fn publication_key(checkpoint: &Checkpoint) -> String {
    let end: String = checkpoint.body.end.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("checkpoints/tenant={}/{end}.json", checkpoint.body.tenant)
}

#[derive(Serialize)]
struct Published<'a> {
    checkpoint: &'a Checkpoint,
    note: Option<String>,
}

/// What is published: the checkpoint (with the cosignatures it had then) and its note.
pub fn publication_body(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut body = serde_json::to_vec(&Published { checkpoint, note: checkpoint.note() }).unwrap_or_default();
    body.push(b'\n');
    body
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
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let partial = path.with_extension("json.partial");
        tokio::fs::write(&partial, publication_body(checkpoint)).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)
    }
}
