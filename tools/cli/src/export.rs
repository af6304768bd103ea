//! `auditline export`: pages through `GET /audit/export` into one file, showing progress, and
//! resumes an interrupted export where it stopped — no entry twice, none missing.
//!
//! After each page is appended and flushed to disk, a state file beside the output records the
//! file's length and the next page's token (written to a temporary file and renamed, so it is never
//! half-written). `--resume` cuts the output back to the recorded length — a page appended after
//! the last record is dropped and fetched again — and continues from the recorded token.
//!
//! An export in JSON Lines of the whole tenant (no filter but dates) is verifiable offline: before
//! the first page, the checkpoint chain and the published keys are written beside the output
//! (`FILE.checkpoints.jsonl`, `FILE.public-keys/`) and the dates widened to whole sealed periods, as
//! `auditline fetch` does; `auditline verify --public-key … FILE` then checks it. Checkpoints come
//! first so an entry sealed during the export is merely "not sealed yet", never missing.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::bundle::{self, BoxError};
use crate::client::{Api, Connection};
use crate::fetch::{checkpoint_chain, published_keys, widen};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
    Ocsf,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// The file to write (refused if it exists, unless --resume).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Continue an export that stopped, from its state file (FILE.export-state).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many pages (the state file stays, for --resume): an export in parts.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pages: Option<u64>,
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub entity_type: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    #[arg(long, conflicts_with = "project_id")]
    pub entity_id: Option<String>,
    #[arg(long)]
    pub project_id: Option<String>,
    #[arg(long)]
    pub start_date: Option<String>,
    #[arg(long)]
    pub end_date: Option<String>,
}

impl ExportArgs {
    /// The route's parameters, in a fixed order (the state file compares them).
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("format", self.format.name().to_owned())];
        for (name, value) in [
            ("action", &self.action),
            ("entity_type", &self.entity_type),
            ("user_id", &self.user_id),
            ("entity_id", &self.entity_id),
            ("project_id", &self.project_id),
            ("start_date", &self.start_date),
            ("end_date", &self.end_date),
        ] {
            if let Some(v) = value {
                query.push((name, v.clone()));
            }
        }
        query
    }

    /// Whether the export can be checked against the checkpoints: the API's own entry shape, and
    /// every entry of its periods (a filter would leave gaps the verifier must call removals).
    fn verifiable(&self) -> bool {
        self.format == Format::Jsonl
            && [&self.action, &self.entity_type, &self.user_id, &self.entity_id, &self.project_id]
                .iter()
                .all(|f| f.is_none())
    }
}

/// What the state file records after each page.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    url: String,
    /// The options as given (a resume must repeat them).
    query: Vec<(String, String)>,
    /// The query as sent (dates widened to sealed periods for a verifiable export).
    sent: Vec<(String, String)>,
    /// Bytes of the output that hold whole pages.
    bytes: u64,
    entries: u64,
    next_token: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub entries: u64,
    pub bytes: u64,
    pub pages: u64,
    /// Checkpoints written beside the output (0 when the export is not verifiable).
    pub checkpoints: usize,
}

/// Writes the chain and the keys beside `out` and returns the query with its dates widened to
/// whole sealed periods, and the number of checkpoints.
async fn write_checkpoints(
    api: &Api,
    out: &Path,
    query: &[(&'static str, String)],
) -> Result<(Vec<(&'static str, String)>, usize), BoxError> {
    use auditline::domain::time::parse_date_param;
    let fetched_at = chrono::Utc::now();
    let crate::fetch::Chain { tenant, checkpoints: chain, seal } = checkpoint_chain(api).await?;
    let path = bundle::checkpoints_beside(out);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e} (choose a new file)", path.display()))?;
    for checkpoint in &chain {
        writeln!(file, "{}", serde_json::to_string(checkpoint)?)?;
    }
    file.sync_all()?;
    let keys = published_keys(api).await?;
    for key in &keys {
        bundle::write_public_key(&bundle::keys_beside(out), &key.key_id, &key.public_key_pem)?;
    }
    bundle::write_new_json(&bundle::beside(out, ".keys.json"), &keys)?;
    let manifest = auditline::seal::verify::Manifest {
        format: auditline::seal::verify::MANIFEST_FORMAT.to_owned(),
        tenant,
        fetched_at,
        seal,
    };
    bundle::write_new_json(&bundle::beside(out, ".bundle.json"), &manifest)?;
    let mut widened = Vec::new();
    for (name, value) in query {
        let value = match *name {
            "start_date" | "end_date" => widen(&chain, parse_date_param(name, value)?, *name == "end_date"),
            _ => value.clone(),
        };
        widened.push((*name, value));
    }
    Ok((widened, chain.len()))
}

/// A parameter name from a state file, as one of the route's own.
fn known_parameter(name: &str) -> Result<&'static str, BoxError> {
    ["format", "action", "entity_type", "user_id", "entity_id", "project_id", "start_date", "end_date"]
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| format!("the export state names an unknown parameter {name}").into())
}

/// Appends to the export the erasure records its entries name but it does not hold (made after
/// its dates), and writes the leaves of their sealed periods beside it (`FILE.leaves.jsonl`), as
/// `auditline fetch` does. Returns how many records, and bytes, were appended.
async fn append_erasure_records(
    api: &Api,
    path: &Path,
    file: &mut File,
    out: &mut dyn Write,
) -> Result<(u64, u64), BoxError> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let mut seen = Vec::new();
    for line in reader.lines() {
        let entry: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        seen.push(serde_json::json!({"id": entry["id"], "integrity": {"erased_by": entry["integrity"]["erased_by"]}}));
    }
    let wanted = crate::fetch::records_wanted(seen.iter());
    if wanted.0.is_empty() {
        return Ok((0, 0));
    }
    let chain: Vec<auditline::integrity::checkpoint::Checkpoint> =
        bundle::read_checkpoints(&bundle::checkpoints_beside(path))?;
    let (records, leaves) = crate::fetch::erasure_records(api, &chain, &wanted, out).await?;
    let mut appended = 0;
    for record in &records {
        let line = format!("{record}\n");
        file.write_all(line.as_bytes())?;
        appended += line.len() as u64;
    }
    file.sync_all()?;
    let mut beside = File::create(bundle::leaves_beside(path))?;
    for l in &leaves {
        writeln!(beside, "{}", serde_json::to_string(l)?)?;
    }
    beside.sync_all()?;
    Ok((records.len() as u64, appended))
}

fn state_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".export-state");
    PathBuf::from(name)
}

fn save(path: &Path, state: &State) -> Result<(), BoxError> {
    let temporary = path.with_extension("export-state.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&serde_json::to_vec(state)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

pub async fn run(args: &ExportArgs, out: &mut dyn Write) -> Result<Exported, BoxError> {
    let api = Api::new(&args.connection)?;
    let query = args.query();
    let owned: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let state_file = state_path(&args.out);
    let mut checkpoints = 0;
    let (mut file, mut token, mut bytes, mut entries, sent) = if args.resume {
        let text = std::fs::read(&state_file)
            .map_err(|e| format!("--resume: {}: {e} (nothing to resume)", state_file.display()))?;
        let state: State = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not an export state ({e})", state_file.display()))?;
        if state.url != args.connection.url || state.query != owned {
            return Err(format!("--resume: {} was started with other options; repeat them", args.out.display()).into());
        }
        let file =
            OpenOptions::new().write(true).open(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        // A page appended after the last state was saved is cut off, and fetched again.
        file.set_len(state.bytes)?;
        let sent =
            state.sent.into_iter().map(|(k, v)| Ok((known_parameter(&k)?, v))).collect::<Result<_, BoxError>>()?;
        (file, Some(state.next_token), state.bytes, state.entries, sent)
    } else {
        if state_file.exists() {
            return Err(format!("{} exists: an export stopped there; add --resume", state_file.display()).into());
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&args.out)
            .map_err(|e| format!("{}: {e} (choose a new file, or --resume)", args.out.display()))?;
        let sent = if args.verifiable() {
            let (sent, count) = write_checkpoints(&api, &args.out, &query).await?;
            checkpoints = count;
            sent
        } else {
            query.clone()
        };
        (file, None, 0, 0, sent)
    };
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0))?;
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let (resumed_bytes, mut pages) = (bytes, 0);
    loop {
        let mut page_query = sent.clone();
        page_query.extend(token.take().map(|t| ("next_token", t)));
        let answer = api.get_raw("/audit/export", &page_query).await?;
        let count: u64 = answer
            .headers
            .get("x-entry-count")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or("the export route answered without x-entry-count")?;
        file.write_all(&answer.body)?;
        file.sync_data()?;
        bytes += answer.body.len() as u64;
        entries += count;
        pages += 1;
        let next = answer.headers.get("x-next-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        match &next {
            Some(t) => save(
                &state_file,
                &State {
                    url: args.connection.url.clone(),
                    query: owned.clone(),
                    sent: sent.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                    bytes,
                    entries,
                    next_token: t.clone(),
                },
            )?,
            None => {
                let _ = std::fs::remove_file(&state_file);
            }
        }
        if progress {
            let seconds = started.elapsed().as_secs_f64().max(1e-3);
            let rate = (bytes - resumed_bytes) as f64 / seconds / 1e6;
            eprint!("\r{entries} entries, {:.1} MB, {rate:.1} MB/s   ", bytes as f64 / 1e6);
        }
        match next {
            Some(_) if args.pages == Some(pages) => break,
            Some(t) => token = Some(t),
            None => break,
        }
    }
    if progress {
        eprintln!();
    }
    // Done and verifiable: the erasure records its entries name, made after its dates, go with it.
    if args.verifiable() && !state_file.exists() {
        let (added, added_bytes) = append_erasure_records(&api, &args.out, &mut file, out).await?;
        entries += added;
        bytes += added_bytes;
    }
    let more = if state_file.exists() { "; more remain: add --resume to continue" } else { "" };
    writeln!(out, "exported {entries} entries ({bytes} bytes, {pages} pages) to {}{more}", args.out.display())?;
    if args.verifiable() {
        let range: String = sent
            .iter()
            .filter_map(|(name, value)| match *name {
                "start_date" => Some(format!(" --from {value}")),
                "end_date" => Some(format!(" --to {value}")),
                _ => None,
            })
            .collect();
        writeln!(
            out,
            "checkpoints in {} and published keys in {}; check it offline with\n  auditline verify --public-key <a key you trust>{range} {}",
            bundle::checkpoints_beside(&args.out).display(),
            bundle::keys_beside(&args.out).display(),
            args.out.display()
        )?;
    }
    Ok(Exported { entries, bytes, pages, checkpoints })
}
