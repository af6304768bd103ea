//! A bundle on disk: a directory with a tenant's entries and checkpoints as JSON Lines, the leaves
//! of periods partly past retention, the manifest (whose, when fetched, under which seal
//! settings), and the public keys the service published. What `fetch` writes and `verify` reads.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use auditline::domain::AuditLogEntry;
use auditline::integrity::checkpoint::Checkpoint;
use auditline::seal::PublishedKey;
use auditline::seal::verify::{Bundle, Manifest, PeriodLeaves, WitnessView};
use serde::de::DeserializeOwned;

pub const ENTRIES: &str = "entries.jsonl";
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
/// Leaves of the periods some of whose entries the service no longer held.
pub const LEAVES: &str = "leaves.jsonl";
pub const MANIFEST: &str = "bundle.json";
/// The keys and windows `GET /audit/keys` published, as fetched (windows can only narrow a key
/// the auditor pinned; they never make a key trusted).
pub const PUBLISHED_KEYS: &str = "keys.json";
/// What witnesses said they last cosigned for the tenant's log (`fetch --witness`).
pub const WITNESSED: &str = "witnessed.jsonl";
/// The published keys as fetched, one `<key_id>.pem` each. Handy, but trust a key you got by
/// another route (the deployment's output, a colleague) rather than one from the same download.
pub const KEYS_DIR: &str = "public-keys";

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a bundle: a directory as `fetch` writes it, or a JSON Lines export with its checkpoints
/// beside it (as `export` writes them, see [`checkpoints_beside`]). A line that is not an entry (or
/// a checkpoint) is an error that names the file and line: a bundle that does not parse is not a
/// bundle that verifies.
pub fn read(path: &Path) -> Result<Bundle, BoxError> {
    let witnessed = path.join(WITNESSED);
    let (entries, checkpoints, leaves, manifest) = if path.is_dir() {
        (path.join(ENTRIES), path.join(CHECKPOINTS), Some(path.join(LEAVES)), path.join(MANIFEST))
    } else {
        let checkpoints = checkpoints_beside(path);
        if !checkpoints.exists() {
            return Err(format!(
                "{}: no checkpoints beside it ({}); export in JSON Lines without filters other than dates, or use auditline fetch",
                path.display(),
                checkpoints.display()
            )
            .into());
        }
        (path.to_owned(), checkpoints, Some(leaves_beside(path)), beside(path, ".bundle.json"))
    };
    let periods = match leaves {
        Some(leaves) if leaves.exists() => read_lines::<PeriodLeaves>(&leaves)?,
        _ => Vec::new(),
    };
    let manifest = if manifest.exists() {
        let text = fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
        Some(serde_json::from_str::<Manifest>(&text).map_err(|e| format!("{}: {e}", manifest.display()))?)
    } else {
        None
    };
    Ok(Bundle {
        entries: read_lines::<AuditLogEntry>(&entries)?,
        checkpoints: read_lines(&checkpoints)?,
        periods,
        manifest,
        witnessed: if witnessed.is_file() { read_lines(&witnessed)? } else { Vec::new() },
    })
}

/// The keys the service published when the bundle was fetched, if it kept them.
pub fn read_published_keys(path: &Path) -> Result<Vec<PublishedKey>, BoxError> {
    let file = if path.is_dir() { path.join(PUBLISHED_KEYS) } else { beside(path, ".keys.json") };
    if !file.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?)
}

/// `<out><suffix>`: where an export keeps what a fetch keeps in its directory.
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes a small JSON file, refusing to replace one.
pub fn write_new_json(path: &Path, value: &impl serde::Serialize) -> Result<(), BoxError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e} (write to a new place)", path.display()))?;
    file.write_all(&serde_json::to_vec_pretty(value)?)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// Where the checkpoints of the export `out` are written: `<out>.checkpoints.jsonl`.
pub fn checkpoints_beside(out: &Path) -> PathBuf {
    beside(out, ".checkpoints.jsonl")
}

/// Where the leaves of the periods of an export's erasure records are written:
/// `<out>.leaves.jsonl`.
pub fn leaves_beside(out: &Path) -> PathBuf {
    beside(out, ".leaves.jsonl")
}

/// The checkpoints written beside an export.
pub fn read_checkpoints(path: &Path) -> Result<Vec<auditline::integrity::checkpoint::Checkpoint>, BoxError> {
    read_lines(path)
}

/// Where the published keys of the export `out` are written: `<out>.public-keys/`.
pub fn keys_beside(out: &Path) -> PathBuf {
    beside(out, ".public-keys")
}

/// Writes a published key as `<dir>/<key_id>.pem`; the id is checked against the key itself.
pub fn write_public_key(dir: &Path, key_id: &str, pem: &str) -> Result<PathBuf, BoxError> {
    let der = auditline::integrity::signing::pem_der(pem, "PUBLIC KEY")
        .ok_or_else(|| format!("key {key_id}: not a PEM public key"))?;
    let actual = auditline::integrity::signing::key_id(&der);
    if actual != key_id {
        return Err(format!("key {key_id}: its fingerprint is {actual}").into());
    }
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{actual}.pem"));
    fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, BoxError> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        out.push(item);
    }
    Ok(out)
}

/// Writes a bundle into a new (or empty) directory, line by line.
pub struct Writer {
    dir: PathBuf,
    entries: BufWriter<File>,
    checkpoints: BufWriter<File>,
    leaves: BufWriter<File>,
}

impl Writer {
    /// Refuses a directory that already holds a bundle, rather than mixing two downloads.
    pub fn create(dir: &Path) -> Result<Self, BoxError> {
        fs::create_dir_all(dir.join(KEYS_DIR)).map_err(|e| format!("{}: {e}", dir.display()))?;
        let open = |name: &str| -> Result<BufWriter<File>, BoxError> {
            let path = dir.join(name);
            let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    format!("{} exists: write the bundle to a new directory", path.display())
                } else {
                    format!("{}: {e}", path.display())
                }
            })?;
            Ok(BufWriter::new(file))
        };
        Ok(Writer {
            dir: dir.to_owned(),
            entries: open(ENTRIES)?,
            checkpoints: open(CHECKPOINTS)?,
            leaves: open(LEAVES)?,
        })
    }

    pub fn entry(&mut self, entry: &serde_json::Value) -> Result<(), BoxError> {
        writeln!(self.entries, "{entry}")?;
        Ok(())
    }

    pub fn checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        writeln!(self.checkpoints, "{}", serde_json::to_string(checkpoint)?)?;
        Ok(())
    }

    pub fn leaves(&mut self, leaves: &PeriodLeaves) -> Result<(), BoxError> {
        writeln!(self.leaves, "{}", serde_json::to_string(leaves)?)?;
        Ok(())
    }

    pub fn witnessed(&self, views: &[WitnessView]) -> Result<(), BoxError> {
        let path = self.dir.join(WITNESSED);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for view in views {
            writeln!(file, "{}", serde_json::to_string(view)?)?;
        }
        file.sync_all()?;
        Ok(())
    }

    pub fn manifest(&self, manifest: &Manifest) -> Result<(), BoxError> {
        write_new_json(&self.dir.join(MANIFEST), manifest)
    }

    pub fn published_keys(&self, keys: &[PublishedKey]) -> Result<(), BoxError> {
        write_new_json(&self.dir.join(PUBLISHED_KEYS), &keys)
    }

    /// Writes a published key as `public-keys/<key_id>.pem`.
    pub fn public_key(&mut self, key_id: &str, pem: &str) -> Result<PathBuf, BoxError> {
        write_public_key(&self.dir.join(KEYS_DIR), key_id, pem)
    }

    pub fn finish(mut self) -> Result<(), BoxError> {
        for file in [&mut self.entries, &mut self.checkpoints, &mut self.leaves] {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        Ok(())
    }
}
