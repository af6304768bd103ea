//! Log streams: delivery lag from write to receiver at 1,000 entries/s spread over 10 tenants, each
//! with a webhook stream to its own receiver on loopback, through the local gateway on its default
//! store (SQLite) — the same routing, queue, worker and delivery code as the deployed functions,
//! with the local queue in place of SQS.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditline::Config;
use auditline_local::{Options, Storage, start};
use auditline_tests::auth::{SECRET, claims, hs256};
use auditline_tests::client::HttpClient;
use auditline_tests::receiver::Receiver;
use serde_json::{Value, json};

const TENANTS: usize = 10;
const RATE: usize = 1_000;
const SECONDS: u64 = 30;
/// Entries per POST: one tenant's batch every 10 ms makes 1,000 entries/s.
const BATCH: usize = 10;

fn token(tenant: &str, scope: &str) -> String {
    let mut c = claims("bench", scope);
    c["tenant_id"] = json!(tenant);
    hs256(&c)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

pub async fn run(out: &mut String) {
    let vars = [("JWT_SECRET", SECRET.to_owned())];
    let config = Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())).unwrap();
    let g = start(Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        storage: Storage::Sqlite { dir: auditline_tests::fresh_dir("bench-streams") },
        config,
        limits: Default::default(),
        seal: Default::default(),
        archive: None,
        push_faults_per_mille: 0,
        streams: Default::default(),
    })
    .await
    .expect("the gateway starts");
    let client = HttpClient::new();
    let base = g.http_url();
    let mut receivers = Vec::new();
    let mut writers = Vec::new();
    for t in 0..TENANTS {
        let tenant = format!("tenant-{t}");
        let receiver = Receiver::start().await;
        let admin = format!("Bearer {}", token(&tenant, "audit:admin"));
        let body = json!({"name": "SIEM", "target": {"type": "webhook", "url": receiver.url()}});
        let created =
            client.request("POST", &format!("{base}/audit/streams"), &[("authorization", &admin)], Some(&body)).await;
        assert_eq!(created.status, 201, "{}", created.body);
        receivers.push(receiver);
        writers.push(format!("Bearer {}", token(&tenant, "audit:write")));
    }

    // 1,000 entries/s for SECONDS: each 10 ms, one tenant's batch of 10, in turn; posts run
    // concurrently so a slow answer does not slow the pace.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let posts = (RATE / BATCH) * SECONDS as usize;
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 * BATCH as u64 / RATE as u64));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..posts {
        ticks.tick().await;
        let (client, url, auth, sent) =
            (client.clone(), format!("{base}/audit/logs"), writers[i % TENANTS].clone(), sent.clone());
        tasks.spawn(async move {
            let batch: Vec<Value> = (0..BATCH)
                .map(|j| json!({"action": "UPDATE", "entity_type": "REPORT", "entity_id": format!("r-{i}-{j}")}))
                .collect();
            let at = Instant::now();
            let reply = client.request("POST", &url, &[("authorization", &auth)], Some(&Value::Array(batch))).await;
            assert_eq!(reply.status, 201, "{}", reply.body);
            let mut sent = sent.lock().unwrap();
            for result in reply.body["results"].as_array().unwrap() {
                sent.insert(result["entry"]["id"].as_str().unwrap().to_owned(), at);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let writing = started.elapsed();
    let sent = sent.lock().unwrap().clone();

    // Wait for every entry at its receiver; each one's lag is from its POST to its first arrival.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (lags, duplicates) = loop {
        let mut first: HashMap<String, Instant> = HashMap::new();
        let mut duplicates = 0usize;
        for receiver in &receivers {
            for delivery in receiver.received() {
                for item in delivery.items() {
                    let Some(id) = item["id"].as_str() else { continue };
                    if !sent.contains_key(id) {
                        continue; // the streams' own records
                    }
                    match first.get(id) {
                        Some(_) => duplicates += 1,
                        None => {
                            first.insert(id.to_owned(), delivery.at);
                        }
                    }
                }
            }
        }
        if first.len() == sent.len() || Instant::now() > deadline {
            let mut lags: Vec<Duration> = first.iter().map(|(id, at)| at.saturating_duration_since(sent[id])).collect();
            lags.sort_unstable();
            break (lags, duplicates);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let requests: usize = receivers.iter().map(|r| r.received().len()).sum();
    writeln!(out, "### Delivery lag, {RATE} entries/s over {TENANTS} webhook streams, local gateway on SQLite\n")
        .unwrap();
    writeln!(
        out,
        "| entries written | in | delivered | duplicates | deliveries (POSTs) | lag p50 | lag p99 | lag max |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|---|---|---|").unwrap();
    writeln!(
        out,
        "| {} | {:.1} s ({:.0}/s) | {} | {duplicates} | {requests} | {} | {} | {} |",
        sent.len(),
        writing.as_secs_f64(),
        sent.len() as f64 / writing.as_secs_f64(),
        lags.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().unwrap()),
    )
    .unwrap();
    writeln!(
        out,
        "\nLag is from the POST that wrote an entry to its arrival at the receiver (the receiver closes each \
         connection, so every delivery opens a new one)."
    )
    .unwrap();
    g.shutdown().await;
}
