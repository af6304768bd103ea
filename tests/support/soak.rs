//! The soak: the local gateway binary as its own process, driven over real HTTP and WebSocket on
//! loopback by concurrent writers (singles and batches, each with an Idempotency-Key, retried with
//! it after a timeout or an error), readers paging through lists, and live clients across three
//! tenants with mixed scopes and filters — some leaving and coming back, one never reading. The
//! harness keeps its own ground truth and, at the end, accounts for every write and every frame.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{SECRET, claims, hs256};
use crate::client::{HttpClient, try_websocket, websocket};

pub const TENANTS: [&str; 3] = ["soak-a", "soak-b", "soak-c"];
/// The tenant of the client that connects and never reads (with `audit:read`: it is sent everything).
const SLOW_TENANT: usize = 0;
const TYPES: [&str; 7] = ["PROJECT", "ENTITY", "RELATIONSHIP", "FILE", "REPORT", "TEMPLATE", "SCHEDULE"];
const ACTIONS: [&str; 6] = ["CREATE", "UPDATE", "DELETE", "LINK", "UNLINK", "VIEW"];

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// What the run is called in its report ("in memory", "DynamoDB API, faults on").
    pub label: String,
    pub duration: Duration,
    pub writers: usize,
    pub readers: usize,
    pub clients: usize,
    /// Where the gateway keeps the trail.
    pub store: SoakStore,
    /// Writes per second per writer, at most (0: as fast as answers come).
    pub rate_per_writer: u32,
    /// When to kill the gateway (SIGKILL) and start it again on the same data (not in memory).
    pub kill_at: Option<Duration>,
    /// Entries in every fifth write (the others write one).
    pub batch_size: usize,
    /// Posts to live clients the gateway fails on purpose (429 and 500), per thousand.
    pub push_faults_per_mille: u64,
}

impl SoakConfig {
    /// How late a frame may arrive after its write was answered and still count for a session
    /// that closed meanwhile (the stream is polled, and retried through faults, on DynamoDB).
    /// How long before a session closed an entry must have been acknowledged to count as owed to
    /// it: a frame still in flight when the client hangs up is not a frame lost. In memory, 3 s: on
    /// two cores shared with the rest of the suite, POST → frame p99 reached 1.2 s with 1 % of
    /// posts failing, past a 1 s margin.
    fn delivery_margin(&self) -> Duration {
        if self.store.is_dynamodb() { Duration::from_secs(5) } else { Duration::from_secs(3) }
    }
}

/// Where the soak's gateway keeps the trail.
#[derive(Debug, Clone)]
pub enum SoakStore {
    Memory,
    /// A SQLite file in a new data directory (kept across a kill), sealed every minute as it goes;
    /// at the end, each tenant's chain is fetched and verified with `auditline`.
    Sqlite,
    /// This DynamoDB API (e.g. a fault proxy), on new tables.
    DynamoDb(String),
}

impl SoakStore {
    fn is_dynamodb(&self) -> bool {
        matches!(self, SoakStore::DynamoDb(_))
    }
}

/// The gateway binary, running.
pub struct Gateway {
    child: Child,
    pub url: String,
    port: u16,
    env: Vec<(String, String)>,
    /// The data directory, on SQLite.
    data_dir: Option<std::path::PathBuf>,
    /// The highest peak memory of the processes killed so far, in KiB.
    earlier_peak_kib: u64,
}

impl Gateway {
    pub fn start(store: &SoakStore, push_faults_per_mille: u64) -> Gateway {
        let mut env: Vec<(String, String)> = vec![
            ("AUDITLINE_PUSH_FAULTS_PER_MILLE".into(), push_faults_per_mille.to_string()),
            ("JWT_SECRET".into(), SECRET.into()),
            ("RUST_LOG".into(), "warn".into()),
            ("AUDITLINE_MAX_SESSIONS".into(), "5000".into()),
        ];
        let mut data_dir = None;
        match store {
            SoakStore::Memory => env.push(("AUDITLINE_MEMORY".into(), "1".into())),
            SoakStore::Sqlite => {
                // The seal key beside the data; the sealer at work alongside the ingest.
                let dir = crate::fresh_dir("soak-data");
                env.extend([
                    ("AUDITLINE_DATA_DIR".into(), dir.display().to_string()),
                    ("AUDITLINE_SEAL_EVERY".into(), "1s".into()),
                    ("AUDIT_SEAL_PERIOD_MINUTES".into(), "1".into()),
                    ("AUDIT_SEAL_GRACE_SECONDS".into(), "1".into()),
                ]);
                data_dir = Some(dir);
            }
            SoakStore::DynamoDb(endpoint) => env.push(("DYNAMODB_ENDPOINT".into(), endpoint.into())),
        }
        if !matches!(store, SoakStore::Sqlite) {
            let key = std::env::temp_dir().join(crate::unique_name("soak-seal"));
            env.push(("AUDITLINE_SEAL_KEY_FILE".into(), key.display().to_string()));
            env.push(("AUDITLINE_SEAL_EVERY".into(), "3600s".into()));
        }
        if let SoakStore::DynamoDb(_) = store {
            for (variable, prefix) in [
                ("AUDIT_ENTRIES_TABLE", "soak-entries"),
                ("AUDIT_COUNTERS_TABLE", "soak-counters"),
                ("API_KEYS_TABLE", "soak-keys"),
                ("IDEMPOTENCY_TABLE", "soak-idem"),
                ("CONNECTIONS_TABLE", "soak-conns"),
                ("CHECKPOINTS_TABLE", "soak-checkpoints"),
                ("PROOFS_TABLE", "soak-proofs"),
            ] {
                env.push((variable.into(), crate::unique_name(prefix)));
            }
        }
        let (child, url, port) = Self::spawn(0, &env);
        Gateway { child, url, port, env, data_dir, earlier_peak_kib: 0 }
    }

    fn spawn(port: u16, env: &[(String, String)]) -> (Child, String, u16) {
        use std::io::{BufRead, BufReader};
        let mut command = Command::new(crate::binary("auditline-local"));
        command
            .args(["--port", &port.to_string()])
            .env_remove("DYNAMODB_ENDPOINT")
            .env_remove("AUDITLINE_SEAL_KEY_FILE")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped());
        let log = std::env::temp_dir().join(crate::unique_name("soak-gateway.log"));
        command.stderr(std::fs::File::create(&log).expect("a log file"));
        let mut child = command.spawn().expect("the gateway starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "the gateway stopped before it printed its URL: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            };
            if let Some(rest) = line.trim().strip_prefix("HTTP API") {
                let url = rest.split_whitespace().next().unwrap();
                break url.trim_end_matches("/audit/logs").to_owned();
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL");
        (child, url, port)
    }

    /// SIGKILL, then the same gateway again on the same port and tables.
    pub fn kill_and_restart(&mut self) {
        self.earlier_peak_kib = self.earlier_peak_kib.max(self.peak_rss_kib());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, url, _) = Self::spawn(self.port, &self.env);
        self.child = child;
        assert_eq!(url, self.url, "restarted on the same address");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in KiB, of this process and those killed before.
    pub fn peak_rss_kib(&self) -> u64 {
        let now = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        now.max(self.earlier_peak_kib)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token(tenant: &str, sub: &str, scope: &str) -> String {
    let mut c = claims(sub, scope);
    c["tenant_id"] = json!(tenant);
    c["exp"] = json!(crate::auth::now() + 4 * 3600);
    hs256(&c)
}

/// One entry the harness wrote.
#[derive(Debug, Clone)]
struct Written {
    tenant: usize,
    entity_type: &'static str,
    project: String,
    entity_id: String,
    sent: Instant,
}

#[derive(Default)]
struct Truth {
    /// Acknowledged entries by id, with when their request was sent and answered.
    acked: HashMap<u128, (Written, Instant)>,
    /// Entity ids of writes that never got a success, even retried with their key.
    failed: Vec<(usize, String)>,
    /// Why each failed write failed: the item's answer, or that none came.
    failed_why: Vec<String>,
    post_latencies: Vec<Duration>,
    /// Answers that were neither success nor a retryable failure: each is a bug.
    refused: Vec<String>,
    retries: usize,
    read_errors: usize,
    /// 503 answers to writes, and how many of them said when to retry.
    unavailable: usize,
    unavailable_with_retry_after: usize,
}

/// What a live client is allowed, and asked, to see.
#[derive(Debug, Clone, Copy)]
enum View {
    All,
    Type(&'static str),
    Project,
}

impl View {
    /// Client `c`'s view, scope and connect filter. Clients that must catch up over HTTP after a
    /// restart need `audit:read`: theirs narrow by the connect filter instead of the scope.
    fn of(c: usize, catching_up: bool) -> (View, &'static str, &'static str) {
        match (c % 4, catching_up) {
            (0, _) => (View::All, "audit:read", ""),
            (1, false) => (View::Type("FILE"), "files:read", ""),
            (1, true) => (View::Type("FILE"), "audit:read", "?entity_type=FILE"),
            (2, false) => (View::Type("REPORT"), "reports:*", ""),
            (2, true) => (View::Type("REPORT"), "audit:read", "?entity_type=REPORT"),
            _ => (View::Project, "audit:read", "?project_id=p0"),
        }
    }

    /// The list route and filter that give this view's entries over HTTP.
    fn listing(self) -> &'static str {
        match self {
            View::All => "/audit/logs?",
            View::Type("FILE") => "/audit/logs?entity_type=FILE&",
            View::Type(_) => "/audit/logs?entity_type=REPORT&",
            View::Project => "/audit/logs/project/p0?",
        }
    }

    fn wants(self, entity_type: &str, project: &str) -> bool {
        match self {
            View::All => true,
            View::Type(t) => entity_type == t,
            View::Project => project == "p0",
        }
    }
}

struct Session {
    tenant: usize,
    view: View,
    opened: Instant,
    closed: Instant,
    /// Ids of the entries that arrived as frames (as u128: a 1,000-client run sees millions).
    seen: HashSet<u128>,
    delivered: usize,
    duplicate: usize,
    forbidden: usize,
    /// When a sample of the frames (one id in eight) arrived, for POST → frame latency.
    arrivals: Vec<(u128, Instant)>,
    /// Entries fetched over HTTP after reconnecting (the gateway was restarted meanwhile).
    caught_up: HashSet<u128>,
    reconnects: usize,
}

fn id_of(text: &str) -> Option<u128> {
    uuid::Uuid::parse_str(text).ok().map(|u| u.as_u128())
}

impl Session {
    /// Accounts for one frame as it arrives (frames are not kept).
    fn frame(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else { return };
        if frame["type"] != "audit_entry" {
            return;
        }
        let e = &frame["entry"];
        let Some(id) = e["id"].as_str().and_then(id_of) else { return };
        self.delivered += 1;
        let tenant_ok = e["tenant_id"].as_str() == Some(TENANTS[self.tenant]);
        let view_ok = self.view.wants(e["entity_type"].as_str().unwrap_or(""), e["project_id"].as_str().unwrap_or(""));
        if !tenant_ok || !view_ok {
            self.forbidden += 1;
        }
        if !self.seen.insert(id) {
            self.duplicate += 1;
        }
        if id % 8 == 0 {
            self.arrivals.push((id, Instant::now()));
        }
    }
}

/// The accounting at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct SoakReport {
    pub mode: String,
    pub seconds: f64,
    pub acked: usize,
    pub stored: usize,
    pub lost: usize,
    pub doubled: usize,
    pub failed_writes: usize,
    pub failed_present: usize,
    pub refused: Vec<String>,
    /// Why each failed write failed (the item's answer), for the assertion's message.
    pub failed_why: Vec<String>,
    pub retries: usize,
    pub stats_mismatch: usize,
    pub frames_expected: usize,
    pub frames_delivered: usize,
    pub frames_missing: usize,
    pub frames_duplicate: usize,
    pub frames_forbidden: usize,
    pub sessions: usize,
    pub post_p50_ms: f64,
    pub post_p99_ms: f64,
    pub frame_p50_ms: f64,
    pub frame_p99_ms: f64,
    /// POST → frame p99 for the clients of the slow client's tenant, and for those of the others:
    /// the slow client must not slow the clients beside it.
    pub slow_tenant_frame_p99_ms: f64,
    pub other_tenants_frame_p99_ms: f64,
    pub peak_rss_mib: f64,
    pub read_errors: usize,
    /// What the fault proxy did, when there was one.
    pub faults: String,
    /// Expected entries a client got over HTTP after reconnecting rather than as a frame.
    pub caught_up: usize,
    pub reconnects: usize,
    /// Live-feed posts failed on purpose, per thousand.
    pub push_faults_per_mille: u64,
    /// Writes answered 503 (then retried with their key), and of those with `Retry-After`.
    pub unavailable: usize,
    pub unavailable_with_retry_after: usize,
    /// Tenants whose chain `auditline verify` accepted at the end (SQLite runs, which seal as
    /// they go), and what it said when it did not.
    pub chains_verified: Option<usize>,
    pub chains: String,
    pub chain_failures: Vec<String>,
}

impl SoakReport {
    /// The report's figures as (name, value) rows.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("writes acknowledged", self.acked.to_string()),
            ("stored (listed)", self.stored.to_string()),
            ("acknowledged but lost", self.lost.to_string()),
            ("stored twice", self.doubled.to_string()),
            (
                "writes failed after retries (of which stored once)",
                format!("{} ({})", self.failed_writes, self.failed_present),
            ),
            ("retries with the same key", self.retries.to_string()),
            (
                "writes answered 503 (with Retry-After)",
                format!("{} ({})", self.unavailable, self.unavailable_with_retry_after),
            ),
            ("stats ≠ listing (tenants)", self.stats_mismatch.to_string()),
            ("live sessions (reconnections after a drop)", format!("{} ({})", self.sessions, self.reconnects)),
            ("frames expected / delivered", format!("{} / {}", self.frames_expected, self.frames_delivered)),
            (
                "frames missing / duplicate / forbidden",
                format!("{} / {} / {}", self.frames_missing, self.frames_duplicate, self.frames_forbidden),
            ),
            ("expected entries caught up over HTTP after a drop", self.caught_up.to_string()),
            ("POST latency p50 / p99", format!("{:.1} ms / {:.1} ms", self.post_p50_ms, self.post_p99_ms)),
            ("POST → frame p50 / p99", format!("{:.1} ms / {:.1} ms", self.frame_p50_ms, self.frame_p99_ms)),
            (
                "POST → frame p99, the slow client's tenant / the others",
                format!("{:.1} ms / {:.1} ms", self.slow_tenant_frame_p99_ms, self.other_tenants_frame_p99_ms),
            ),
            ("gateway peak RSS", format!("{:.1} MiB", self.peak_rss_mib)),
            ("reader errors (5xx under faults)", self.read_errors.to_string()),
            (
                "live-feed posts failed on purpose (429/500)",
                if self.push_faults_per_mille == 0 {
                    "—".into()
                } else {
                    format!("{:.1} %", self.push_faults_per_mille as f64 / 10.0)
                },
            ),
            (
                "chains verified by `auditline verify`",
                if self.chains.is_empty() { "—".into() } else { self.chains.clone() },
            ),
            (
                "DynamoDB requests / faults injected",
                if self.faults.is_empty() { "—".into() } else { self.faults.clone() },
            ),
        ]
    }
}

/// Reports side by side, one column each.
pub fn table(reports: &[SoakReport]) -> String {
    let mut out = String::from("| |");
    for r in reports {
        out.push_str(&format!(" {} ({:.0} s) |", r.mode, r.seconds));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(reports.len()));
    out.push('\n');
    let rows: Vec<Vec<(&str, String)>> = reports.iter().map(SoakReport::rows).collect();
    for (i, (name, _)) in rows[0].iter().enumerate() {
        out.push_str(&format!("| {name} |"));
        for r in &rows {
            out.push_str(&format!(" {} |", r[i].1));
        }
        out.push('\n');
    }
    out
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table(std::slice::from_ref(self)))
    }
}

fn percentile(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort();
    let i = ((values.len() as f64 * q) as usize).min(values.len() - 1);
    values[i].as_secs_f64() * 1000.0
}

/// A request that may fail at the transport: `None` then.
async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    send_full(client, method, url, headers, body).await.map(|reply| (reply.status, reply.body))
}

async fn send_full(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Option<crate::client::HttpReply> {
    match tokio::time::timeout(Duration::from_secs(10), client.try_request(method, url, headers, body)).await {
        Ok(Ok(reply)) => Some(reply),
        _ => None,
    }
}

/// Sends one write under a fresh Idempotency-Key, retried with that key across timeouts, 429/5xx,
/// a request still in progress and a partial result that failed retryably; the last answer (a
/// 201/207 body, or a 409 `period_sealed` error), or `None` when it never came.
async fn write_with_key(
    client: &HttpClient,
    url: &str,
    auth: &str,
    body: &Value,
    truth: &Arc<Mutex<Truth>>,
) -> Option<Value> {
    let key = uuid::Uuid::now_v7().to_string();
    let headers = [("authorization", auth), ("idempotency-key", key.as_str())];
    let mut outcome = None;
    // Long enough to outlast a restart, and a claim left by a request the kill cut off (taken
    // over once stale).
    let give_up = Instant::now() + Duration::from_secs(90);
    for attempt in 0u32.. {
        if attempt > 0 {
            if Instant::now() > give_up {
                break;
            }
            truth.lock().unwrap().retries += 1;
            tokio::time::sleep(Duration::from_millis((50u64 << attempt.min(6)).min(2_000))).await;
        }
        let sent = Instant::now();
        let reply = send_full(client, "POST", &format!("{url}/audit/logs"), &headers, Some(body)).await;
        if let Some(r) = reply.as_ref().filter(|r| r.status == 503) {
            let mut t = truth.lock().unwrap();
            t.unavailable += 1;
            t.unavailable_with_retry_after += usize::from(r.headers.contains_key("retry-after"));
        }
        match reply.map(|r| (r.status, r.body)) {
            Some((201 | 207, reply)) => {
                truth.lock().unwrap().post_latencies.push(sent.elapsed());
                // An item that failed retryably: the key was released, so send it all again.
                let partial = reply["results"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|i| matches!(i["status"].as_u64(), Some(429 | 500..=599))));
                outcome = Some(reply);
                if !partial {
                    break;
                }
            }
            // A timeout or a failure (or the same key still running after our timeout).
            Some((429 | 500..=599, _)) | None => continue,
            Some((409, reply)) if reply["error"]["code"] == "idempotency_in_progress" => continue,
            Some((409, reply)) if reply["error"]["code"] == "period_sealed" => return Some(reply),
            Some((status, reply)) => {
                truth.lock().unwrap().refused.push(format!("{status}: {reply}"));
                break;
            }
        }
    }
    outcome
}

async fn writer(w: usize, url: String, deadline: Instant, rate: u32, batch_size: usize, truth: Arc<Mutex<Truth>>) {
    let client = HttpClient::new();
    let tokens: Vec<String> = TENANTS.iter().map(|t| token(t, &format!("writer-{w}"), "audit:write")).collect();
    let mut k = 0usize;
    while Instant::now() < deadline {
        let started = Instant::now();
        let tenant = (w + k) % TENANTS.len();
        let batch = if k % 5 == 4 { batch_size.max(1) } else { 1 };
        let written: Vec<Written> = (0..batch)
            .map(|j| Written {
                tenant,
                entity_type: TYPES[(k + j) % TYPES.len()],
                project: format!("p{}", (k + j) % 2),
                entity_id: format!("w{w}-{k}-{j}"),
                sent: started,
            })
            .collect();
        let items: Vec<Value> = written
            .iter()
            .enumerate()
            .map(|(j, e)| json!({"action": ACTIONS[(k + j) % ACTIONS.len()], "entity_type": e.entity_type, "entity_id": e.entity_id, "project_id": e.project}))
            .collect();
        let auth = format!("Bearer {}", tokens[tenant]);
        // Each item's answer. A request first stamped in a period sealed since (a retry across the
        // kill, whose restarted gateway seals at once) answers 409 `period_sealed` for the items it
        // did not store: those are sent again under a new key, as the message says.
        let mut answers: Vec<Option<Value>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        for _round in 0..5 {
            let body = if batch == 1 {
                items[0].clone()
            } else {
                Value::Array(pending.iter().map(|&i| items[i].clone()).collect())
            };
            let Some(reply) = write_with_key(&client, &url, &auth, &body, &truth).await else { break };
            let results: Vec<Value> = match reply.get("results") {
                Some(Value::Array(r)) => r.clone(),
                _ if reply["error"]["code"] == "period_sealed" => vec![reply.clone(); pending.len()],
                _ => vec![json!({"status": 201, "entry": reply})],
            };
            let mut sealed = Vec::new();
            for (&i, r) in pending.iter().zip(results) {
                if r["error"]["code"] == "period_sealed" {
                    sealed.push(i);
                } else {
                    answers[i] = Some(r);
                }
            }
            if sealed.is_empty() {
                break;
            }
            truth.lock().unwrap().retries += 1;
            pending = sealed;
        }
        let outcome = answers
            .iter()
            .any(Option::is_some)
            .then(|| json!({"results": answers.iter().map(|a| a.clone().unwrap_or(Value::Null)).collect::<Vec<_>>()}));
        let answered = Instant::now();
        {
            let mut t = truth.lock().unwrap();
            match outcome {
                Some(reply) => {
                    let results: Vec<Value> = match reply.get("results") {
                        Some(Value::Array(r)) => r.clone(),
                        _ => vec![json!({"status": 201, "entry": reply})],
                    };
                    for (e, r) in written.into_iter().zip(results) {
                        match r["entry"]["id"].as_str().and_then(id_of) {
                            Some(id) if r["status"] == 201 || r["status"] == 200 => {
                                t.acked.insert(id, (e, answered));
                            }
                            _ => {
                                t.failed_why.push(r.to_string().chars().take(400).collect());
                                t.failed.push((tenant, e.entity_id));
                            }
                        }
                    }
                }
                None => {
                    t.failed_why.push(format!("no answer for a batch of {} after 90 s", written.len()));
                    t.failed.extend(written.into_iter().map(|e| (tenant, e.entity_id)));
                }
            }
        }
        k += 1;
        if rate > 0 {
            let pause = Duration::from_secs_f64(1.0 / f64::from(rate)).saturating_sub(started.elapsed());
            tokio::time::sleep(pause).await;
        }
    }
}

async fn reader(r: usize, url: String, deadline: Instant, truth: Arc<Mutex<Truth>>) {
    let client = HttpClient::new();
    let auth = format!("Bearer {}", token(TENANTS[r % TENANTS.len()], "reader", "audit:read"));
    while Instant::now() < deadline {
        let mut next: Option<String> = None;
        for _ in 0..5 {
            let mut target = format!("{url}/audit/logs?limit=50");
            if let Some(t) = &next {
                target.push_str(&format!("&next_token={}", auditline_cli::client::encode(t)));
            }
            match send(&client, "GET", &target, &[("authorization", &auth)], None).await {
                Some((200, page)) => match page["next_token"].as_str() {
                    Some(t) => next = Some(t.to_owned()),
                    None => break,
                },
                Some((429 | 500..=599, _)) | None => {
                    truth.lock().unwrap().read_errors += 1;
                    break;
                }
                Some((status, reply)) => {
                    truth.lock().unwrap().refused.push(format!("read {status}: {reply}"));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A live client: one session, or two (leaving halfway and coming back) for every fifth.
/// Entries of `view` written since `since`, read over HTTP (through faults and restarts).
async fn catch_up(url: &str, auth: &str, view: View, since: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let client = HttpClient::new();
    let start = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut target =
            format!("{url}{}start_date={}&limit=1000", view.listing(), auditline_cli::client::encode(&start));
        if let Some(t) = &next {
            target.push_str(&format!("&next_token={}", auditline_cli::client::encode(t)));
        }
        let mut page = None;
        for _ in 0..50 {
            if let Some((200, p)) = send(&client, "GET", &target, &[("authorization", auth)], None).await {
                page = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some(page) = page else { return ids };
        ids.extend(
            page["entries"].as_array().into_iter().flatten().filter_map(|e| e["id"].as_str().map(str::to_owned)),
        );
        match page["next_token"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return ids,
        }
    }
}

struct Client {
    c: usize,
    ws: String,
    url: String,
    start: Instant,
    span: Duration,
    /// Reconnect and catch up over HTTP when the gateway drops the socket (restart runs).
    reconnect: bool,
    /// Catch-ups running at once, across clients. Two hundred at once after a restart queue up in
    /// moto (it serves one request at a time) past the SDK's attempt timeout, whose retries then
    /// only add to the queue; DynamoDB would serve them all.
    catch_ups: Arc<tokio::sync::Semaphore>,
}

/// A live client: one session, or two (leaving a third of the way in and coming back at half
/// time) for every fifth.
async fn live_client(client: Client, mut stop: tokio::sync::watch::Receiver<bool>, sessions: Arc<Mutex<Vec<Session>>>) {
    let Client { c, ws, url, start, span, reconnect, catch_ups } = client;
    let tenant = c % TENANTS.len();
    let (view, scope, query) = View::of(c, reconnect);
    let auth = format!("Bearer {}", token(TENANTS[tenant], &format!("client-{c}"), scope));
    let plan: Vec<(Duration, Option<Duration>)> = if c % 5 == 4 {
        vec![(Duration::ZERO, Some(span / 3)), (span / 2, None)]
    } else {
        vec![(Duration::ZERO, None)]
    };
    for (from, until) in plan {
        tokio::time::sleep_until((start + from).into()).await;
        if *stop.borrow() {
            return;
        }
        let end = until.map_or(start + span * 10, |u| start + u);
        let mut session: Option<Session> = None;
        // Catch-up reads from the session's start: the stream may lag by seconds (moto, faults), so
        // entries written well before the drop can still be unpushed when it happens.
        let opened_at = chrono::Utc::now() - chrono::Duration::seconds(1);
        'connection: loop {
            let Ok(mut socket) = try_websocket(&format!("{ws}{query}"), &[("authorization", &auth)]).await else {
                if session.is_some() && reconnect && !*stop.borrow() && Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                break;
            };
            match &mut session {
                None => {
                    session = Some(Session {
                        tenant,
                        view,
                        opened: Instant::now(),
                        closed: Instant::now(),
                        seen: HashSet::new(),
                        delivered: 0,
                        duplicate: 0,
                        forbidden: 0,
                        arrivals: Vec::new(),
                        caught_up: HashSet::new(),
                        reconnects: 0,
                    });
                }
                Some(s) => {
                    // Back after a drop: what was written meanwhile comes over HTTP.
                    s.reconnects += 1;
                    let since = opened_at;
                    let _slot = catch_ups.acquire().await.expect("never closed");
                    s.caught_up.extend(catch_up(&url, &auth, view, since).await.iter().filter_map(|i| id_of(i)));
                }
            }
            let s = session.as_mut().expect("a session");
            loop {
                tokio::select! {
                    message = socket.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            s.frame(&text);
                        }
                        Some(Ok(_)) => {}
                        // Dropped by the gateway (killed, or closed on us).
                        Some(Err(_)) | None => {
                            if reconnect && !*stop.borrow() && Instant::now() < end {
                                continue 'connection;
                            }
                            break 'connection;
                        }
                    },
                    _ = tokio::time::sleep_until(end.into()) => break,
                    _ = stop.changed() => break,
                }
            }
            let _ = socket.close(None).await;
            break;
        }
        if let Some(mut s) = session {
            s.closed = Instant::now();
            sessions.lock().unwrap().push(s);
        }
    }
}

/// Runs the soak and accounts for it.
pub async fn run(config: &SoakConfig) -> SoakReport {
    let gateway = Arc::new(Mutex::new(Gateway::start(&config.store, config.push_faults_per_mille)));
    let url = gateway.lock().unwrap().url.clone();
    let ws = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let truth = Arc::new(Mutex::new(Truth::default()));
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + config.duration;

    // The slow client: connects and never reads.
    let slow =
        websocket(&ws, &[("authorization", &format!("Bearer {}", token(TENANTS[SLOW_TENANT], "slow", "audit:read")))])
            .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let catch_ups = Arc::new(tokio::sync::Semaphore::new(4));
    let clients: Vec<_> = (0..config.clients)
        .map(|c| {
            let client = Client {
                c,
                ws: ws.clone(),
                url: url.clone(),
                start,
                span: config.duration,
                reconnect: config.kill_at.is_some(),
                catch_ups: catch_ups.clone(),
            };
            tokio::spawn(live_client(client, stopped.clone(), sessions.clone()))
        })
        .collect();
    // Let the clients connect before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writers: Vec<_> = (0..config.writers)
        .map(|w| {
            tokio::spawn(writer(w, url.clone(), deadline, config.rate_per_writer, config.batch_size, truth.clone()))
        })
        .collect();
    let readers: Vec<_> =
        (0..config.readers).map(|r| tokio::spawn(reader(r, url.clone(), deadline, truth.clone()))).collect();
    // The process killed (SIGKILL) and started again on the same tables, mid-run.
    let killer = config.kill_at.map(|at| {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((start + at).into()).await;
            tokio::task::spawn_blocking(move || gateway.lock().unwrap().kill_and_restart()).await.unwrap();
        })
    });
    for task in writers.into_iter().chain(readers).chain(killer) {
        task.await.expect("a writer, reader or the killer panicked");
    }
    let written_until = Utc::now();
    // Give the feed time to deliver what was written last, then end every session.
    let settle = if config.store.is_dynamodb() { Duration::from_secs(6) } else { Duration::from_secs(2) };
    tokio::time::sleep(settle).await;
    let _ = stop.send(true);
    for task in clients {
        task.await.expect("a live client panicked");
    }
    drop(slow);
    let peak_rss_mib = gateway.lock().unwrap().peak_rss_kib() as f64 / 1024.0;
    let truth = Arc::try_unwrap(truth).ok().expect("no task holds the truth").into_inner().unwrap();
    let mut report = account(&url, config, truth, sessions, peak_rss_mib).await;
    let data_dir = gateway.lock().unwrap().data_dir.clone();
    if let Some(dir) = data_dir {
        verify_chains(&url, &dir, written_until, &mut report).await;
    }
    drop(gateway);
    report
}

/// Once the minute of the last write is sealed, each tenant's trail fetched and verified with the
/// `auditline` binary against the seal key in the data directory: every checkpoint, sealed before
/// and after the kill, one chain; every entry under its leaf.
async fn verify_chains(url: &str, data_dir: &std::path::Path, written_until: DateTime<Utc>, report: &mut SoakReport) {
    use chrono::DurationRound;
    let sealed_at = written_until.duration_trunc(chrono::Duration::minutes(1)).unwrap() + chrono::Duration::seconds(64);
    if let Ok(wait) = (sealed_at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let public_key = data_dir.join("seal-key.pub.pem");
    let mut checkpoints = 0;
    let mut failures = Vec::new();
    for tenant in TENANTS {
        let bundle = crate::fresh_dir("soak-bundle").join(tenant);
        let run = |args: Vec<String>| {
            let output = Command::new(crate::binary("auditline"))
                .args(&args)
                .env_remove("AUDITLINE_API_KEY")
                .env("AUDITLINE_TOKEN", token(tenant, "auditor", "audit:read"))
                .output()
                .expect("auditline runs");
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            (output.status.success(), text)
        };
        let fetched =
            run(vec!["fetch".into(), "--url".into(), url.into(), "--out".into(), bundle.display().to_string()]);
        let verified = fetched.0.then(|| {
            run(vec![
                "verify".into(),
                "--public-key".into(),
                public_key.display().to_string(),
                "--tenant".into(),
                tenant.into(),
                bundle.display().to_string(),
            ])
        });
        match verified {
            Some((true, text)) => {
                // "tenant soak-a: 3/3 checkpoints valid, …": sealed periods, not only pending entries.
                let sealed = text
                    .split_once(": ")
                    .and_then(|(_, rest)| rest.split('/').next()?.parse::<usize>().ok())
                    .unwrap_or(0);
                if sealed == 0 {
                    failures.push(format!("{tenant}: nothing sealed: {text}"));
                }
                checkpoints += sealed;
            }
            Some((false, text)) => failures.push(format!("{tenant}: {text}")),
            None => failures.push(format!("{tenant}: fetch failed: {}", fetched.1)),
        }
    }
    report.chains_verified = Some(TENANTS.len() - failures.len());
    report.chains = format!("{}/{} ({checkpoints} checkpoints)", TENANTS.len() - failures.len(), TENANTS.len());
    report.chain_failures = failures;
}

/// Every entry of each tenant, listed page by page (retried through faults).
async fn listing(url: &str) -> Vec<(usize, Vec<Value>)> {
    let client = HttpClient::new();
    let mut out = Vec::new();
    for (t, tenant) in TENANTS.iter().enumerate() {
        let auth = format!("Bearer {}", token(tenant, "auditor", "audit:read"));
        let mut entries = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut target = format!("{url}/audit/logs?limit=200");
            if let Some(t) = &next {
                target.push_str(&format!("&next_token={}", auditline_cli::client::encode(t)));
            }
            let mut page = None;
            let mut last = None;
            for _ in 0..60 {
                match send(&client, "GET", &target, &[("authorization", &auth)], None).await {
                    Some((200, p)) => {
                        page = Some(p);
                        break;
                    }
                    other => last = other.map(|(status, body)| format!("{status} {body}")),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let page = page.unwrap_or_else(|| panic!("the listing did not answer in 60 tries; last: {last:?}"));
            entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
            match page["next_token"].as_str() {
                Some(t) => next = Some(t.to_owned()),
                None => break,
            }
        }
        out.push((t, entries));
    }
    out
}

async fn account(
    url: &str,
    config: &SoakConfig,
    truth: Truth,
    sessions: Arc<Mutex<Vec<Session>>>,
    peak_rss_mib: f64,
) -> SoakReport {
    let mut report = SoakReport {
        mode: config.label.clone(),
        push_faults_per_mille: config.push_faults_per_mille,
        seconds: config.duration.as_secs_f64(),
        acked: truth.acked.len(),
        failed_writes: truth.failed.len(),
        refused: truth.refused.clone(),
        failed_why: truth.failed_why.clone(),
        retries: truth.retries,
        read_errors: truth.read_errors,
        unavailable: truth.unavailable,
        unavailable_with_retry_after: truth.unavailable_with_retry_after,
        peak_rss_mib,
        ..SoakReport::default()
    };
    let listed = listing(url).await;
    let mut by_entity: HashMap<(usize, String), usize> = HashMap::new();
    let mut ids = HashSet::new();
    let mut tenant_of_id = HashMap::new();
    for (t, entries) in &listed {
        for e in entries {
            let id = e["id"].as_str().and_then(id_of).unwrap_or_default();
            if !ids.insert(id) {
                report.doubled += 1;
            }
            tenant_of_id.insert(id, *t);
            *by_entity.entry((*t, e["entity_id"].as_str().unwrap_or_default().to_owned())).or_default() += 1;
        }
    }
    report.stored = ids.len();
    report.doubled += by_entity.values().filter(|n| **n > 1).map(|n| n - 1).sum::<usize>();
    for (id, (written, _)) in &truth.acked {
        if tenant_of_id.get(id) != Some(&written.tenant) {
            report.lost += 1;
        }
    }
    for (t, entity) in &truth.failed {
        if by_entity.get(&(*t, entity.clone())).copied().unwrap_or(0) == 1 {
            report.failed_present += 1;
        }
    }
    // Statistics agree with the listing, tenant by tenant.
    let client = HttpClient::new();
    for (t, entries) in &listed {
        let auth = format!("Bearer {}", token(TENANTS[*t], "auditor", "audit:read"));
        let mut total = None;
        for _ in 0..20 {
            if let Some((200, stats)) =
                send(&client, "GET", &format!("{url}/audit/stats"), &[("authorization", &auth)], None).await
            {
                total = stats["total_entries"].as_u64();
                break;
            }
        }
        if total != Some(entries.len() as u64) {
            report.stats_mismatch += 1;
        }
    }

    // Frames: each session should have every acknowledged entry of its tenant and view whose
    // request was sent after it opened and answered a second before it closed.
    let acked_by_tenant: Vec<Vec<(u128, &Written, Instant)>> = (0..TENANTS.len())
        .map(|t| truth.acked.iter().filter(|(_, (w, _))| w.tenant == t).map(|(id, (w, at))| (*id, w, *at)).collect())
        .collect();
    let mut frame_latencies = Vec::new();
    let mut by_slow_tenant: [Vec<Duration>; 2] = Default::default();
    let sessions = std::mem::take(&mut *sessions.lock().unwrap());
    report.sessions = sessions.len();
    report.reconnects = sessions.iter().map(|s| s.reconnects).sum();
    for s in &sessions {
        report.frames_delivered += s.delivered;
        report.frames_forbidden += s.forbidden;
        report.frames_duplicate += s.duplicate;
        for (id, at) in &s.arrivals {
            if let Some((w, _)) = truth.acked.get(id) {
                let latency = at.saturating_duration_since(w.sent);
                frame_latencies.push(latency);
                by_slow_tenant[usize::from(s.tenant == SLOW_TENANT)].push(latency);
            }
        }
        for (id, w, answered) in &acked_by_tenant[s.tenant] {
            let in_window = w.sent >= s.opened && *answered + config.delivery_margin() <= s.closed;
            if in_window && s.view.wants(w.entity_type, &w.project) {
                report.frames_expected += 1;
                if !s.seen.contains(id) {
                    if s.caught_up.contains(id) {
                        report.caught_up += 1;
                    } else {
                        report.frames_missing += 1;
                    }
                }
            }
        }
    }
    let mut posts = truth.post_latencies;
    report.post_p50_ms = percentile(&mut posts, 0.5);
    report.post_p99_ms = percentile(&mut posts, 0.99);
    report.frame_p50_ms = percentile(&mut frame_latencies, 0.5);
    report.frame_p99_ms = percentile(&mut frame_latencies, 0.99);
    report.slow_tenant_frame_p99_ms = percentile(&mut by_slow_tenant[1], 0.99);
    report.other_tenants_frame_p99_ms = percentile(&mut by_slow_tenant[0], 0.99);
    report
}
