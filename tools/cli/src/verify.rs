//! `auditline verify`: a bundle, or one entry's proof, checked offline against public keys the
//! auditor trusts. Nothing here touches the network.

use std::io::Write;
use std::path::{Path, PathBuf};

use auditline::domain::time::format_timestamp;
use auditline::integrity::Hash;
use auditline::integrity::note::CosignerKey;
use auditline::integrity::signing::pem_der;
use auditline::seal::EntryProof;
use auditline::seal::verify::{Unsealed, Verifier, judge_unsealed};
use clap::Args;
use serde::Deserialize;
use uuid::Uuid;

use crate::bundle::{self, BoxError};

/// Failures listed after the first (the rest are counted).
const LISTED_FAILURES: usize = 20;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["bundle", "proof"]))]
pub struct VerifyArgs {
    /// A public key (PEM) checkpoints may be signed with: one you hold (the deployment's output,
    /// its fingerprint compared with the operator's published value), not one from the bundle.
    #[arg(long = "public-key", required = true, value_name = "PEM")]
    pub public_keys: Vec<PathBuf>,
    /// A key retired at TIME (RFC 3339): it verifies no checkpoint of a period ending later.
    /// Repeat for each rotation.
    #[arg(long = "retired-key", value_name = "PEM=TIME")]
    pub retired_keys: Vec<String>,
    /// The head (link hash) of an earlier verification: the chain must contain it and extend
    /// from it, so no checkpoint up to it was removed or rewritten since.
    #[arg(long, value_name = "HASH", conflicts_with = "proof")]
    pub head: Option<String>,
    /// The tenant the bundle must belong to.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// The deployment's log origin (the operator publishes it with the key): checkpoints must name
    /// the log `<ORIGIN>/<tenant>`.
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Entries stamped before this time (RFC 3339) may be gone: the trail's retention had removed
    /// them when the bundle was fetched (fetch time minus `AUDIT_RETENTION_DAYS`). Only those: a
    /// period that straddles it is checked through its leaves. After the fetch time, it is refused.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub expired_before: Option<String>,
    /// The bundle holds entries from this time (RFC 3339) on: it was fetched or exported with a
    /// start date. Earlier periods are checked as links of the chain, not for their entries.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub from: Option<String>,
    /// The bundle holds entries up to this time (RFC 3339), included.
    #[arg(long, value_name = "TIME", conflicts_with = "proof")]
    pub to: Option<String>,
    /// A witness's verifier key (`<name>+<key id>+<key>`, as `auditline witness` prints it) whose
    /// cosignatures count; cosignatures of other keys are ignored. Repeat for several.
    #[arg(long = "witness-key", value_name = "VKEY", conflicts_with = "proof")]
    pub witness_keys: Vec<String>,
    /// How many of the witnesses given must have cosigned the head (default: 1 when any is given).
    #[arg(long, value_name = "N", conflicts_with = "proof")]
    pub witnesses_required: Option<usize>,
    /// One entry's proof, as `GET /audit/logs/{id}/proof` returns it.
    #[arg(long, value_name = "FILE")]
    pub proof: Option<PathBuf>,
    /// A bundle directory as `auditline fetch` writes it, or a JSON Lines export with its
    /// checkpoints beside it as `auditline export` writes them.
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
}

fn time(flag: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, BoxError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| format!("{flag}: not an RFC 3339 time such as 2026-09-01T00:00:00Z").into())
}

/// Runs a verification, printing its report to `out`. `Ok(true)` when everything verified,
/// `Ok(false)` when something did not (the report says what), `Err` when it could not be checked.
pub fn run(args: &VerifyArgs, out: &mut dyn Write) -> Result<bool, BoxError> {
    let mut verifier = Verifier::new(read_keys(&args.public_keys)?);
    for retired in &args.retired_keys {
        let (path, until) = retired.rsplit_once('=').ok_or("--retired-key: give PEM=TIME")?;
        let key = read_keys(&[PathBuf::from(path)])?.remove(0);
        verifier = verifier.with_retired_key(&key, time("--retired-key", until)?);
    }
    if let Some(head) = &args.head {
        verifier = verifier.with_head(head.parse::<Hash>().map_err(|_| "--head: not a 64-digit hex hash")?);
    }
    if let Some(tenant) = &args.tenant {
        verifier = verifier.with_tenant(tenant);
    }
    if let Some(origin) = &args.origin {
        verifier = verifier.with_origin(origin);
    }
    if let Some(t) = &args.expired_before {
        verifier = verifier.with_expired_before(time("--expired-before", t)?);
    }
    let from = args.from.as_deref().map(|v| time("--from", v)).transpose()?;
    let to = args.to.as_deref().map(|v| time("--to", v)).transpose()?;
    verifier = verifier.with_range(from, to);
    let witnesses = args
        .witness_keys
        .iter()
        .map(|k| CosignerKey::parse_vkey(k).map_err(|e| format!("--witness-key {k}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let required = args.witnesses_required.unwrap_or(usize::from(!witnesses.is_empty()));
    verifier = verifier.with_witnesses(witnesses, required);
    match (&args.proof, &args.bundle) {
        (Some(proof), _) => verify_proof(&verifier, proof, out),
        (None, Some(dir)) => verify_bundle(verifier, dir, out),
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

fn verify_bundle(mut verifier: Verifier, dir: &Path, out: &mut dyn Write) -> Result<bool, BoxError> {
    let bundle = bundle::read(dir)?;
    // The windows the service published can narrow a pinned key's, never trust a key.
    for key in bundle::read_published_keys(dir)? {
        if let Some(until) = key.valid_until {
            verifier = verifier.narrow_key_window(&key.key_id, until);
        }
    }
    verifier.check_settings(&bundle)?;
    if bundle.manifest.is_none() {
        writeln!(out, "note: no manifest (bundle.json): judged as fetched now, under the default seal settings")?;
    }
    let summary = verifier.verify(&bundle);
    writeln!(out, "{summary}")?;
    if let Some((end, hash)) = &summary.head {
        writeln!(out, "head: {hash} (the checkpoint ending {end}; keep it and pass it as --head next time)")?;
    }
    for (id, fields) in summary.erased.iter().take(LISTED_FAILURES) {
        let named: Vec<String> = fields.iter().map(|(field, record)| format!("{field} (record {record})")).collect();
        writeln!(out, "erased: entry {id}: {} (the rest of the entry verifies)", named.join(", "))?;
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
    NotSealed { sealed: bool, id: Uuid, overdue_after: Option<String> },
}

fn verify_proof(verifier: &Verifier, path: &Path, out: &mut dyn Write) -> Result<bool, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proof = match serde_json::from_str::<ProofFile>(&text) {
        Ok(ProofFile::Sealed(proof)) => proof,
        Ok(ProofFile::NotSealed { sealed: false, id, overdue_after }) => {
            // Judged from the entry's own time, not only from what the service says.
            let stamped = auditline::domain::time::uuid_v7_time(&id).ok_or("the proof names no UUIDv7 id")?;
            let overdue = overdue_after.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            return match judge_unsealed(stamped, overdue.map(|t| t.to_utc()), chrono::Utc::now()) {
                Unsealed::Pending { until } => {
                    writeln!(
                        out,
                        "entry {id}: not sealed yet; fetch its proof again before {}",
                        format_timestamp(until)
                    )?;
                    Ok(false)
                }
                Unsealed::Overdue { due } => {
                    writeln!(
                        out,
                        "FAILED: entry {id} should have been sealed by {}, but the service has no checkpoint for it (checkpoints were removed)",
                        format_timestamp(due)
                    )?;
                    Ok(false)
                }
            };
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
                "entry {} of tenant {} verified: leaf {} of {} in the checkpoint ending {}, signed by key {}",
                proof.entry.id, checkpoint.tenant, proof.leaf_index, proof.tree_size, checkpoint.end, checkpoint.key_id
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
