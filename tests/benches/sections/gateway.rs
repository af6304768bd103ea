//! The local gateway with 100 WebSocket clients, in memory and on its SQLite file side by side in
//! one run: POST → WebSocket frame latency, the sustained ingest rate with the feed running, and
//! batches of 100. The two stores take turns, three rounds each, and each figure is the median of
//! its three: a virtual machine's speed drifts by tens of per cent within a minute.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditline::Config;
use auditline_local::{Options, Storage, start};
use auditline_tests::auth::SECRET;
use auditline_tests::client::{HttpClient, websocket};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 100;
const LATENCY_POSTS: usize = 200;
const WRITERS: usize = 8;
const RATE_POSTS: usize = 4_000;
const BATCH: usize = 100;
const BATCHES: usize = 400;
const ROUNDS: usize = 3;

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// One store's figures.
struct Figures {
    delivered: usize,
    latency: [Duration; 3],
    ingest_per_second: f64,
    frames: usize,
    frames_per_second: f64,
    batch_entries_per_second: f64,
    commits_per_batch_of_100: Option<f64>,
}

/// Each figure's median over rounds; the counts of frames delivered, their worst.
fn median(rounds: Vec<Figures>) -> Figures {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let of = |f: fn(&Figures) -> f64| mid(rounds.iter().map(f).collect());
    let latency = |i: usize| {
        let mut v: Vec<Duration> = rounds.iter().map(|r| r.latency[i]).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    Figures {
        delivered: rounds.iter().map(|r| r.delivered).min().unwrap_or(0),
        latency: [latency(0), latency(1), latency(2)],
        ingest_per_second: of(|r| r.ingest_per_second),
        frames: rounds.iter().map(|r| r.frames).min().unwrap_or(0),
        frames_per_second: of(|r| r.frames_per_second),
        batch_entries_per_second: of(|r| r.batch_entries_per_second),
        commits_per_batch_of_100: rounds[0]
            .commits_per_batch_of_100
            .map(|_| of(|r| r.commits_per_batch_of_100.unwrap_or(0.0))),
    }
}

pub async fn run(out: &mut String) {
    let (mut memory, mut sqlite) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let max_bytes = auditline_local::DEFAULT_MEMORY_BYTES;
        memory.push(measure(Storage::Memory { max_entries: 1_000_000, max_bytes }).await);
        sqlite.push(measure(Storage::Sqlite { dir: auditline_tests::fresh_dir("bench-gateway") }).await);
    }
    let (memory, sqlite) = (median(memory), median(sqlite));
    writeln!(out, "Each figure is the median of {ROUNDS} rounds, the stores taking turns.\n").unwrap();
    let row = |out: &mut String, name: &str, m: String, s: String, ratio: String| {
        writeln!(out, "| {name} | {m} | {s} | {ratio} |").unwrap();
    };
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    writeln!(out, "### {CLIENTS} connected clients, {LATENCY_POSTS} POSTs one after another\n").unwrap();
    writeln!(out, "| POST → WebSocket frame, every client | in memory | SQLite (the default) | SQLite ÷ memory |")
        .unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    let total = LATENCY_POSTS * CLIENTS;
    row(
        out,
        "frames delivered",
        format!("{} of {total}", memory.delivered),
        format!("{} of {total}", sqlite.delivered),
        "—".into(),
    );
    for (i, label) in ["p50", "p99", "max"].iter().enumerate() {
        let ratio = sqlite.latency[i].as_secs_f64() / memory.latency[i].as_secs_f64();
        row(out, label, ms(memory.latency[i]), ms(sqlite.latency[i]), format!("{ratio:.2}×"));
    }
    writeln!(
        out,
        "\n### Sustained ingest: {WRITERS} HTTP writers, {RATE_POSTS} single-entry POSTs, {CLIENTS} clients receiving everything\n"
    )
    .unwrap();
    writeln!(out, "| figure | in memory | SQLite (the default) | SQLite ÷ memory |\n|---|---|---|---|").unwrap();
    row(
        out,
        "entries stored per second",
        format!("{:.0}", memory.ingest_per_second),
        format!("{:.0}", sqlite.ingest_per_second),
        format!("**{:.2}×** (issue 24: ≥ 0.8×)", sqlite.ingest_per_second / memory.ingest_per_second),
    );
    let frames = RATE_POSTS * CLIENTS;
    row(
        out,
        "frames delivered",
        format!("{} of {frames}", memory.frames),
        format!("{} of {frames}", sqlite.frames),
        "—".into(),
    );
    row(
        out,
        "frames per second, until the last arrived",
        format!("{:.0}", memory.frames_per_second),
        format!("{:.0}", sqlite.frames_per_second),
        format!("{:.2}×", sqlite.frames_per_second / memory.frames_per_second),
    );
    writeln!(
        out,
        "\n### Batches of {BATCH}: {WRITERS} HTTP writers, {BATCHES} POSTs of {BATCH} entries, no live clients\n"
    )
    .unwrap();
    writeln!(out, "| figure | in memory | SQLite (the default) |\n|---|---|---|").unwrap();
    writeln!(
        out,
        "| entries stored per second | {:.0} | **{:.0}** (issue 24: ≥ 20,000) |",
        memory.batch_entries_per_second, sqlite.batch_entries_per_second
    )
    .unwrap();
    if let Some(commits) = sqlite.commits_per_batch_of_100 {
        writeln!(out, "| SQLite transactions (fsyncs) per batch of {BATCH} (group commit) | — | {commits:.1} |")
            .unwrap();
    }
}

async fn measure(storage: Storage) -> Figures {
    let config = Config::from_lookup(|k| (k == "JWT_SECRET").then(|| SECRET.to_owned())).unwrap();
    let g = start(Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        storage,
        config,
        limits: auditline_local::Limits::default(),
        seal: auditline_local::SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .unwrap();
    let key = g.credentials.api_key.expose().to_owned();
    // The gateway is configured with the tests' secret, so it mints no token: sign one with it.
    let token = auditline_tests::auth::hs256(&{
        let mut c = auditline_tests::auth::claims("developer", "*");
        c["tenant_id"] = serde_json::json!(auditline_local::DEV_TENANT);
        c
    });

    let arrivals: Arrivals = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let (mut socket, _) = websocket(&format!("{}?token={token}", g.websocket_url()), &[]).await.unwrap();
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let now = Instant::now();
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let id = v["entry"]["id"].as_str().unwrap().to_owned();
                    arrivals.lock().unwrap().entry(id).or_default().push(now);
                }
            }
        }));
    }

    let http = HttpClient::new();
    let url = format!("{}/audit/logs", g.http_url());
    let body = json!({"action": "UPDATE", "entity_type": "REPORT", "entity_id": "report-7", "changes": {"status": "published"}});
    let mut sent = HashMap::new();
    for _ in 0..LATENCY_POSTS {
        let started = Instant::now();
        let reply = http.request("POST", &url, &[("x-api-key", &key)], Some(&body)).await;
        sent.insert(reply.body["id"].as_str().unwrap().to_owned(), started);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for_frames(&arrivals, LATENCY_POSTS * CLIENTS, Duration::from_secs(10)).await;
    let mut latencies: Vec<Duration> = Vec::new();
    for (id, started) in &sent {
        for arrived in arrivals.lock().unwrap().get(id).into_iter().flatten() {
            latencies.push(*arrived - *started);
        }
    }
    latencies.sort_unstable();
    let delivered = latencies.len();
    let pick = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let latency = [pick(0.5), pick(0.99), pick(1.0)];

    arrivals.lock().unwrap().clear();
    let started = Instant::now();
    writers(&http, &url, &key, RATE_POSTS / WRITERS, body.clone(), 201).await;
    let ingest = started.elapsed();
    wait_for_frames(&arrivals, RATE_POSTS * CLIENTS, Duration::from_secs(60)).await;
    let fanned = started.elapsed();
    let frames: usize = arrivals.lock().unwrap().values().map(Vec::len).sum();

    // Batches measure the store: the clients leave first (with them, the fan-out's CPU is the
    // limit on two cores, as the single POSTs above show).
    for r in readers {
        r.abort();
    }
    let commits_before = g.sqlite_store().map(|s| s.commits());
    let batch = Value::Array(vec![body.clone(); BATCH]);
    let started = Instant::now();
    writers(&http, &url, &key, BATCHES / WRITERS, batch, 201).await;
    let batched = started.elapsed();
    let commits = g
        .sqlite_store()
        .map(|s| s.commits())
        .zip(commits_before)
        .map(|(after, before)| (after - before) as f64 / BATCHES as f64);
    g.shutdown().await;
    Figures {
        delivered,
        latency,
        ingest_per_second: RATE_POSTS as f64 / ingest.as_secs_f64(),
        frames,
        frames_per_second: frames as f64 / fanned.as_secs_f64(),
        batch_entries_per_second: (BATCHES * BATCH) as f64 / batched.as_secs_f64(),
        commits_per_batch_of_100: commits,
    }
}

/// `WRITERS` tasks, each POSTing `body` `each` times and expecting `status`.
async fn writers(http: &HttpClient, url: &str, key: &str, each: usize, body: Value, status: u16) {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (http, url, key, body) = (http.clone(), url.to_owned(), key.to_owned(), body.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    let reply = http.request("POST", &url, &[("x-api-key", &key)], Some(&body)).await;
                    assert_eq!(reply.status, status, "{}", reply.body);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn wait_for_frames(arrivals: &Arrivals, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while arrivals.lock().unwrap().values().map(Vec::len).sum::<usize>() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
