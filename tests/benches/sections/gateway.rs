//! The local gateway with 100 WebSocket clients: POST → WebSocket frame latency, and the sustained
//! ingest rate with the feed running.

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

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

pub async fn run(out: &mut String) {
    let config = Config::from_lookup(|k| (k == "JWT_SECRET").then(|| SECRET.to_owned())).unwrap();
    let g = start(Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        storage: Storage::Memory { max_entries: 1_000_000, max_bytes: auditline_local::DEFAULT_MEMORY_BYTES },
        config,
        limits: auditline_local::Limits::default(),
        seal: auditline_local::SealOptions::default(),
        archive: None,
        push_faults_per_mille: 0,
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.lock().unwrap().values().map(Vec::len).sum::<usize>() < LATENCY_POSTS * CLIENTS
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for (id, started) in &sent {
        for arrived in arrivals.lock().unwrap().get(id).into_iter().flatten() {
            latencies.push(*arrived - *started);
        }
    }
    latencies.sort_unstable();
    let delivered = latencies.len();
    let pick = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    writeln!(out, "### {CLIENTS} connected clients, {LATENCY_POSTS} POSTs one after another\n").unwrap();
    writeln!(out, "| POST → WebSocket frame, every client | figure |\n|---|---|").unwrap();
    writeln!(out, "| frames delivered | {delivered} of {} |", LATENCY_POSTS * CLIENTS).unwrap();
    for (label, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        writeln!(out, "| {label} | {:.2} ms |", pick(p).as_secs_f64() * 1e3).unwrap();
    }

    arrivals.lock().unwrap().clear();
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (http, url, key, body) = (http.clone(), url.clone(), key.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..RATE_POSTS / WRITERS {
                    let reply = http.request("POST", &url, &[("x-api-key", &key)], Some(&body)).await;
                    assert_eq!(reply.status, 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let ingest = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().values().map(Vec::len).sum::<usize>() < RATE_POSTS * CLIENTS
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fanned = started.elapsed();
    let frames: usize = arrivals.lock().unwrap().values().map(Vec::len).sum();
    writeln!(out, "\n### Sustained ingest: {WRITERS} HTTP writers, {RATE_POSTS} single-entry POSTs, {CLIENTS} clients receiving everything\n").unwrap();
    writeln!(out, "| figure | value |\n|---|---|").unwrap();
    writeln!(out, "| entries stored per second | {:.0} |", RATE_POSTS as f64 / ingest.as_secs_f64()).unwrap();
    writeln!(out, "| frames delivered | {frames} of {} |", RATE_POSTS * CLIENTS).unwrap();
    writeln!(out, "| frames per second, until the last arrived | {:.0} |", frames as f64 / fanned.as_secs_f64())
        .unwrap();
    for r in readers {
        r.abort();
    }
    g.shutdown().await;
}
