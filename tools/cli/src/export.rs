//! `auditline export`: pages through `GET /audit/export` into one file, showing progress, and
//! resumes an interrupted export where it stopped — no entry twice, none missing.
//!
//! After each page is appended and flushed to disk, a state file beside the output records the
//! file's length and the next page's token (written to a temporary file and renamed, so it is never
//! half-written). `--resume` cuts the output back to the recorded length — a page appended after
//! the last record is dropped and fetched again — and continues from the recorded token.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::bundle::BoxError;
use crate::client::{Api, Connection};

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
}

/// What the state file records after each page.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    url: String,
    query: Vec<(String, String)>,
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
    let (mut file, mut token, mut bytes, mut entries) = if args.resume {
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
        (file, Some(state.next_token), state.bytes, state.entries)
    } else {
        if state_file.exists() {
            return Err(format!("{} exists: an export stopped there; add --resume", state_file.display()).into());
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&args.out)
            .map_err(|e| format!("{}: {e} (choose a new file, or --resume)", args.out.display()))?;
        (file, None, 0, 0)
    };
    use std::io::Seek;
    file.seek(std::io::SeekFrom::End(0))?;
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let (resumed_bytes, mut pages) = (bytes, 0);
    loop {
        let mut page_query = query.clone();
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
    let more = if state_file.exists() { "; more remain: add --resume to continue" } else { "" };
    writeln!(out, "exported {entries} entries ({bytes} bytes, {pages} pages) to {}{more}", args.out.display())?;
    Ok(Exported { entries, bytes, pages })
}
