//! Integrity: sealing a period of 100,000 entries (time, DynamoDB requests) and one entry's proof
//! (bytes, reads), on the in-memory store and on the local DynamoDB API. (The verifier's throughput
//! is measured in the `proofs` section.)

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditline::domain::AuditLogEntry;
use auditline::integrity::signing::{LocalSigner, Signer};
use auditline::seal::{ProofOutcome, SealSettings, SealStore, Sealer, prove};
use auditline::store::dynamo::tables::{CHECKPOINTS, COUNTERS, ENTRIES as ENTRIES_SPEC, PROOFS};
use auditline::store::dynamo::{SealTables, entry_item};
use auditline::store::{DynamoStore, MemoryStore};
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::{fixed_clock, fresh_table, local_client, stepping_clock};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::{DateTime, DurationRound, Utc};
use futures::StreamExt;

use super::store::{item_size, typical};

const ENTRIES: usize = 100_000;
/// Proofs asked for, spread over the period.
const PROOFS_ASKED: usize = 200;

/// The start of the hour that ends three hours ago: closed, and well inside the sealer's lookback.
fn period_start() -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::hours(4)).duration_trunc(chrono::Duration::hours(1)).unwrap()
}

fn sealer(store: Arc<dyn SealStore>, signer: Arc<LocalSigner>) -> Sealer {
    Sealer::new(store, signer, SealSettings { lookback_hours: 6, ..SealSettings::default() })
}

/// ENTRIES entries of tenant acme in one hour (36 ms apart), in an in-memory store.
async fn one_full_hour() -> (Arc<MemoryStore>, Vec<AuditLogEntry>) {
    let store = Arc::new(MemoryStore::new());
    let step = 3_600_000 / ENTRIES as i64;
    let (clock, _) = stepping_clock(period_start(), step);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    let mut entries = Vec::with_capacity(ENTRIES);
    for i in 0..ENTRIES {
        match logger.log(typical(i, "acme")).await.expect("log") {
            LogOutcome::Stored(e) => entries.push(e),
            LogOutcome::Disabled => unreachable!(),
        }
    }
    (store, entries)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

pub async fn run(out: &mut String) {
    let signer = Arc::new(LocalSigner::generate().unwrap());
    let (memory, entries) = one_full_hour().await;

    writeln!(out, "### Seal of one period of {ENTRIES} entries\n").unwrap();
    writeln!(out, "| store | seal time | DynamoDB requests | estimated read capacity |\n|---|---|---|---|").unwrap();
    let started = Instant::now();
    let report = sealer(memory.clone(), signer.clone()).run(Utc::now()).await.expect("seal");
    assert_eq!(report.entries, ENTRIES as u64);
    writeln!(out, "| in memory | {} | – | – |", ms(started.elapsed())).unwrap();

    // The same entries in DynamoDB, loaded in batches (the seal's reads are what is measured), and
    // one more written through the logger so that the hour's counter item names the tenant.
    let (client, requests) = local_client();
    let entries_table = fresh_table(&client, &ENTRIES_SPEC, "entries").await;
    let tables = SealTables {
        checkpoints: fresh_table(&client, &CHECKPOINTS, "checkpoints").await,
        proofs: fresh_table(&client, &PROOFS, "proofs").await,
        retention_days: 90,
    };
    let counters = fresh_table(&client, &COUNTERS, "counters").await;
    load(&client, &entries_table, &entries).await;
    let dynamo = Arc::new(DynamoStore::new(client, entries_table, counters).with_seal_tables(tables));
    let last = entries.last().unwrap().timestamp + chrono::Duration::milliseconds(1);
    let logger = AuditLogger::with_clock(dynamo.clone(), AuditSettings::default(), fixed_clock(last));
    logger.log(typical(ENTRIES, "acme")).await.expect("log");
    let stored_bytes: usize = entries.iter().map(|e| item_size(&entry_item(e).unwrap())).sum();
    requests.reset();
    let started = Instant::now();
    let report = sealer(dynamo.clone(), signer.clone()).run(Utc::now()).await.expect("seal");
    let elapsed = started.elapsed();
    assert_eq!(report.entries, ENTRIES as u64 + 1);
    // A strongly consistent Query is charged for the items it reads whole, whatever it projects.
    let rcu = stored_bytes.div_ceil(4096);
    writeln!(
        out,
        "| DynamoDB API (moto) | {} | {} | ≈ {rcu} RCU ({:.0} MB of items read, strongly consistent) |",
        ms(elapsed),
        requests.get(),
        stored_bytes as f64 / 1e6
    )
    .unwrap();

    // Proofs: bytes of the route's JSON, and reads per proof.
    let settings = SealSettings::default();
    let mut bytes = Vec::new();
    let mut reads = Vec::new();
    let mut path_lengths = Vec::new();
    for k in 0..PROOFS_ASKED {
        let entry = entries[k * (ENTRIES / PROOFS_ASKED) + k % 7].clone();
        requests.reset();
        let ProofOutcome::Proven(proof) = prove(dynamo.as_ref(), entry, &settings).await.expect("proof") else {
            panic!("sealed");
        };
        reads.push(requests.get());
        path_lengths.push(proof.proof.len());
        bytes.push(serde_json::to_vec(&proof).unwrap().len());
        assert_eq!(proof.verify(signer.public_key_der()), Ok(vec![]));
    }
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let reads: Vec<usize> = reads.into_iter().map(|r| r as usize).collect();
    writeln!(out, "\n### One entry's proof in that period ({PROOFS_ASKED} entries across it)\n").unwrap();
    writeln!(out, "| figure | mean | max |\n|---|---|---|").unwrap();
    writeln!(out, "| DynamoDB requests per proof | {:.1} | {} |", mean(&reads), reads.iter().max().unwrap()).unwrap();
    writeln!(out, "| hashes in the audit path | {:.1} | {} |", mean(&path_lengths), path_lengths.iter().max().unwrap())
        .unwrap();
    writeln!(
        out,
        "| proof JSON (entry, path, checkpoint) | {:.0} bytes | {} bytes |",
        mean(&bytes),
        bytes.iter().max().unwrap()
    )
    .unwrap();

    // The verifier's throughput is the `proofs` section's.
}

/// Puts `entries` into `table`, 25 to a BatchWriteItem, 8 requests at a time.
pub(super) async fn load(client: &aws_sdk_dynamodb::Client, table: &str, entries: &[AuditLogEntry]) {
    let batches: Vec<Vec<WriteRequest>> = entries
        .chunks(25)
        .map(|chunk| {
            chunk
                .iter()
                .map(|e| {
                    let put = PutRequest::builder().set_item(Some(entry_item(e).unwrap())).build().unwrap();
                    WriteRequest::builder().put_request(put).build()
                })
                .collect()
        })
        .collect();
    futures::stream::iter(batches)
        .map(|batch| async move {
            let out = client.batch_write_item().request_items(table, batch).send().await.expect("batch write");
            assert!(out.unprocessed_items.unwrap_or_default().values().all(Vec::is_empty), "all written");
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}
