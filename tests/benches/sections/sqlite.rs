//! The local default at size: 1,000,000 entries in the gateway's SQLite file, then the release
//! gateway binary started on it — how long until it serves, what each indexed list route costs
//! over HTTP (p50/p99), and its resident memory.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditline::store::SqliteStore;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_local::DEV_TENANT;
use auditline_tests::client::HttpClient;
use auditline_tests::{fresh_dir, hours_ago, stepping_clock};

use super::store::typical;

/// How many entries the file holds (`AUDITLINE_BENCH_SQLITE_ENTRIES` for a quicker look).
fn entries() -> usize {
    std::env::var("AUDITLINE_BENCH_SQLITE_ENTRIES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}
/// Entries logged at once (the writer commits what has queued meanwhile as one transaction).
const IN_FLIGHT: usize = 256;
const REQUESTS: usize = 1_000;
/// Requests per route before the measured ones.
const WARM_UP: usize = 20;

pub async fn run(out: &mut String) {
    let entries = entries();
    let dir = fresh_dir("bench-sqlite");
    let database = dir.join("auditline.db");
    let fill = fill(&database, entries).await;
    let bytes = std::fs::metadata(&database).unwrap().len();
    writeln!(out, "### {entries} entries in the file\n").unwrap();
    writeln!(out, "| figure | value |\n|---|---|").unwrap();
    writeln!(
        out,
        "| filled through `AuditLogger` ({IN_FLIGHT} in flight, one tenant, 30 days) | {:.0} s, {:.0} entries/s |",
        fill.as_secs_f64(),
        entries as f64 / fill.as_secs_f64()
    )
    .unwrap();
    writeln!(
        out,
        "| file size | {:.0} MB ({:.0} bytes per entry, with six indexes) |",
        bytes as f64 / 1e6,
        bytes as f64 / entries as f64
    )
    .unwrap();

    // The first start seals the whole trail (the fill wrote it unsealed, as no running gateway
    // would have left it): measured on its own, then every later start finds it sealed.
    let (g, _) = Gateway::start(&dir);
    let sealing = Instant::now();
    let (checkpoints, done) = wait_until_sealed(&database);
    let sealed_in = done - sealing;
    writeln!(
        out,
        "| first start: the seal loop catches up ({checkpoints} hourly checkpoints) | {:.1} s, peak resident memory {:.0} MB |",
        sealed_in.as_secs_f64(),
        g.peak_rss_kib() as f64 / 1024.0
    )
    .unwrap();
    g.stop();

    // Start: from spawning the binary to its banner (the file opened and checked, the entries
    // counted, the key found); warm, then with the kernel's page cache dropped.
    let mut warm = Vec::new();
    for _ in 0..3 {
        let (g, took) = Gateway::start(&dir);
        warm.push(took);
        g.stop();
    }
    warm.sort();
    let cold = drop_page_cache().then(|| {
        let (g, took) = Gateway::start(&dir);
        g.stop();
        took
    });
    writeln!(
        out,
        "| gateway start, file in the page cache (median of 3) | **{:.0} ms** (issue 24: ≤ 1 s) |",
        ms(warm[1])
    )
    .unwrap();
    match cold {
        Some(took) => writeln!(out, "| gateway start, page cache dropped first | {:.0} ms |", ms(took)).unwrap(),
        None => writeln!(out, "| gateway start, page cache dropped first | not measured (no permission to drop it) |")
            .unwrap(),
    }

    let (g, _) = Gateway::start(&dir);
    let client = HttpClient::new();
    let routes: [(&str, PathFor); 8] = [
        ("`GET /audit/logs` (the tenant, newest first)", Box::new(|_| "/audit/logs?limit=50".into())),
        ("`GET /audit/logs/entity/{id}`", Box::new(|i| format!("/audit/logs/entity/entity-{}?limit=50", i * 7 % 1000))),
        ("`GET /audit/logs/project/{id}`", Box::new(|i| format!("/audit/logs/project/project-{}?limit=50", i % 50))),
        ("`GET /audit/logs?user_id=`", Box::new(|i| format!("/audit/logs?user_id=user-{}&limit=50", i * 13 % 200))),
        ("`GET /audit/logs?action=`", Box::new(|i| format!("/audit/logs?action={}&limit=50", ACTIONS[i % 6]))),
        ("`GET /audit/logs?entity_type=`", Box::new(|i| format!("/audit/logs?entity_type={}&limit=50", TYPES[i % 7]))),
        (
            "`GET /audit/logs?entity_type=&action=` (one in the key, one filtered)",
            Box::new(|i| format!("/audit/logs?entity_type={}&action={}&limit=50", TYPES[i % 7], ACTIONS[i % 6])),
        ),
        ("`GET /audit/stats` (90 days of hourly counters)", Box::new(|_| "/audit/stats".into())),
    ];
    writeln!(out, "\n### Reads over HTTP with {entries} entries ({REQUESTS} requests each after {WARM_UP} to warm up, pages of 50, one client)\n")
        .unwrap();
    writeln!(out, "| route | p50 | p99 | first request, from disk |\n|---|---|---|---|").unwrap();
    for (name, path) in &routes {
        // The first requests of a route read its index from disk (the page cache was dropped
        // above): the first is reported on its own, the next few warm up, the rest are measured.
        let first_url = format!("{}{}", g.url, path(REQUESTS));
        let started = Instant::now();
        assert_eq!(client.request("GET", &first_url, &[("x-api-key", &g.key)], None).await.status, 200);
        let first = started.elapsed();
        for i in 0..WARM_UP {
            let url = format!("{}{}", g.url, path(REQUESTS + 1 + i));
            assert_eq!(client.request("GET", &url, &[("x-api-key", &g.key)], None).await.status, 200);
        }
        let mut samples = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS {
            let url = format!("{}{}", g.url, path(i));
            let started = Instant::now();
            let reply = client.request("GET", &url, &[("x-api-key", &g.key)], None).await;
            samples.push(started.elapsed());
            assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        }
        samples.sort();
        let p = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        writeln!(out, "| {name} | {:.2} ms | {:.2} ms | {:.1} ms |", p(0.5), p(0.99), ms(first)).unwrap();
    }
    // One entry by id, from the ids of the listing.
    let page = client.request("GET", &format!("{}/audit/logs?limit=200", g.url), &[("x-api-key", &g.key)], None).await;
    let ids: Vec<String> =
        page.body["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let mut samples = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let url = format!("{}/audit/logs/{}", g.url, ids[i % ids.len()]);
        let started = Instant::now();
        assert_eq!(client.request("GET", &url, &[("x-api-key", &g.key)], None).await.status, 200);
        samples.push(started.elapsed());
    }
    samples.sort();
    let p = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    writeln!(out, "| `GET /audit/logs/{{id}}` | {:.2} ms | {:.2} ms | — |", p(0.5), p(0.99)).unwrap();
    writeln!(
        out,
        "\n| gateway resident memory, peak (VmHWM) after the reads | **{:.1} MB** (issue 24: ≤ 100 MB) |\n|---|---|",
        g.peak_rss_kib() as f64 / 1024.0
    )
    .unwrap();
    g.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The request path of the i-th request to one route.
type PathFor = Box<dyn Fn(usize) -> String>;

const ACTIONS: [&str; 6] = ["CREATE", "UPDATE", "DELETE", "LINK", "UNLINK", "VIEW"];
const TYPES: [&str; 7] = ["PROJECT", "ENTITY", "RELATIONSHIP", "FILE", "REPORT", "TEMPLATE", "SCHEDULE"];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A million typical entries of the development tenant over the last 30 days.
async fn fill(database: &Path, entries: usize) -> Duration {
    let store = Arc::new(SqliteStore::open(database).unwrap());
    let step_ms = 30 * 24 * 3_600_000 / entries as i64;
    let (clock, _) = stepping_clock(hours_ago(30 * 24), step_ms);
    let logger = Arc::new(AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock));
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (logger, next) = (logger.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= entries {
                        break;
                    }
                    let outcome = logger.log(typical(i, DEV_TENANT)).await;
                    assert!(matches!(outcome, Ok(LogOutcome::Stored(_))), "{outcome:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    took
}

/// Waits until the gateway's first seal run has written every checkpoint it will (the count stops
/// growing for two seconds); how many there are, and when the last one appeared.
fn wait_until_sealed(database: &Path) -> (i64, Instant) {
    let conn = rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (mut last, mut stable_since) = (-1, Instant::now());
    loop {
        let count: i64 = conn.query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0)).unwrap_or(-1);
        if count != last {
            (last, stable_since) = (count, Instant::now());
        } else if count > 0 && stable_since.elapsed() > Duration::from_secs(2) {
            return (count, stable_since);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops the kernel's page cache (root only); whether it did.
fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

struct Gateway {
    child: Child,
    url: String,
    key: String,
}

impl Gateway {
    /// The release gateway binary on `dir`; how long until its banner was printed whole.
    fn start(dir: &Path) -> (Gateway, Duration) {
        let started = Instant::now();
        let mut child = Command::new(auditline_tests::binary("auditline-local"))
            .args(["--port", "0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env_remove("DYNAMODB_ENDPOINT")
            .env_remove("AUDITLINE_SEAL_KEY_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gateway binary");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut key) = (None, None);
        while key.is_none() {
            let line = lines.next().expect("the banner").unwrap();
            if let Some(rest) = line.trim().strip_prefix("HTTP API") {
                url = rest.split_whitespace().next().map(|u| u.trim_end_matches("/audit/logs").to_owned());
            }
            if let Some(rest) = line.trim().strip_prefix("api key") {
                key = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        let took = started.elapsed();
        std::thread::spawn(move || for _ in lines {});
        (Gateway { child, url: url.unwrap(), key: key.unwrap() }, took)
    }

    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
