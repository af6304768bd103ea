//! `auditline archive open`: reads archive objects back (from `--archive-dir`, or a copy of the
//! bucket: `aws s3 sync s3://<bucket>/tenant=acme/ acme/`), their sealed fields opened with the
//! archive's keys — from the local gateway's data directory or the deployment's keys table. A field
//! an erasure shredded reads as erased, naming its record, as in the live table.

use std::io::Write;
use std::path::{Path, PathBuf};

use auditline::archive::open_object;
use auditline::archive::shred::ArchiveKeys;
use clap::Args;

use crate::bundle::BoxError;

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive objects (`*.jsonl.gz`), or directories to search for them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The local gateway's data directory, whose file holds the keys (SQLite).
    #[arg(long, value_name = "DIR", conflicts_with = "keys_table")]
    pub data_dir: Option<PathBuf>,
    /// The deployment's archive keys table (its `ArchiveKeysTable`), read with your AWS credentials.
    #[arg(long, env = "ARCHIVE_KEYS_TABLE", value_name = "TABLE")]
    pub keys_table: Option<String>,
    /// A DynamoDB endpoint to use instead of AWS's (a local DynamoDB API).
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Where to write the entries, one JSON object per line (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Every `.jsonl.gz` under `path` (or `path` itself), in name order: partitions sort by date and hour.
fn objects_under(path: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut children: Vec<PathBuf> =
            std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            objects_under(&child, found)?;
        }
    } else if path.to_string_lossy().ends_with(".jsonl.gz") {
        found.push(path.to_owned());
    }
    Ok(())
}

/// What was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    pub objects: usize,
    pub entries: usize,
    /// Fields that read as erased: shredded by an erasure (its record named), or with no key at all.
    pub erased_fields: usize,
    pub without_key: usize,
}

pub async fn open(args: &ArchiveArgs, keys: &dyn ArchiveKeys, out: &mut dyn Write) -> Result<Opened, BoxError> {
    let mut files = Vec::new();
    for path in &args.paths {
        objects_under(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if files.is_empty() {
        return Err("no archive objects (*.jsonl.gz) under the paths given".into());
    }
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut opened = Opened::default();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let entries = open_object(&bytes, keys).await.map_err(|e| format!("{}: {e}", file.display()))?;
        for entry in &entries {
            opened.erased_fields += entry.integrity.erased.len();
            opened.without_key +=
                entry.integrity.erased.keys().filter(|f| !entry.integrity.erased_by.contains_key(*f)).count();
            serde_json::to_writer(&mut target, entry)?;
            target.write_all(b"\n")?;
        }
        opened.objects += 1;
        opened.entries += entries.len();
    }
    target.sync_all()?;
    writeln!(
        out,
        "opened {} entries from {} objects into {}; {} fields read as erased",
        opened.entries,
        opened.objects,
        args.out.display(),
        opened.erased_fields
    )?;
    if opened.without_key > 0 {
        writeln!(
            out,
            "{} of them have no key and no erasure record: the keys table has lost them (the verifier will say which)",
            opened.without_key
        )?;
    }
    Ok(opened)
}
