//! `auditline fetch`: downloads the caller's tenant — its whole checkpoint chain, its entries, and
//! the published keys — into a bundle directory that `auditline verify` checks offline.

use std::io::Write;
use std::path::PathBuf;

use auditline::domain::time::{format_timestamp, parse_date_param};
use auditline::integrity::checkpoint::Checkpoint;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::bundle::{self, BoxError};
use crate::client::{Api, Connection};

/// Items per page (the API's largest).
const PAGE: usize = 1000;

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The directory to write the bundle to (new, or empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only entries from this date (widened to the start of its sealed period).
    #[arg(long)]
    pub start_date: Option<String>,
    /// Only entries up to this date (widened to the end of its sealed period).
    #[arg(long)]
    pub end_date: Option<String>,
}

/// What a fetch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub entries: usize,
    pub checkpoints: usize,
    pub keys: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct CheckpointPage {
    checkpoints: Vec<Checkpoint>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct EntryPage {
    entries: Vec<Value>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
pub(crate) struct Key {
    pub key_id: String,
    pub public_key_pem: String,
}

/// The tenant's whole checkpoint chain, oldest first.
pub(crate) async fn checkpoint_chain(api: &Api) -> Result<Vec<Checkpoint>, BoxError> {
    let mut chain = Vec::new();
    let mut token = None;
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        query.extend(token.take().map(|t| ("next_token", t)));
        let page: CheckpointPage = serde_json::from_value(api.get("/audit/checkpoints", &query).await?)?;
        chain.extend(page.checkpoints);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(chain),
        }
    }
}

/// The keys the service publishes.
pub(crate) async fn published_keys(api: &Api) -> Result<Vec<Key>, BoxError> {
    let keys: Keys = serde_json::from_value(api.get("/audit/keys", &[]).await?)?;
    Ok(keys.keys)
}

/// `t` widened to the start (or end) of the sealed period holding it, if one does.
pub(crate) fn widen(chain: &[Checkpoint], t: DateTime<Utc>, to_end: bool) -> String {
    let stamped = format_timestamp(t);
    let covering = chain.iter().find(|c| c.body.start <= stamped && stamped < c.body.end);
    match covering {
        // end_date is inclusive: the last millisecond of the period.
        Some(c) if to_end => DateTime::parse_from_rfc3339(&c.body.end)
            .map(|e| format_timestamp(e.to_utc() - chrono::Duration::milliseconds(1)))
            .unwrap_or(stamped),
        Some(c) => c.body.start.clone(),
        None => stamped,
    }
}

/// Downloads the bundle. Checkpoints first, then entries: an entry sealed in between is then
/// merely "not sealed yet" in the bundle, never a period with missing entries.
pub async fn run(args: &FetchArgs, out: &mut dyn Write) -> Result<Fetched, BoxError> {
    let api = Api::new(&args.connection)?;
    let start = args.start_date.as_deref().map(|v| parse_date_param("start_date", v)).transpose()?;
    let end = args.end_date.as_deref().map(|v| parse_date_param("end_date", v)).transpose()?;
    let mut writer = bundle::Writer::create(&args.out)?;

    let chain = checkpoint_chain(&api).await?;
    for c in &chain {
        writer.checkpoint(c)?;
    }

    let mut filters = Vec::new();
    filters.extend(start.map(|s| ("start_date", widen(&chain, s, false))));
    filters.extend(end.map(|e| ("end_date", widen(&chain, e, true))));
    let mut entries = 0;
    let mut token = None;
    loop {
        let mut query = filters.clone();
        query.push(("limit", PAGE.to_string()));
        query.extend(token.take().map(|t| ("next_token", t)));
        let page: EntryPage = serde_json::from_value(api.get("/audit/logs", &query).await?)?;
        for entry in &page.entries {
            writer.entry(entry)?;
        }
        entries += page.entries.len();
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }

    let mut written = Vec::new();
    for key in published_keys(&api).await? {
        written.push(writer.public_key(&key.key_id, &key.public_key_pem)?);
    }
    writer.finish()?;
    writeln!(out, "wrote {entries} entries and {} checkpoints to {}", chain.len(), args.out.display())?;
    if !filters.is_empty() {
        let flag = |name: &str| if name == "start_date" { "--from" } else { "--to" };
        let range: Vec<String> = filters.iter().map(|(name, value)| format!("{} {value}", flag(name))).collect();
        writeln!(out, "it holds the entries of those dates only: pass {} to auditline verify", range.join(" "))?;
    }
    for path in &written {
        writeln!(out, "published key: {} (trust it only if it matches a key you hold)", path.display())?;
    }
    Ok(Fetched { entries, checkpoints: chain.len(), keys: written })
}
