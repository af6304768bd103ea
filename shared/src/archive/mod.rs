//! The archive: every stored entry kept for years past the table's TTL, as gzip'd JSON lines in
//! Hive-style partitions (`tenant=<t>/date=YYYY-MM-DD/hour=HH/<name>.jsonl.gz`) that Athena reads
//! with partition projection.
//!
//! Delivery is at least once, and a redelivered batch never leaves a second copy: the entries of
//! one batch are grouped by partition, and each group's object is named after the stream sequence
//! number of its first record. A batch that fails is retried whole (from its first record), so it
//! groups the same way and rewrites the same objects; if Lambda splits it, each half starts at a
//! record of its own and the first half rewrites the same names with fewer entries while the second
//! writes the rest under new ones — every entry still in exactly one current object.

use std::io::Write;

use async_trait::async_trait;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::backend::BackendError;
use crate::domain::AuditLogEntry;

/// Where archive objects go: an S3 bucket on AWS, a directory or an S3 API locally.
#[async_trait]
pub trait ArchiveSink: Send + Sync {
    /// Writes (or overwrites) the object at `key`.
    async fn put(&self, key: &str, gzip_jsonl: Vec<u8>) -> Result<(), BackendError>;
}

/// The partition prefix an entry belongs to (its tenant and the UTC hour of its timestamp).
pub fn partition(entry: &AuditLogEntry) -> String {
    format!("tenant={}/{}", entry.tenant_id, entry.timestamp.format("date=%Y-%m-%d/hour=%H"))
}

/// One object to write: a partition's entries of one batch, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveObject {
    pub key: String,
    pub entries: Vec<AuditLogEntry>,
}

impl ArchiveObject {
    /// The object's content: one entry (the API's JSON) per line, gzip'd.
    pub fn gzip_jsonl(&self) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        for entry in &self.entries {
            serde_json::to_writer(&mut encoder, entry).expect("an entry serialises");
            encoder.write_all(b"\n").expect("writing to memory");
        }
        encoder.finish().expect("writing to memory")
    }
}

/// Groups a batch's entries (with their records' sequence numbers, in stream order) into objects,
/// in the order of their first records.
pub fn objects(batch: Vec<(String, AuditLogEntry)>) -> Vec<ArchiveObject> {
    let mut out: Vec<ArchiveObject> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (sequence, entry) in batch {
        let partition = partition(&entry);
        match index.get(&partition) {
            Some(&i) => out[i].entries.push(entry),
            None => {
                index.insert(partition.clone(), out.len());
                // Sequence numbers are decimal strings; the name keeps only what is safe in a key.
                let name: String = sequence.chars().filter(char::is_ascii_alphanumeric).collect();
                out.push(ArchiveObject { key: format!("{partition}/{name}.jsonl.gz"), entries: vec![entry] });
            }
        }
    }
    out
}

/// Writes each object under a directory, as the gateway's `--archive-dir` does.
pub struct DirectorySink {
    pub root: std::path::PathBuf,
}

#[async_trait]
impl ArchiveSink for DirectorySink {
    async fn put(&self, key: &str, gzip_jsonl: Vec<u8>) -> Result<(), BackendError> {
        let path = self.root.join(key);
        let io = |e: std::io::Error| BackendError::Unavailable(format!("archive {}: {e}", path.display()));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // Written aside and renamed, so a reader never sees half an object.
        let partial = path.with_extension("gz.partial");
        tokio::fs::write(&partial, gzip_jsonl).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)
    }
}
