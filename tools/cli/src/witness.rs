//! `auditline witness`: a C2SP `tlog-witness` for auditline logs, as a small HTTP service anyone can
//! run (a tenant, an auditor). It cosigns a checkpoint only if the log's key signed it and it
//! extends the one the witness cosigned before; see `auditline::witness` for the protocol.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditline::integrity::note::Cosigner;
use auditline::integrity::signing::{pem_der, public_key_pem};
use auditline::witness::{MAX_REQUEST_BYTES, TrustedLog, Witness};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;

use crate::bundle::BoxError;

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// The witness's name (its cosignatures' key name), a schema-less URL such as
    /// witness.example.com/acme-auditors.
    #[arg(long)]
    pub name: String,
    /// Its Ed25519 key (PKCS#8 PEM), made if the file does not exist.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Where it keeps the latest checkpoint of each log (one instance per directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// A log it witnesses: ORIGIN=PEM, the origin (`<deployment origin>/<tenant>`, or
    /// `<deployment origin>/*` for every tenant of a deployment) and the seal's public key.
    #[arg(long = "log", value_name = "ORIGIN=PEM", required = true)]
    pub logs: Vec<String>,
}

/// Loads the witness's key, or makes one (readable by its owner only).
pub fn load_or_create_key(name: &str, path: &Path) -> Result<Cosigner, BoxError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            let der =
                pem_der(&pem, "PRIVATE KEY").ok_or_else(|| format!("{}: not a PKCS#8 PEM key", path.display()))?;
            Ok(Cosigner::from_pkcs8(name, &der).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cosigner = Cosigner::generate(name)?;
            let pem = public_key_pem(cosigner.pkcs8()).replace("PUBLIC KEY", "PRIVATE KEY");
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(path)?, pem.as_bytes())?;
            Ok(cosigner)
        }
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// The logs from `ORIGIN=PEM` arguments.
pub fn trusted_logs(args: &[String]) -> Result<Vec<TrustedLog>, BoxError> {
    args.iter()
        .map(|arg| {
            let (origin, path) = arg.split_once('=').ok_or_else(|| format!("--log {arg}: give ORIGIN=PEM"))?;
            let pem = std::fs::read_to_string(path).map_err(|e| format!("--log {arg}: {path}: {e}"))?;
            let der =
                pem_der(&pem, "PUBLIC KEY").ok_or_else(|| format!("--log {arg}: {path} is not a PEM public key"))?;
            Ok(TrustedLog { origin: origin.to_owned(), public_key_der: der })
        })
        .collect()
}

/// A running witness.
pub struct Running {
    pub addr: SocketAddr,
    pub vkey: String,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        self.task.abort();
    }

    /// Serves until the task ends (it does not, unless the listener fails).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Opens the state and starts serving.
pub async fn start(args: &WitnessArgs) -> Result<Running, BoxError> {
    let cosigner = load_or_create_key(&args.name, &args.key_file)?;
    let vkey = cosigner.public_key().vkey();
    let witness = Arc::new(Witness::open(cosigner, trusted_logs(&args.logs)?, &args.state_dir)?);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/latest", get(latest))
        .route("/", get(describe))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("auditline witness: {e}");
        }
    });
    Ok(Running { addr, vkey, task })
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // The state is synced to disk inside: off the async threads.
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match answer {
        Ok(a) => (
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, a.content_type)],
            a.body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the witness failed\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Origin {
    origin: String,
}

/// `GET /latest?origin=…`: the checkpoint it last cosigned for a log, freshly cosigned.
async fn latest(
    State(witness): State<Arc<Witness>>,
    axum::extract::Query(q): axum::extract::Query<Origin>,
) -> Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let answer = tokio::task::spawn_blocking(move || witness.latest(&q.origin, now)).await;
    match answer {
        Ok(a) => (
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, a.content_type)],
            a.body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the witness failed\n").into_response(),
    }
}

/// `GET /`: the witness's verifier key, for whoever configures a verifier or a log.
async fn describe(State(witness): State<Arc<Witness>>) -> String {
    format!("{}\n", witness.cosigner().public_key().vkey())
}

/// `auditline witness`: starts, prints the verifier key, serves until stopped.
pub async fn run(args: &WitnessArgs, out: &mut dyn std::io::Write) -> Result<(), BoxError> {
    let running = start(args).await?;
    writeln!(out, "auditline witness {} listening on http://{}", args.name, running.addr)?;
    writeln!(out, "verifier key: {}", running.vkey)?;
    writeln!(out, "  give it to the seal:   --witness \"http://{} {}\"", running.addr, running.vkey)?;
    writeln!(out, "  and to verifiers:      auditline verify --witness-key {} …", running.vkey)?;
    out.flush()?;
    tokio::select! {
        () = running.wait() => Err("the witness stopped".into()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
