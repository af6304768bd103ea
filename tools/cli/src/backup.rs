//! `auditline backup`: a copy of the local gateway's SQLite file, taken while it runs.

use std::io::Write;
use std::path::PathBuf;

use auditline::store::sqlite::{self, DATABASE_FILE};
use clap::Args;

use crate::bundle::BoxError;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The gateway's data directory (its `--data-dir`).
    #[arg(long, env = "AUDITLINE_DATA_DIR", value_name = "DIR", default_value = ".auditline")]
    pub data_dir: PathBuf,
    /// The new file to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: &BackupArgs, out: &mut dyn Write) -> Result<(), BoxError> {
    let database = args.data_dir.join(DATABASE_FILE);
    let summary = sqlite::backup(&database, &args.out)?;
    writeln!(
        out,
        "backed up {} entries ({:.1} MB) from {} to {}",
        summary.entries,
        summary.bytes as f64 / 1e6,
        database.display(),
        args.out.display()
    )?;
    writeln!(
        out,
        "restore: into a new data directory, as DIR/{DATABASE_FILE} with the seal key (seal-key.pem, kept apart: \
         it is a secret, and not in the copy); then auditline-local --data-dir DIR"
    )?;
    Ok(())
}
