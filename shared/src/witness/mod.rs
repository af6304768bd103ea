//! A witness (C2SP `tlog-witness`, `add-checkpoint`) for auditline's checkpoint chains: anyone — a
//! tenant, an auditor — can run one (`auditline witness`). It keeps the latest checkpoint it
//! cosigned per origin, durably; cosigns a new one only if it is signed by the log's key and extends
//! that one; and answers 409 with its size when the request names another. A log that showed two
//! histories would need this witness's cosignature on both: it never gives it.
//!
//! The proof for this chain of per-period trees (not RFC 6962 consistency): the body is
//!
//! ```text
//! old <total of the checkpoint the witness holds>
//! <base64 SHA-256 of the note text of each checkpoint after it and before the new one, oldest first>
//!
//! <the new checkpoint's signed note>
//! ```
//!
//! and the witness folds the links from its checkpoint through those hashes; the result must be the
//! new checkpoint's `previous` (see [`crate::integrity::checkpoint::extends`]). Sizes must grow.
//! The cosignature is a `cosignature/v1` (Ed25519, type 0x04) over the new note text; besides the
//! checkpoint's size and root it states that the chain (the `previous` line) extends every
//! checkpoint this witness cosigned before for the origin.
//!
//! State: one file per origin under a directory, replaced atomically (written aside, synced,
//! renamed, directory synced) before the cosignature is returned, under one lock — the check and
//! the update are one step, so two requests cannot roll the state back. A lock file keeps a second
//! witness process off the same directory.

pub mod client;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::integrity::checkpoint::{CheckpointBody, MAX_PROOF_LINES, extends};
use crate::integrity::note::{Cosigner, Note, ecdsa_key_id};
use crate::integrity::{Hash, signing};

/// The largest request body read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// A log the witness accepts: an origin (or every origin under a prefix, `<prefix>/*`, for a
/// deployment whose tenants share a seal key) and the log's P-256 public key (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedLog {
    pub origin: String,
    pub public_key_der: Vec<u8>,
}

impl TrustedLog {
    fn matches(&self, origin: &str) -> bool {
        match self.origin.strip_suffix("/*") {
            Some(prefix) => origin
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/')),
            None => self.origin == origin,
        }
    }
}

/// An answer, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Answer { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// The witness: its key, the logs it trusts, and its state directory.
pub struct Witness {
    cosigner: Cosigner,
    logs: Vec<TrustedLog>,
    dir: PathBuf,
    /// Held for the process's life: one witness per directory.
    _lock: File,
    /// The check and the update of an origin's state happen under it.
    state: Mutex<BTreeMap<String, CheckpointBody>>,
}

impl Witness {
    /// Opens (or creates) the state directory and takes its lock; refuses a directory another
    /// witness holds.
    pub fn open(cosigner: Cosigner, logs: Vec<TrustedLog>, dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let lock_path = dir.join("witness.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!("{} is in use by another witness", dir.display()));
            }
            Err(fs::TryLockError::Error(e)) => return Err(format!("{}: {e}", lock_path.display())),
        }
        Ok(Witness { cosigner, logs, dir: dir.to_owned(), _lock: lock, state: Mutex::new(BTreeMap::new()) })
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    fn state_file(&self, origin: &str) -> PathBuf {
        self.dir.join(format!("{}.checkpoint", Hash::of(&[origin.as_bytes()]).to_hex()))
    }

    /// The checkpoint last cosigned for `origin`, from memory or its file.
    fn stored(
        &self,
        cache: &mut BTreeMap<String, CheckpointBody>,
        origin: &str,
    ) -> Result<Option<CheckpointBody>, String> {
        if let Some(body) = cache.get(origin) {
            return Ok(Some(body.clone()));
        }
        let path = self.state_file(origin);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let body = CheckpointBody::from_note_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                if body.origin != origin {
                    return Err(format!("{}: holds another origin", path.display()));
                }
                cache.insert(origin.to_owned(), body.clone());
                Ok(Some(body))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn persist(&self, body: &CheckpointBody) -> Result<(), String> {
        let path = self.state_file(&body.origin);
        let partial = path.with_extension("partial");
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = File::create(&partial).map_err(io)?;
        file.write_all(body.note_text().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&partial, &path).map_err(io)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// `POST add-checkpoint` with `body`, at `now` (POSIX seconds).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Answer {
        if body.len() > MAX_REQUEST_BYTES {
            return Answer::text(413, "the request is too large\n");
        }
        let Ok(body) = std::str::from_utf8(body) else { return Answer::text(400, "the request is not UTF-8\n") };
        let request = match Request::parse(body) {
            Ok(r) => r,
            Err(reason) => return Answer::text(400, format!("{reason}\n")),
        };
        let origin = request.note.text.split('\n').next().unwrap_or_default();
        let Some(log) = self.logs.iter().find(|l| l.matches(origin)) else {
            return Answer::text(404, "unknown origin\n");
        };
        // Signature lines of the log's key must verify, and at least one must be there.
        let key_id = ecdsa_key_id(&log.public_key_der);
        let own: Vec<_> = request.note.signatures.iter().filter(|s| s.name == origin && s.key_id == key_id).collect();
        let text = request.note.text.as_bytes();
        if own.is_empty() || !own.iter().all(|s| signing::verify(&log.public_key_der, text, &s.signature)) {
            return Answer::text(403, "the checkpoint is not signed by the log's key\n");
        }
        let new = match CheckpointBody::from_note_text(&request.note.text) {
            Ok(b) => b,
            Err(e) => return Answer::text(400, format!("{e}\n")),
        };
        if request.old > new.total {
            return Answer::text(400, "old size is larger than the checkpoint's\n");
        }
        let mut cache = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stored = match self.stored(&mut cache, origin) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the witness's state could not be read");
                return Answer::text(500, "the witness's state could not be read\n");
            }
        };
        let stored_size = stored.as_ref().map_or(0, |s| s.total);
        if request.old != stored_size {
            return Answer { status: 409, content_type: "text/x.tlog.size", body: format!("{stored_size}\n") };
        }
        let refusal = match &stored {
            // A new log: nothing to be consistent with.
            None if !request.proof.is_empty() => Some("a proof from size 0 must be empty"),
            None => None,
            // The same size again: only the very same checkpoint (a retry) is cosigned again.
            Some(old) if old.total == new.total => {
                (old.note_text() != new.note_text()).then_some("another checkpoint of the same size: a fork")
            }
            Some(old) => (!extends(old, &request.proof, &new))
                .then_some("the checkpoint does not extend the one this witness holds"),
        };
        if let Some(reason) = refusal {
            return Answer::text(422, format!("{reason}\n"));
        }
        if stored.as_ref() != Some(&new) {
            if let Err(e) = self.persist(&new) {
                tracing::error!(error = %e, "the witness's state could not be written");
                return Answer::text(500, "the witness's state could not be written\n");
            }
            cache.insert(origin.to_owned(), new);
        }
        drop(cache);
        let line = self.cosigner.cosign(&request.note.text, now);
        Answer::text(200, format!("{}\n", line.render()))
    }
}

impl Witness {
    /// `GET latest?origin=…` (this witness's own monitoring call, not C2SP's): the checkpoint it
    /// last cosigned for `origin`, as a note with a fresh cosignature. A verifier that fetched it
    /// knows a chain that ends earlier was cut (see `auditline fetch --witness`).
    pub fn latest(&self, origin: &str, now: u64) -> Answer {
        if !self.logs.iter().any(|l| l.matches(origin)) {
            return Answer::text(404, "unknown origin\n");
        }
        let mut cache = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.stored(&mut cache, origin) {
            Ok(Some(body)) => {
                let text = body.note_text();
                let line = self.cosigner.cosign(&text, now);
                Answer::text(200, Note { text, signatures: vec![line] }.render())
            }
            Ok(None) => Answer::text(404, "no checkpoint of this origin yet\n"),
            Err(e) => {
                tracing::error!(error = %e, "the witness's state could not be read");
                Answer::text(500, "the witness's state could not be read\n")
            }
        }
    }
}

/// An `add-checkpoint` request body.
struct Request {
    old: u64,
    proof: Vec<Hash>,
    note: Note,
}

impl Request {
    fn parse(body: &str) -> Result<Request, &'static str> {
        let (head, note) = body.split_once("\n\n").ok_or("no blank line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines.next().and_then(|l| l.strip_prefix("old ")).ok_or("the first line is not: old <size>")?;
        if old.is_empty() || (old.len() > 1 && old.starts_with('0')) || !old.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the old size is not a decimal number");
        }
        let old = old.parse().map_err(|_| "the old size is too large")?;
        let proof: Vec<Hash> = lines
            .map(|l| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .map(Hash)
                    .ok_or("a proof line is not a base64 hash")
            })
            .collect::<Result<_, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err("more than 63 proof lines");
        }
        let note = Note::parse(note).map_err(|_| "the checkpoint is not a signed note")?;
        Ok(Request { old, proof, note })
    }
}

/// The body of an `add-checkpoint` request.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&STANDARD.encode(h.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}
