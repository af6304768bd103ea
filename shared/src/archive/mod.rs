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
//!
//! Erasable values are sealed on each line under keys an erasure destroys ([`shred`]).

pub mod shred;

use std::io::Write;

use async_trait::async_trait;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::backend::BackendError;
use crate::domain::AuditLogEntry;
use shred::{ArchiveKeys, ShredError, seal, sealed_fields};

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
    /// The object's content: one sealed entry per line, gzip'd, under the keys `keys` issues for
    /// its entries (the keys a redelivered batch used before).
    pub async fn gzip_jsonl(&self, keys: &dyn ArchiveKeys) -> Result<Vec<u8>, ArchiveError> {
        let Some(tenant) = self.entries.first().map(|e| &e.tenant_id) else { return Ok(Vec::new()) };
        let wanted: Vec<_> = self.entries.iter().map(|e| (e.id, sealed_fields(e))).collect();
        let slots = keys.issue(tenant, &wanted).await.map_err(ArchiveError::Keys)?;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        for (entry, slots) in self.entries.iter().zip(&slots) {
            serde_json::to_writer(&mut encoder, &seal(entry, slots)?).expect("an entry serialises");
            encoder.write_all(b"\n").expect("writing to memory");
        }
        Ok(encoder.finish().expect("writing to memory"))
    }
}

/// Why an object was not written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive keys: {0}")]
    Keys(BackendError),
    #[error(transparent)]
    Seal(#[from] ShredError),
    #[error("archive write: {0}")]
    Sink(BackendError),
    #[error("not an archive object: {0}")]
    Unreadable(String),
}

/// Reads an archive object back: each line's entry, its sealed fields opened with their keys from
/// `keys` (a field whose key an erasure destroyed reads as erased, naming its record).
pub async fn open_object(gzip_jsonl: &[u8], keys: &dyn ArchiveKeys) -> Result<Vec<AuditLogEntry>, ArchiveError> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzip_jsonl)
        .read_to_string(&mut text)
        .map_err(|e| ArchiveError::Unreadable(format!("gzip: {e}")))?;
    let lines: Vec<shred::ArchivedEntry> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| ArchiveError::Unreadable(format!("line {}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    let mut slots = std::collections::HashMap::new();
    let mut tenants: Vec<&crate::domain::TenantId> = lines.iter().map(|l| &l.entry.tenant_id).collect();
    tenants.dedup();
    for tenant in tenants {
        let ids: Vec<uuid::Uuid> = lines.iter().filter(|l| &l.entry.tenant_id == tenant).map(|l| l.entry.id).collect();
        for (id, found) in keys.keys(tenant, &ids).await.map_err(ArchiveError::Keys)? {
            slots.insert((tenant.clone(), id), found);
        }
    }
    lines
        .into_iter()
        .map(|line| {
            let found = slots.get(&(line.entry.tenant_id.clone(), line.entry.id));
            Ok(shred::open(line, found)?)
        })
        .collect()
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
