//! `auditline fetch`: downloads the caller's tenant — its whole checkpoint chain, its entries, the
//! leaves of periods retention has thinned, and the published keys — into a bundle directory that
//! `auditline verify` checks offline, with a manifest of whose it is, when it was fetched, and the
//! seal settings the service reported.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use auditline::domain::time::{format_timestamp, parse_date_param};
use auditline::integrity::checkpoint::Checkpoint;
use auditline::seal::verify::{MANIFEST_FORMAT, Manifest, PeriodLeaves, WitnessView};
use auditline::seal::{PublishedKey, SealSettings};
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
    /// A witness's URL to ask what it last cosigned for this tenant's log (repeat for several):
    /// `verify --witness-key` then fails a chain cut shorter than that.
    #[arg(long = "witness", value_name = "URL")]
    pub witnesses: Vec<String>,
    /// The tenant's log origin (`<deployment origin>/<tenant>`), for asking witnesses when the
    /// chain is empty; by default, the chain's.
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
}

/// What a fetch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub entries: usize,
    pub checkpoints: usize,
    pub keys: Vec<PathBuf>,
    /// Periods whose leaves were fetched (retention had thinned them).
    pub leaves: usize,
}

#[derive(Deserialize)]
struct CheckpointPage {
    tenant: String,
    checkpoints: Vec<Checkpoint>,
    next_token: Option<String>,
    seal: SealSettings,
}

/// A tenant's chain as the service reports it.
pub(crate) struct Chain {
    pub tenant: String,
    pub checkpoints: Vec<Checkpoint>,
    pub seal: SealSettings,
}

#[derive(Deserialize)]
struct EntryPage {
    entries: Vec<Value>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<PublishedKey>,
}

/// The tenant's whole checkpoint chain, oldest first.
pub(crate) async fn checkpoint_chain(api: &Api) -> Result<Chain, BoxError> {
    let mut checkpoints = Vec::new();
    let mut token = None;
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        query.extend(token.take().map(|t| ("next_token", t)));
        let page: CheckpointPage = serde_json::from_value(api.get("/audit/checkpoints", &query).await?)?;
        checkpoints.extend(page.checkpoints);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(Chain { tenant: page.tenant, checkpoints, seal: page.seal }),
        }
    }
}

/// The keys the service publishes.
pub(crate) async fn published_keys(api: &Api) -> Result<Vec<PublishedKey>, BoxError> {
    let keys: Keys = serde_json::from_value(api.get("/audit/keys", &[]).await?)?;
    Ok(keys.keys)
}

/// The leaves of the period ending at `end`; `None` when the service no longer keeps them.
async fn period_leaves(api: &Api, end: &str) -> Result<Option<PeriodLeaves>, BoxError> {
    match api.get_status("/audit/checkpoints/leaves", &[("end", end.to_owned())]).await? {
        (200, value) => Ok(Some(serde_json::from_value(value)?)),
        (404, _) => Ok(None),
        (status, _) => Err(format!("GET /audit/checkpoints/leaves: {status}").into()),
    }
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

/// The erasure records `entries` name (`integrity.erased_by`) that are not among them: records
/// made after the dates asked for. The ids of the records wanted, and of the entries present.
pub(crate) fn records_wanted<'a>(entries: impl Iterator<Item = &'a Value>) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut wanted, mut present) = (BTreeSet::new(), BTreeSet::new());
    for entry in entries {
        present.extend(entry["id"].as_str().map(str::to_owned));
        if let Some(by) = entry["integrity"]["erased_by"].as_object() {
            wanted.extend(by.values().filter_map(|r| r.as_str().map(str::to_owned)));
        }
    }
    wanted.retain(|id| !present.contains(id));
    (wanted, present)
}

/// Fetches erasure records by id, and the leaves of their sealed periods, so the verifier proves
/// each record without the rest of its period. A record no longer there is reported (the
/// verifier then names the field whose record is missing).
pub(crate) async fn erasure_records(
    api: &Api,
    chain: &[Checkpoint],
    (ids, present): &(BTreeSet<String>, BTreeSet<String>),
    out: &mut dyn Write,
) -> Result<(Vec<Value>, Vec<PeriodLeaves>), BoxError> {
    let (mut records, mut periods) = (Vec::new(), BTreeSet::new());
    // A record may have an erased field of its own (its maker's id): its record is wanted too.
    let mut queue: Vec<String> = ids.iter().cloned().collect();
    let mut asked: BTreeSet<String> = ids.union(present).cloned().collect();
    while let Some(id) = queue.pop() {
        match api.get_status(&format!("/audit/logs/{}", crate::client::encode(&id)), &[]).await? {
            (200, record) => {
                if let Some(by) = record["integrity"]["erased_by"].as_object() {
                    for next in by.values().filter_map(|r| r.as_str()) {
                        if asked.insert(next.to_owned()) {
                            queue.push(next.to_owned());
                        }
                    }
                }
                if let Some(stamped) = record["timestamp"].as_str() {
                    let i = chain.partition_point(|c| c.body.end.as_str() <= stamped);
                    if let Some(c) = chain.get(i).filter(|c| c.body.start.as_str() <= stamped) {
                        periods.insert(c.body.end.clone());
                    }
                }
                records.push(record);
            }
            (404, _) => writeln!(out, "erasure record {id} is not in the trail (past retention, or removed)")?,
            (status, _) => return Err(format!("GET /audit/logs/{id}: {status}").into()),
        }
    }
    let mut leaves = Vec::new();
    for end in &periods {
        leaves.extend(period_leaves(api, end).await?);
    }
    Ok((records, leaves))
}

/// Downloads the bundle. Checkpoints first, then entries: an entry sealed in between is then
/// merely "not sealed yet" in the bundle, never a period with missing entries.
pub async fn run(args: &FetchArgs, out: &mut dyn Write) -> Result<Fetched, BoxError> {
    let api = Api::new(&args.connection)?;
    let start = args.start_date.as_deref().map(|v| parse_date_param("start_date", v)).transpose()?;
    let end = args.end_date.as_deref().map(|v| parse_date_param("end_date", v)).transpose()?;
    let mut writer = bundle::Writer::create(&args.out)?;
    // Before anything is read: the verifier judges what should have been sealed by this time.
    let fetched_at = chrono::Utc::now();

    let Chain { tenant, checkpoints: chain, seal } = checkpoint_chain(&api).await?;
    for c in &chain {
        writer.checkpoint(c)?;
    }

    let mut filters = Vec::new();
    filters.extend(start.map(|s| ("start_date", widen(&chain, s, false))));
    filters.extend(end.map(|e| ("end_date", widen(&chain, e, true))));
    let mut entries = 0;
    // Entries per sealed period (by the period's end), to find the periods retention has thinned.
    let mut per_period: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    // The entries' erasure records and ids: a record made after the dates asked for is fetched on
    // its own. (Only those two fields are kept per entry.)
    let mut seen: Vec<Value> = Vec::new();
    let mut token = None;
    loop {
        let mut query = filters.clone();
        query.push(("limit", PAGE.to_string()));
        query.extend(token.take().map(|t| ("next_token", t)));
        let page: EntryPage = serde_json::from_value(api.get("/audit/logs", &query).await?)?;
        for entry in &page.entries {
            writer.entry(entry)?;
            seen.push(
                serde_json::json!({"id": entry["id"], "integrity": {"erased_by": entry["integrity"]["erased_by"]}}),
            );
            if let Some(stamped) = entry["timestamp"].as_str() {
                let i = chain.partition_point(|c| c.body.end.as_str() <= stamped);
                if let Some(c) = chain.get(i).filter(|c| c.body.start.as_str() <= stamped) {
                    *per_period.entry(c.body.end.as_str()).or_default() += 1;
                }
            }
        }
        entries += page.entries.len();
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let (records, leaves) = erasure_records(&api, &chain, &records_wanted(seen.iter()), out).await?;
    for record in &records {
        writer.entry(record)?;
    }
    for l in &leaves {
        writer.leaves(l)?;
    }
    entries += records.len();
    // A period with fewer entries than it sealed, inside the dates asked for: its leaves, so the
    // verifier can tell entries past retention from removed ones.
    let in_range = |c: &Checkpoint| {
        filters.iter().all(|(name, value)| match *name {
            "start_date" => c.body.end.as_str() > value.as_str(),
            _ => c.body.start.as_str() <= value.as_str(),
        })
    };
    // Newest first: leaves expire with their period, oldest first, so the walk stops at the first
    // period whose leaves are gone.
    let mut thinned = 0;
    for c in chain.iter().rev().filter(|c| in_range(c)) {
        if per_period.get(c.body.end.as_str()).copied().unwrap_or(0) >= c.body.size {
            continue;
        }
        match period_leaves(&api, &c.body.end).await? {
            Some(leaves) => {
                writer.leaves(&leaves)?;
                thinned += 1;
            }
            None => break,
        }
    }

    // What each witness last cosigned for this log: asked after the chain was read, so a witness
    // ahead of it means the chain was cut (or a seal ran in between: fetch again).
    let origin = args.origin.clone().or_else(|| chain.first().map(|c| c.body.origin.clone()));
    let mut views = Vec::new();
    if let Some(origin) = &origin {
        for witness in &args.witnesses {
            let url = format!("{}/latest?origin={}", witness.trim_end_matches('/'), crate::client::encode(origin));
            match crate::client::get_text(&url).await? {
                (200, note) => views.push(WitnessView { witness: witness.clone(), note }),
                (404, _) => writeln!(out, "witness {witness} has no checkpoint of {origin}")?,
                (status, text) => return Err(format!("witness {witness}: {status}: {}", text.trim()).into()),
            }
        }
    } else if !args.witnesses.is_empty() {
        return Err("the chain is empty: give --origin to ask the witnesses".into());
    }
    writer.witnessed(&views)?;

    let keys = published_keys(&api).await?;
    let mut written = Vec::new();
    for key in &keys {
        written.push(writer.public_key(&key.key_id, &key.public_key_pem)?);
    }
    writer.published_keys(&keys)?;
    writer.manifest(&Manifest { format: MANIFEST_FORMAT.to_owned(), tenant, fetched_at, seal })?;
    writer.finish()?;
    writeln!(out, "wrote {entries} entries and {} checkpoints to {}", chain.len(), args.out.display())?;
    if thinned > 0 {
        writeln!(out, "and the leaves of {thinned} period(s) part of whose entries are past retention")?;
    }
    if !filters.is_empty() {
        let flag = |name: &str| if name == "start_date" { "--from" } else { "--to" };
        let range: Vec<String> = filters.iter().map(|(name, value)| format!("{} {value}", flag(name))).collect();
        writeln!(out, "it holds the entries of those dates only: pass {} to auditline verify", range.join(" "))?;
    }
    for path in &written {
        writeln!(out, "published key: {} (trust it only if it matches a key you hold)", path.display())?;
    }
    Ok(Fetched { entries, checkpoints: chain.len(), keys: written, leaves: thinned })
}
