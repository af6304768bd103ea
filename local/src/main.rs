//! `cargo run --release -p auditline-local`: the whole service on loopback. No AWS account, no Docker.

use std::net::IpAddr;
use std::time::Duration;

use auditline_local::{
    DEFAULT_DATA_DIR, DEV_TENANT, DEV_TOKEN_HOURS, DataChoice, SHUTDOWN_GRACE, Storage, options_from_env, start,
};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "auditline-local", about = "Run auditline's HTTP and WebSocket APIs locally")]
struct Args {
    /// Address to listen on (keep it loopback unless you mean it).
    #[arg(long, env = "AUDITLINE_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port for both APIs.
    #[arg(long, env = "AUDITLINE_PORT", default_value_t = 8080)]
    port: u16,
    /// How often the sealer runs: `10s`, `2m` or seconds (periods are AUDIT_SEAL_PERIOD_MINUTES,
    /// sealed AUDIT_SEAL_GRACE_SECONDS after they end).
    #[arg(long, env = "AUDITLINE_SEAL_EVERY", default_value = "60s", value_parser = parse_every)]
    seal_every: Duration,
    /// Write the archive (gzip'd JSON lines, tenant=/date=/hour= partitions) under this directory.
    #[arg(long, env = "AUDITLINE_ARCHIVE_DIR", value_name = "DIR")]
    archive_dir: Option<std::path::PathBuf>,
    /// Publish every new checkpoint under this directory (checkpoints/tenant=<t>/…), as the
    /// deployment does to its Object Lock bucket.
    #[arg(long, env = "AUDITLINE_PUBLISH_DIR", value_name = "DIR")]
    publish_dir: Option<std::path::PathBuf>,
    /// A witness to have each new head cosigned by: "URL VKEY" (as `auditline witness` prints
    /// it). Repeat for several. Also AUDIT_WITNESSES, comma-separated.
    #[arg(long = "witness", value_name = "URL VKEY")]
    witnesses: Vec<String>,
    /// Where the trail lives: a SQLite file (auditline.db), the seal key and the development key.
    /// Kept across restarts; one gateway per directory.
    #[arg(long, env = "AUDITLINE_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    /// Keep everything in memory instead (gone at exit; the data directory is not used): for
    /// tests and benchmarks.
    /// The variable takes 1/0, true/false, yes/no or on/off.
    #[arg(long, env = "AUDITLINE_MEMORY", value_parser = clap::builder::BoolishValueParser::new())]
    memory: bool,
}

fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix('s') {
        Some(n) => (n, 1),
        None => match text.strip_suffix('m') {
            Some(n) => (n, 60),
            None => (text, 1),
        },
    };
    let value: u64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration such as 10s or 2m"))?;
    // At most an hour: verifiers take a seal later than its schedule (at most an hour) as missing.
    (1..=3_600).contains(&(value * unit)).then(|| Duration::from_secs(value * unit)).ok_or("from 1 s to 1 hour".into())
}

#[tokio::main]
async fn main() {
    lambda_runtime::tracing::init_default_subscriber();
    // A file-size limit (ulimit -f) must fail the write that meets it — a 503, as a full disk
    // gives — not kill the gateway: SIGXFSZ is caught (and ignored), the write gets EFBIG.
    let _file_size_limit = signal(SignalKind::from_raw(libc::SIGXFSZ));
    // The stop signals are caught from the start, not once the banner is out: a Ctrl-C that comes
    // while the gateway starts (or just after its banner) still stops it cleanly, the file closed whole.
    let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("auditline-local: the stop signals cannot be caught: {e}");
            std::process::exit(1);
        }
    };
    let args = Args::parse();
    let data = if args.memory { DataChoice::Memory } else { DataChoice::Directory(args.data_dir) };
    let options = options_from_env(
        args.host,
        args.port,
        args.seal_every,
        args.archive_dir,
        args.publish_dir,
        &args.witnesses,
        data,
    );
    let running = match options {
        Ok(options) => start(options).await,
        Err(e) => Err(e),
    };
    let running = match running {
        Ok(r) => r,
        Err(e) => {
            eprintln!("auditline-local: {e}");
            std::process::exit(1);
        }
    };
    let http = running.http_url();
    let storage = match &running.storage {
        Storage::Memory { max_entries, max_bytes } => {
            format!("in memory (up to {max_entries} entries, {} MB; gone at exit)", max_bytes >> 20)
        }
        Storage::DynamoDb { endpoint } => format!("DynamoDB API at {endpoint}"),
        Storage::Sqlite { .. } => {
            let entries = running.entries_at_start.unwrap_or(0);
            format!(
                "{} ({entries} {}; kept across restarts — --memory keeps nothing)",
                running.database.as_ref().map_or_else(String::new, |p| p.display().to_string()),
                if entries == 1 { "entry" } else { "entries" }
            )
        }
    };
    let key = running.credentials.api_key.expose();
    println!("auditline local gateway");
    println!("  viewer     {http}/   (sign in with the api key below)");
    println!("  HTTP API   {http}/audit/logs   (contract: docs/openapi.json)");
    println!("  WebSocket  {}", running.websocket_url());
    println!("  storage    {storage}");
    match &running.credentials.token {
        Some(token) => {
            println!("  token      {}", token.expose());
            println!("             (tenant {DEV_TENANT}, every scope, valid {DEV_TOKEN_HOURS} h)");
        }
        None => println!("  token      none: a JWT key is configured, so the gateway mints no tokens of its own"),
    }
    let keys_url = format!("{http}/audit/keys");
    let seal = &running.seal_key;
    match &seal.public_key_file {
        Some(file) => println!(
            "  seal key   {} (public key {}; pin it in the viewer, or: auditline fingerprint {})",
            seal.key_id,
            file.display(),
            file.display()
        ),
        None => println!("  seal key   {} (this run only; public key at {keys_url})", seal.key_id),
    }
    println!("  log        {} (C2SP checkpoints: {http}/audit/checkpoints/latest)", seal.origin);
    if seal.witnesses.is_empty() {
        println!("  witnesses  none (add one: auditline witness …, then --witness \"URL VKEY\")");
    } else {
        println!("  witnesses  {} (each new head is cosigned)", seal.witnesses.join(", "));
    }
    if let Some(dir) = &seal.publish_dir {
        println!("  published  {} (every checkpoint, once)", dir.display());
    }
    println!("  api key    {key}");
    println!("             (tenant {DEV_TENANT}, audit:read audit:write, valid {DEV_TOKEN_HOURS} h)");
    println!();
    println!("Try:");
    println!("  curl -s -X POST {http}/audit/logs -H 'X-API-Key: {key}' -H 'content-type: application/json' \\");
    println!("       -d '{{\"action\":\"CREATE\",\"entity_type\":\"ENTITY\",\"entity_id\":\"entity-123\"}}'");
    println!("  curl -s {http}/audit/logs -H 'X-API-Key: {key}'");
    println!("Ctrl-C (or SIGTERM) stops.");

    // Ctrl-C, or SIGTERM (a service manager's stop): either way a clean stop, the file closed whole.
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    println!("stopping…");
    if tokio::time::timeout(SHUTDOWN_GRACE, running.shutdown()).await.is_err() {
        eprintln!("auditline-local: gave up waiting for open requests");
    }
}
