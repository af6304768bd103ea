//! `auditline fetch`: downloads the caller's tenant — its whole checkpoint chain, its entries, and
//! the published keys — into a bundle directory that `auditline verify` checks offline.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use auditline::domain::time::{format_timestamp, parse_date_param};
use auditline::integrity::checkpoint::Checkpoint;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Args;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use crate::bundle::{self, BoxError};

/// Items per page (the API's largest).
const PAGE: usize = 1000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a page may weigh: a thousand entries of the largest size the API accepts, and then some.
const MAX_PAGE_BYTES: usize = 512 << 20;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com
    #[arg(long, env = "AUDITLINE_URL")]
    pub url: String,
    /// A JWT with audit:read (better from the environment than the command line).
    #[arg(long, env = "AUDITLINE_TOKEN", hide_env_values = true, conflicts_with = "api_key")]
    pub token: Option<String>,
    /// An API key with audit:read.
    #[arg(long, env = "AUDITLINE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
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

struct Api {
    base: String,
    credential: (&'static str, String),
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Api {
    fn new(args: &FetchArgs) -> Result<Self, BoxError> {
        let credential = match (&args.token, &args.api_key) {
            (Some(token), _) => ("authorization", format!("Bearer {token}")),
            (None, Some(key)) => ("x-api-key", key.clone()),
            (None, None) => return Err("give --token or --api-key (or AUDITLINE_TOKEN, AUDITLINE_API_KEY)".into()),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let base = args.url.trim_end_matches('/').to_owned();
        base.parse::<http::Uri>().map_err(|e| format!("--url {base}: {e}"))?;
        Ok(Api { base, credential, client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// GETs `path?query` and decodes the JSON; an error answer is reported with the API's message.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, BoxError> {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, query.join("&"))
        };
        let request = http::Request::get(&url)
            .header(self.credential.0, &self.credential.1)
            .header("accept", "application/json")
            .body(Empty::new())?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("GET {path}: no answer in {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?
            .to_bytes();
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| format!("GET {path}: {status}, not JSON ({e})"))?;
        if !status.is_success() {
            let message = value["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("GET {path}: {status}: {message}").into());
        }
        Ok(value)
    }
}

/// Percent-encodes a query value (dates carry `:` and `+`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
struct Key {
    key_id: String,
    public_key_pem: String,
}

/// `t` widened to the start (or end) of the sealed period holding it, if one does.
fn widen(chain: &[Checkpoint], t: DateTime<Utc>, to_end: bool) -> String {
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
    let api = Api::new(args)?;
    let start = args.start_date.as_deref().map(|v| parse_date_param("start_date", v)).transpose()?;
    let end = args.end_date.as_deref().map(|v| parse_date_param("end_date", v)).transpose()?;
    let mut writer = bundle::Writer::create(&args.out)?;

    let mut chain = Vec::new();
    let mut token = None;
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        query.extend(token.take().map(|t| ("next_token", t)));
        let page: CheckpointPage = serde_json::from_value(api.get("/audit/checkpoints", &query).await?)?;
        chain.extend(page.checkpoints);
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    for c in &chain {
        writer.checkpoint(c)?;
    }

    let mut filters = Vec::new();
    filters.extend(start.map(|s| ("start_date", widen(&chain, s, false))));
    filters.extend(end.map(|e| ("end_date", widen(&chain, e, true))));
    let mut entries = 0;
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

    let keys: Keys = serde_json::from_value(api.get("/audit/keys", &[]).await?)?;
    let mut written = Vec::new();
    for key in &keys.keys {
        written.push(writer.public_key(&key.key_id, &key.public_key_pem)?);
    }
    writer.finish()?;
    writeln!(out, "wrote {entries} entries and {} checkpoints to {}", chain.len(), args.out.display())?;
    for path in &written {
        writeln!(out, "published key: {} (trust it only if it matches a key you hold)", path.display())?;
    }
    Ok(Fetched { entries, checkpoints: chain.len(), keys: written })
}
