//! How the gateway seals: its key (kept in a file between runs), and the sealer on a timer — the
//! same code as the scheduled `seal` function.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditline::integrity::signing::{LocalSigner, Signer, public_key_pem};
use auditline::seal::Sealer;
use tokio::task::JoinHandle;

use crate::BoxError;

/// How the gateway seals: how often it runs the sealer, and with which key.
#[derive(Debug, Clone)]
pub struct SealOptions {
    pub every: Duration,
    pub key: SealKey,
    /// Every new checkpoint is also written under this directory (as to the S3 bucket on AWS).
    pub publish_dir: Option<PathBuf>,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions { every: DEFAULT_SEAL_EVERY, key: SealKey::Generate, publish_dir: None }
    }
}

/// How often the sealer runs unless told otherwise.
pub const DEFAULT_SEAL_EVERY: Duration = Duration::from_secs(60);

/// The P-256 key checkpoints are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealKey {
    /// A new key for this run only.
    Generate,
    /// A PKCS#8 PEM file, made (with the public key beside it, `.pub.pem`) if it does not exist.
    File(PathBuf),
}

/// Where to find the key checkpoints are signed with.
#[derive(Debug, Clone)]
pub struct SealKeyInfo {
    pub key_id: String,
    /// The public key as PEM, when the key lives in a file.
    pub public_key_file: Option<PathBuf>,
    /// The log origin of the development tenant's chain.
    pub origin: String,
    /// The witnesses each new head goes to.
    pub witnesses: Vec<String>,
    /// Where checkpoints are published, if anywhere.
    pub publish_dir: Option<PathBuf>,
}

/// The signer for `key`, and the public key's file.
pub(crate) fn seal_key(key: &SealKey) -> Result<(Arc<LocalSigner>, Option<PathBuf>), BoxError> {
    let path = match key {
        SealKey::Generate => return Ok((Arc::new(LocalSigner::generate()?), None)),
        SealKey::File(path) => path,
    };
    let public = path.with_extension("pub.pem");
    let signer = match std::fs::read_to_string(path) {
        Ok(pem) => LocalSigner::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = LocalSigner::generate()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &signer.private_key_pem())?;
            signer
        }
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    std::fs::write(&public, public_key_pem(signer.public_key_der()))?;
    Ok((Arc::new(signer), Some(public)))
}

/// Writes a private key readable by its owner only.
pub(crate) fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(pem.as_bytes())
}

/// Runs `sealer` every `every`, from now on; a failed run is logged and the next tick tries again.
pub(crate) fn spawn(sealer: Sealer, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            match sealer.run(chrono::Utc::now()).await {
                Ok(report) if report.refused > 0 => {
                    tracing::error!(?report, "sealing refused a tampered chain; see the alarm above");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sealing failed; the next tick tries again"),
            }
        }
    })
}
