//! `auditline verify`: a bundle, or one entry's proof, checked offline against public keys the
//! auditor trusts. Nothing here touches the network.

use std::io::Write;
use std::path::{Path, PathBuf};

use auditline::integrity::Hash;
use auditline::integrity::signing::pem_der;
use auditline::seal::EntryProof;
use auditline::seal::verify::Verifier;
use clap::Args;
use serde::Deserialize;

use crate::bundle::{self, BoxError};

/// Failures listed after the first (the rest are counted).
const LISTED_FAILURES: usize = 20;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["bundle", "proof"]))]
pub struct VerifyArgs {
    /// A public key (PEM) checkpoints may be signed with; repeat for keys from before a rotation.
    #[arg(long = "public-key", required = true, value_name = "PEM")]
    pub public_keys: Vec<PathBuf>,
    /// The hash of the last checkpoint of an earlier verification: the chain must end there, so
    /// checkpoints removed from its end are found.
    #[arg(long, value_name = "HASH", conflicts_with = "proof")]
    pub head: Option<String>,
    /// Entries written before this time (RFC 3339) may be gone: the trail's retention had removed
    /// them when the bundle was fetched (e.g. fetch time minus `AUDIT_RETENTION_DAYS`). Without
    /// it, every missing entry is a failure.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub expired_before: Option<String>,
    /// The bundle holds entries from this time (RFC 3339) on: it was fetched or exported with a
    /// start date. Earlier periods are checked as links of the chain, not for their entries.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub from: Option<String>,
    /// The bundle holds entries up to this time (RFC 3339), included.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub to: Option<String>,
    /// One entry's proof, as `GET /audit/logs/{id}/proof` returns it.
    #[arg(long, value_name = "FILE")]
    pub proof: Option<PathBuf>,
    /// A bundle directory (entries.jsonl, checkpoints.jsonl) as `auditline fetch` writes it, or a
    /// JSON Lines export with its checkpoints beside it as `auditline export` writes them.
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
}

/// Runs a verification, printing its report to `out`. `Ok(true)` when everything verified,
/// `Ok(false)` when something did not (the report says what), `Err` when it could not be checked.
pub fn run(args: &VerifyArgs, out: &mut dyn Write) -> Result<bool, BoxError> {
    let mut verifier = Verifier::new(read_keys(&args.public_keys)?);
    if let Some(head) = &args.head {
        verifier = verifier.with_head(head.parse::<Hash>().map_err(|_| "--head: not a 64-digit hex hash")?);
    }
    if let Some(time) = &args.expired_before {
        let horizon = chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|_| "--expired-before: not an RFC 3339 time such as 2026-09-01T00:00:00Z")?;
        verifier = verifier.with_expired_before(horizon.to_utc());
    }
    let time = |flag: &str, value: &Option<String>| -> Result<_, BoxError> {
        value
            .as_deref()
            .map(|v| chrono::DateTime::parse_from_rfc3339(v).map(|t| t.to_utc()))
            .transpose()
            .map_err(|_| format!("{flag}: not an RFC 3339 time such as 2026-09-01T00:00:00Z").into())
    };
    verifier = verifier.with_range(time("--from", &args.from)?, time("--to", &args.to)?);
    match (&args.proof, &args.bundle) {
        (Some(proof), _) => verify_proof(&verifier, proof, out),
        (None, Some(dir)) => verify_bundle(&verifier, dir, out),
        (None, None) => Err("give a BUNDLE directory or --proof FILE".into()),
    }
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, BoxError> {
    paths
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            pem_der(&pem, "PUBLIC KEY").ok_or_else(|| format!("{}: not a PEM public key", path.display()).into())
        })
        .collect()
}

fn verify_bundle(verifier: &Verifier, dir: &Path, out: &mut dyn Write) -> Result<bool, BoxError> {
    let bundle = bundle::read(dir)?;
    let summary = verifier.verify(&bundle);
    writeln!(out, "{summary}")?;
    if let Some((end, hash)) = &summary.head {
        writeln!(out, "head: {hash} (the checkpoint ending {end}; pass it as --head next time)")?;
    }
    for (id, fields) in summary.erased.iter().take(LISTED_FAILURES) {
        writeln!(out, "erased: entry {id}: {} (the rest of the entry verifies)", fields.join(", "))?;
    }
    let Some((first, rest)) = summary.failures.split_first() else {
        return Ok(true);
    };
    writeln!(out, "FAILED: {first}")?;
    for failure in rest.iter().take(LISTED_FAILURES) {
        writeln!(out, "  also: {failure}")?;
    }
    if rest.len() > LISTED_FAILURES {
        writeln!(out, "  … and {} more", rest.len() - LISTED_FAILURES)?;
    }
    Ok(false)
}

/// The proof route's answer: a proof, or when there will be one.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProofFile {
    Sealed(Box<EntryProof>),
    NotSealed { sealed: bool, sealed_after: String },
}

fn verify_proof(verifier: &Verifier, path: &Path, out: &mut dyn Write) -> Result<bool, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proof = match serde_json::from_str::<ProofFile>(&text) {
        Ok(ProofFile::Sealed(proof)) => proof,
        Ok(ProofFile::NotSealed { sealed: false, sealed_after }) => {
            writeln!(out, "not sealed yet: no proof before {sealed_after}; fetch it again then")?;
            return Ok(false);
        }
        _ => {
            let reason = serde_json::from_str::<EntryProof>(&text).err().map_or_else(String::new, |e| e.to_string());
            return Err(format!("{}: not a proof ({reason})", path.display()).into());
        }
    };
    let checkpoint = &proof.checkpoint.body;
    match verifier.verify_proof(&proof) {
        Ok(erased) => {
            writeln!(
                out,
                "entry {} verified: leaf {} of {} in the checkpoint ending {}, signed by key {}",
                proof.entry.id, proof.leaf_index, proof.tree_size, checkpoint.end, checkpoint.key_id
            )?;
            if !erased.is_empty() {
                writeln!(out, "erased: {} (the rest of the entry verifies)", erased.join(", "))?;
            }
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "FAILED: entry {}: {e}", proof.entry.id)?;
            Ok(false)
        }
    }
}
