//! `auditline`, the command line for people: API keys, fetching a tenant's bundle, verifying
//! bundles and proofs offline, key fingerprints, a witness, backups of the local gateway, and reading
//! the archive. Each subcommand is a module whose `run` the binary and the tests call.

pub mod archive;
pub mod backup;
pub mod bundle;
pub mod client;
pub mod export;
pub mod fetch;
pub mod keys;
pub mod verify;
pub mod witness;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "auditline", version, about = "The auditline command line")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and revoke API keys (in the API keys table).
    Keys(keys::KeysArgs),
    /// Export entries (JSON lines, CSV or OCSF) to a file, page by page; --resume continues.
    Export(export::ExportArgs),
    /// Download your tenant's checkpoints, entries and published keys into a bundle directory.
    Fetch(fetch::FetchArgs),
    /// Verify a bundle, or one entry's proof, offline against public keys you trust.
    Verify(verify::VerifyArgs),
    /// Run a witness: cosign a log's checkpoints only if each extends the last one it saw.
    Witness(witness::WitnessArgs),
    /// Print the fingerprint of a seal public key (PEM), to compare with the operator's.
    Fingerprint(keys::FingerprintArgs),
    /// Copy the local gateway's database (SQLite) to a new file, while it runs.
    Backup(backup::BackupArgs),
    /// Read archive objects back, their sealed (erasable) fields opened with the archive's keys.
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Write the entries of archive objects as JSON lines, sealed fields opened where their keys remain.
    Open(archive::ArchiveArgs),
}
