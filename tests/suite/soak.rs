//! A short soak in the test command (the long ones are in the bench script): the gateway binary
//! under concurrent writers, readers and live clients across three tenants, in memory and on the
//! DynamoDB API behind a fault proxy, with a share of live-feed posts failing (429/500). Nothing
//! acknowledged may be lost or stored twice, no client may miss what it was connected for, and none
//! may see a frame of another tenant or outside its scope.

use std::time::Duration;

use auditline_tests::fault_proxy::{FaultMix, FaultProxy};
use auditline_tests::soak::{SoakConfig, SoakReport, SoakStore, run};

fn check(report: &SoakReport) {
    println!("{report}");
    assert!(report.refused.is_empty(), "answers that were neither success nor retryable: {:?}", report.refused);
    assert!(report.acked > 0, "writes were acknowledged");
    assert_eq!(report.lost, 0, "acknowledged writes lost");
    assert_eq!(report.doubled, 0, "entries stored twice");
    assert_eq!(report.frames_forbidden, 0, "frames of another tenant or outside a client's scope");
    assert_eq!(report.stats_mismatch, 0, "stats disagree with the listing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_in_memory_with_feed_faults_loses_nothing_and_leaks_nothing() {
    let report = run(&SoakConfig {
        label: "in memory, feed posts failing".into(),
        duration: Duration::from_secs(15),
        writers: 6,
        readers: 2,
        clients: 40,
        store: SoakStore::Memory,
        // Bounded, so that the other tests running beside it keep their share of the two cores.
        rate_per_writer: 100,
        kill_at: None,
        batch_size: 5,
        push_faults_per_mille: 10,
    })
    .await;
    check(&report);
    assert_eq!(report.frames_missing, 0, "live clients missed entries they were connected for");
    assert_eq!(report.failed_writes, 0, "in memory, with faults only in the feed, every write succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_on_dynamodb_with_faults_loses_nothing_and_leaks_nothing() {
    let proxy = FaultProxy::start(&auditline_tests::dynamodb_endpoint(), FaultMix::standard(), 7).await;
    let report = run(&SoakConfig {
        label: "DynamoDB API, faults on".into(),
        duration: Duration::from_secs(20),
        writers: 4,
        readers: 1,
        clients: 12,
        store: SoakStore::DynamoDb(proxy.url.clone()),
        rate_per_writer: 10,
        kill_at: None,
        batch_size: 5,
        push_faults_per_mille: 50,
    })
    .await;
    check(&report);
    println!("faults injected: {:?}", proxy.counts);
}

/// The local default: the gateway on its SQLite file, sealing every minute, killed (SIGKILL) during
/// sustained ingest with live clients and started again on the same data directory. Every
/// acknowledged write is there once, none half-written (each verifies under its leaf), and each
/// tenant's chain — checkpoints sealed before and after the kill — verifies with `auditline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_on_sqlite_killed_and_restarted_loses_nothing_and_the_chain_verifies() {
    let report = run(&SoakConfig {
        label: "SQLite, killed at 6 s".into(),
        duration: Duration::from_secs(15),
        writers: 4,
        readers: 1,
        clients: 9,
        store: SoakStore::Sqlite,
        rate_per_writer: 50,
        kill_at: Some(Duration::from_secs(6)),
        batch_size: 5,
        push_faults_per_mille: 0,
    })
    .await;
    check(&report);
    assert_eq!(report.frames_missing, 0, "every expected entry arrived, as a frame or caught up over HTTP");
    assert!(report.reconnects > 0, "the clients were dropped by the kill and came back");
    assert_eq!(
        report.failed_writes, 0,
        "every write succeeded, retried with its key across the kill: {:?}",
        report.failed_why
    );
    assert_eq!(report.chains_verified, Some(3), "{:?}", report.chain_failures);
}

/// The gateway killed (SIGKILL) mid-run and started again on the same tables: writers retry with
/// their keys (a request the kill cut off is taken over once its claim is stale), live clients
/// reconnect and catch up over HTTP. Still nothing lost, doubled or leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_with_the_gateway_killed_and_restarted_loses_nothing() {
    let report = run(&SoakConfig {
        label: "DynamoDB API, killed at 6 s".into(),
        duration: Duration::from_secs(15),
        writers: 3,
        readers: 1,
        clients: 9,
        store: SoakStore::DynamoDb(auditline_tests::dynamodb_endpoint()),
        rate_per_writer: 10,
        kill_at: Some(Duration::from_secs(6)),
        batch_size: 5,
        push_faults_per_mille: 0,
    })
    .await;
    check(&report);
    assert_eq!(report.frames_missing, 0, "every expected entry arrived, as a frame or caught up over HTTP");
    assert!(report.reconnects > 0, "the clients were dropped by the kill and came back");
}
