//! The cold path at Lambda's sizes: each function's release binary under the Runtime API
//! emulator, initialised at full CPU (as Lambda's init phase runs), then moved — when it first asks
//! for an event — into a CPU quota standing for its memory size, and invoked against the local
//! DynamoDB API behind TLS (a test CA made at run time, trusted through `AWS_CA_BUNDLE`; the
//! terminator keeps connections open as AWS endpoints do). Beside each row, the floor: a
//! `lambda_runtime` hello built with the same profile. Then the same cold starts with TLS priming.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use auditline_tests::binary;
use auditline_tests::cpu_quota::CpuQuota;
use auditline_tests::feed::ManagementServer;
use auditline_tests::runtime::{Function, Outcome, RuntimeApi, function_environment};
use auditline_tests::tls::{TestCa, TlsTerminator};
use serde_json::{Value, json};

use super::lambda::{cases, peak_rss_kib};

/// CPU shares standing for 128 MB, 256 MB and a whole vCPU (1,769 MB).
const SIZES: [(u64, &str); 3] = [(7, "128 MB"), (14, "256 MB"), (100, "1,769 MB")];
const COLD_STARTS: usize = 3;
const FLOOR: &str = "cold-floor";
const WARM: usize = 20;
const WAIT: Duration = Duration::from_secs(60);

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// One cold start: spawned at full CPU, moved into `quota` when ready, invoked once.
struct Cold {
    init: Duration,
    first: Duration,
    function: Function,
}

async fn cold_start(name: &str, env: &[(&str, String)], quota: &CpuQuota, sample: &Value) -> Cold {
    let api = RuntimeApi::start().await;
    let function = if name == FLOOR { api.spawn(&binary(FLOOR), name, env) } else { api.spawn_function(name, env) };
    let ready = api.ready(WAIT).await.unwrap_or_else(|| panic!("{name} did not start: {:?}", api.init_error()));
    let init = ready - function.started;
    quota.enter(function.child.id());
    let started = Instant::now();
    let outcome = api.invoke(sample, WAIT).await;
    let first = started.elapsed();
    assert!(matches!(outcome, Some(Outcome::Response(_))), "{name}: {outcome:?}");
    Cold { init, first, function }
}

struct Row {
    init: Duration,
    first: Duration,
    warm_p50: Duration,
    warm_p99: Duration,
    rss_mb: f64,
}

/// The medians of init and first invocation over [`COLD_STARTS`] cold starts, and the last start.
async fn cold_starts(
    name: &str,
    env: &[(&str, String)],
    quota: &CpuQuota,
    sample: &Value,
) -> (Duration, Duration, Function) {
    let mut inits = Vec::new();
    let mut firsts = Vec::new();
    let mut last = None;
    for _ in 0..COLD_STARTS {
        let cold = cold_start(name, env, quota, sample).await;
        inits.push(cold.init);
        firsts.push(cold.first);
        last = Some(cold.function);
    }
    (median(inits), median(firsts), last.unwrap())
}

async fn measure(name: &str, env: &[(&str, String)], quota: &CpuQuota, sample: &Value) -> Row {
    let (init, first, function) = cold_starts(name, env, quota, sample).await;
    let mut warm = Vec::new();
    for _ in 0..WARM {
        let started = Instant::now();
        function.api.invoke(sample, WAIT).await;
        warm.push(started.elapsed());
    }
    warm.sort_unstable();
    Row {
        init,
        first,
        warm_p50: warm[WARM / 2],
        warm_p99: warm[WARM - 1],
        rss_mb: peak_rss_kib(function.child.id()) as f64 / 1024.0,
    }
}

pub async fn run(out: &mut String) {
    let ca = TestCa::create();
    let aws = TlsTerminator::start(&ca, &auditline_tests::dynamodb_endpoint()).await;
    let management = ManagementServer::start().await;
    let management_tls = TlsTerminator::start(&ca, &management.url).await;
    let bucket = auditline_tests::unique_name("bench-cold").to_lowercase().replace('_', "-");
    let archive = auditline::store::s3::S3Archive::for_local_endpoint(&auditline_tests::dynamodb_endpoint(), &bucket);
    archive.client().create_bucket().bucket(&bucket).send().await.expect("a bucket on the local S3 API");
    let kms = auditline_tests::kms::local_kms();
    let seal_key = auditline_tests::kms::p256_key(&kms).await;
    let mut env = function_environment(&[
        ("WEBSOCKET_ENDPOINT", management_tls.url.clone()),
        ("SEAL_KMS_KEY_ID", seal_key),
        ("KMS_ENDPOINT", aws.url.clone()),
        ("AUDIT_RETENTION_DAYS", "2".into()),
        ("ARCHIVE_BUCKET", bucket.clone()),
        ("S3_ENDPOINT", aws.url.clone()),
        // The functions trust Amazon's roots and AWS_CA_BUNDLE; SSL_CERT_FILE is what the SDK's
        // native-roots loader read before (with the machine's SSL_CERT_DIR, ~150 roots as on Lambda).
        ("AWS_CA_BUNDLE", ca.ca_file.display().to_string()),
        ("SSL_CERT_FILE", ca.ca_file.display().to_string()),
    ])
    .await;
    // Every AWS call goes through TLS, as on AWS.
    for (key, value) in env.iter_mut() {
        if *key == "DYNAMODB_ENDPOINT" {
            *value = aws.url.clone();
        }
    }
    let quotas: Vec<(CpuQuota, &str)> = SIZES
        .iter()
        .map(|(percent, size)| (CpuQuota::create(*percent).unwrap_or_else(|e| panic!("{e}")), *size))
        .collect();

    let floor_event = json!({"hello": "world"});
    let mut floor = Vec::new();
    for (quota, _) in &quotas {
        floor.push(measure(FLOOR, &[], quota, &floor_event).await);
    }
    writeln!(
        out,
        "Times in ms; init at full CPU, then the CPU share of the size; AWS endpoints over TLS (test CA).\n\
         Floor: the `cold-floor` hello (lambda_runtime, no SDK, same profile).\n"
    )
    .unwrap();
    writeln!(out, "| function | size | init (floor) | first invocation (floor) | warm p50 / p99 | peak RSS |").unwrap();
    writeln!(out, "|---|---|---|---|---|---|").unwrap();
    let line = |out: &mut String, name: &str, size: &str, row: &Row, floor: &Row| {
        writeln!(
            out,
            "| {name} | {size} | {} ({}) | {} ({}) | {} / {} | {:.1} MB |",
            ms(row.init),
            ms(floor.init),
            ms(row.first),
            ms(floor.first),
            ms(row.warm_p50),
            ms(row.warm_p99),
            row.rss_mb,
        )
        .unwrap();
    };
    for ((_, size), row) in quotas.iter().zip(&floor) {
        line(out, FLOOR, size, row, row);
    }
    let mut smallest = Vec::new();
    for (name, sample) in cases() {
        for ((quota, size), floor) in quotas.iter().zip(&floor) {
            let row = measure(name, &env, quota, &sample).await;
            line(out, name, size, &row, floor);
            if std::ptr::eq(quota, &quotas[0].0) {
                smallest.push((name, sample.clone(), row));
            }
        }
    }

    // TLS priming (PRIME_CONNECTIONS): the DynamoDB connection opened in init, at full CPU, instead
    // of in the first invocation at the size's share — each function at 128 MB, where it matters.
    let mut primed_env = env.clone();
    primed_env.push(("PRIME_CONNECTIONS", "true".into()));
    writeln!(
        out,
        "\nTLS priming (`PRIME_CONNECTIONS=true`) at 128 MB, median of {COLD_STARTS} cold starts: off → on.\n\n\
         | function | init (floor {}) | first invocation | handshakes per cold start |\n|---|---|---|---|",
        ms(floor[0].init)
    )
    .unwrap();
    for (name, sample, off) in &smallest {
        let before = aws.handshakes() + management_tls.handshakes();
        let (init, first, _) = cold_starts(name, &primed_env, &quotas[0].0, sample).await;
        let handshakes = (aws.handshakes() + management_tls.handshakes() - before) as f64 / COLD_STARTS as f64;
        writeln!(
            out,
            "| {name} | {} → {} | {} → {} | {handshakes:.0} |",
            ms(off.init),
            ms(init),
            ms(off.first),
            ms(first)
        )
        .unwrap();
    }

    // A first HTTP request through a cold authorizer and a cold route, at 128 MB: API Gateway
    // calls the authorizer, then the route; each starts (init) when it is first called.
    let (quota, _) = &quotas[0];
    let cases = cases();
    let authorizer_event = &cases.iter().find(|(n, _)| *n == "authorizer").unwrap().1;
    let route_event = &cases.iter().find(|(n, _)| *n == "list-logs").unwrap().1;
    let mut chains = Vec::new();
    for _ in 0..COLD_STARTS {
        let started = Instant::now();
        let authorizer = cold_start("authorizer", &env, quota, authorizer_event).await;
        let route = cold_start("list-logs", &env, quota, route_event).await;
        chains.push(started.elapsed());
        drop((authorizer, route));
    }
    writeln!(
        out,
        "\nFirst request through a cold authorizer then a cold `list-logs`, both at 128 MB: {} ms (median of {COLD_STARTS}). \
         TLS handshakes the terminators saw: {}.",
        ms(median(chains)),
        aws.handshakes() + management_tls.handshakes()
    )
    .unwrap();
}
