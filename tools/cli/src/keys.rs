//! `auditline keys`: create, list and revoke API keys. A key is printed once, at creation; the
//! table holds only its hash.

use std::io::Write;

use auditline::auth::api_keys::{self, ApiKeyStore};
use auditline::domain::TenantId;
use chrono::{DateTime, Duration, Utc};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The API keys table.
    #[arg(long, env = "API_KEYS_TABLE", default_value = auditline::config::DEFAULT_API_KEYS_TABLE)]
    pub table: String,
    /// A DynamoDB endpoint to use instead of AWS's (a local DynamoDB API).
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    pub endpoint: Option<String>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it. It cannot be shown again.
    Create {
        #[arg(long)]
        tenant: String,
        /// The user the key acts as.
        #[arg(long)]
        user: String,
        /// A scope to grant (repeat for several), e.g. audit:read, audit:write, reports:*.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A label to recognise the key by.
        #[arg(long)]
        name: Option<String>,
        /// Days until the key stops working (1 to 3650).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EXPIRY_DAYS)))]
        expires_in_days: Option<u32>,
    },
    /// List a tenant's keys (ids and attributes, never the keys).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its id (as `list` shows it).
    Revoke { key_id: String },
}

/// The longest a key may be valid: ten years, as the longest retention.
pub const MAX_EXPIRY_DAYS: u32 = 3650;

fn timestamp(t: &DateTime<Utc>) -> String {
    auditline::domain::time::format_timestamp(*t)
}

/// Runs one command against `store`, writing what it has to say to `out`.
pub async fn run(
    command: KeysCommand,
    store: &dyn ApiKeyStore,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        KeysCommand::Create { tenant, user, scopes, name, expires_in_days } => {
            let tenant = TenantId::parse(&tenant)?;
            let expires_at = expires_in_days
                .map(|d| {
                    (1..=MAX_EXPIRY_DAYS)
                        .contains(&d)
                        .then(|| now.checked_add_signed(Duration::days(i64::from(d))))
                        .flatten()
                        .ok_or_else(|| format!("--expires-in-days must be from 1 to {MAX_EXPIRY_DAYS}"))
                })
                .transpose()?;
            let created = api_keys::generate(tenant, &user, scopes, name, expires_at, now)?;
            store.insert(&created.record).await?;
            writeln!(out, "key:    {}", created.key.expose())?;
            writeln!(out, "key_id: {}", created.record.key_id)?;
            writeln!(out, "Store the key now: it is not kept and cannot be shown again.")?;
        }
        KeysCommand::List { tenant } => {
            let tenant = TenantId::parse(&tenant)?;
            writeln!(out, "key_id\tuser_id\tscopes\tname\tcreated_at\texpires_at\tstatus")?;
            for r in store.list(&tenant).await? {
                let status = match (r.revoked, r.expires_at) {
                    (true, _) => "revoked",
                    (false, Some(e)) if e <= now => "expired",
                    _ => "active",
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{status}",
                    r.key_id,
                    r.user_id,
                    r.scopes.join(" "),
                    r.name.as_deref().unwrap_or("-"),
                    timestamp(&r.created_at),
                    r.expires_at.as_ref().map_or("-".to_owned(), timestamp),
                )?;
            }
        }
        KeysCommand::Revoke { key_id } => {
            if store.revoke(&key_id).await? {
                writeln!(out, "revoked {key_id}")?;
            } else {
                return Err(format!("no key with id {key_id}").into());
            }
        }
    }
    Ok(())
}

/// `auditline fingerprint`: a seal key's fingerprint, as checkpoints name it (`key_id`) and as its
/// note signatures do (the first 4 bytes), to compare with the value the operator publishes.
#[derive(Debug, clap::Args)]
pub struct FingerprintArgs {
    /// A seal public key (PEM).
    #[arg(value_name = "PEM")]
    pub public_key: std::path::PathBuf,
}

pub fn fingerprint(
    args: &FingerprintArgs,
    out: &mut dyn Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use auditline::integrity::signing::{key_id, pem_der};
    let path = &args.public_key;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let der = pem_der(&pem, "PUBLIC KEY").ok_or_else(|| format!("{}: not a PEM public key", path.display()))?;
    let id = key_id(&der);
    writeln!(out, "{id}")?;
    writeln!(out, "(key id {id}; note key id {}; compare it with the fingerprint the operator publishes)", &id[..8])?;
    Ok(())
}
