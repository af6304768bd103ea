//! The Lambda binaries: stripped release size, cold start (process start until it asks the Runtime
//! API for its first event) and peak RSS after serving its sample event, under the emulator.

use std::fmt::Write as _;
use std::time::Duration;

use auditline_tests::auth::{claims, hs256};
use auditline_tests::feed::ManagementServer;
use auditline_tests::runtime::{LAMBDA_BINARY, Outcome, RuntimeApi, function_environment};
use auditline_tests::{binary, event};
use serde_json::{Value, json};

const STARTS: usize = 15;
const WAIT: Duration = Duration::from_secs(20);

/// Each function with the event it is measured on.
pub fn cases() -> Vec<(&'static str, Value)> {
    let mut c = claims("user-789", "audit:read");
    c["tenant_id"] = json!("acme");
    let mut authorizer = event("authorizer-http.json");
    authorizer["headers"]["authorization"] = json!(format!("Bearer {}", hs256(&c)));
    vec![
        ("authorizer", authorizer),
        ("ingest", event("http-ingest.json")),
        ("list-logs", event("http-list-logs.json")),
        ("get-log", event("http-get-log.json")),
        ("entity-logs", event("http-entity-logs.json")),
        ("project-logs", event("http-project-logs.json")),
        ("stats", event("http-stats.json")),
        ("health", event("http-health.json")),
        ("ws-connect", event("ws-connect.json")),
        ("ws-disconnect", event("ws-disconnect.json")),
        ("stream-fanout", event("stream-batch.json")),
        ("list-checkpoints", event("http-checkpoints.json")),
        ("get-proof", event("http-proof.json")),
        ("list-keys", event("http-keys.json")),
        ("seal", event("seal-schedule.json")),
        ("export", event("http-export.json")),
        ("stream-archive", event("stream-batch.json")),
    ]
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub async fn run(out: &mut String) {
    let management = ManagementServer::start().await;
    let bucket = auditline_tests::unique_name("bench-lambda").to_lowercase().replace('_', "-");
    let archive = auditline::store::s3::S3Archive::for_local_endpoint(&auditline_tests::dynamodb_endpoint(), &bucket);
    archive.client().create_bucket().bucket(&bucket).send().await.expect("a bucket on the local S3 API");
    let kms = auditline_tests::kms::local_kms();
    let seal_key = auditline_tests::kms::p256_key(&kms).await;
    let env = function_environment(&[
        ("WEBSOCKET_ENDPOINT", management.url.clone()),
        ("SEAL_KMS_KEY_ID", seal_key),
        ("KMS_ENDPOINT", auditline_tests::dynamodb_endpoint()),
        // A seal's first run looks back over the retention, one Query an hour: two days keeps
        // the measured run to a realistic size (later runs read only the hours since the last).
        ("AUDIT_RETENTION_DAYS", "2".into()),
        ("ARCHIVE_BUCKET", bucket.clone()),
        ("S3_ENDPOINT", auditline_tests::dynamodb_endpoint()),
    ])
    .await;
    writeln!(out, "| function | stripped size | cold start p50 | cold start max | first invocation | peak RSS |")
        .unwrap();
    writeln!(out, "|---|---|---|---|---|---|").unwrap();
    for (name, sample) in cases() {
        let path = binary(LAMBDA_BINARY);
        let size = std::fs::metadata(&path).unwrap().len() as f64 / (1024.0 * 1024.0);
        let mut starts = Vec::new();
        for _ in 0..STARTS {
            let api = RuntimeApi::start().await;
            let f = api.spawn(&path, name, &env);
            let ready = api.ready(WAIT).await.expect("the function starts");
            starts.push(ready - f.started);
        }
        starts.sort_unstable();
        let api = RuntimeApi::start().await;
        let f = api.spawn(&path, name, &env);
        api.ready(WAIT).await.expect("the function starts");
        let first = std::time::Instant::now();
        let outcome = api.invoke(&sample, WAIT).await;
        let first = first.elapsed();
        assert!(matches!(outcome, Some(Outcome::Response(_))), "{name}: {outcome:?}");
        for _ in 0..5 {
            api.invoke(&sample, WAIT).await;
        }
        let rss = peak_rss_kib(f.child.id()) as f64 / 1024.0;
        writeln!(
            out,
            "| {name} | {size:.2} MB | {} | {} | {} | {rss:.1} MB |",
            ms(starts[STARTS / 2]),
            ms(starts[STARTS - 1]),
            ms(first)
        )
        .unwrap();
    }
}
