//! The archive consumer: time and bytes per batch of 100 typical entries, to a directory (keys in
//! memory) and to the local S3 API (keys in a table on the local DynamoDB API), with the DynamoDB
//! requests its keys cost; the CPU time of sealing one entry; and what the keys cost on AWS.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use auditline::apigw::stream::{handle_archive, insert_event};
use auditline::archive::shred::{ArchiveKeys, EntryKeys, FieldKey, KeySlot, MemoryArchiveKeys, seal, sealed_fields};
use auditline::archive::{ArchiveSink, DirectorySink};
use auditline::store::dynamo::DynamoArchiveKeys;
use auditline::store::dynamo::tables::ARCHIVE_KEYS;
use auditline::store::s3::S3Archive;
use auditline_tests::{fresh_table, local_client, unique_name};

use super::export::typical_entries;

const ENTRIES: usize = 1000;

pub async fn run(out: &mut String) {
    let (_, entries) = typical_entries(ENTRIES).await;
    writeln!(out, "### Archive consumer, batches of 100 typical entries, erasable values sealed\n").unwrap();
    writeln!(
        out,
        "| sink (keys) | time per batch (mean of {}) | gzip'd bytes per batch | bytes per entry | key requests per entry |",
        ENTRIES / 100
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|").unwrap();
    let root = std::env::temp_dir().join(unique_name("bench-archive"));
    let directory = DirectorySink { root: root.clone() };
    let memory_keys = MemoryArchiveKeys::default();
    let bucket = unique_name("bench-archive").to_lowercase().replace('_', "-");
    let s3 = S3Archive::for_local_endpoint(&auditline_tests::dynamodb_endpoint(), &bucket);
    s3.client().create_bucket().bucket(&bucket).send().await.expect("bucket");
    let (client, counter) = local_client();
    let table = fresh_table(&client, &ARCHIVE_KEYS, "bench-archive-keys").await;
    let dynamo_keys = DynamoArchiveKeys::new(client, table, 2557);
    let runs: [(&str, &dyn ArchiveSink, &dyn ArchiveKeys); 2] =
        [("directory (memory)", &directory, &memory_keys), ("S3 API (DynamoDB API; both moto)", &s3, &dynamo_keys)];
    for (name, sink, keys) in runs {
        counter.reset();
        let (mut elapsed, mut bytes) = (Duration::ZERO, 0usize);
        for (i, batch) in entries.chunks(100).enumerate() {
            let event = insert_event(batch, 1 + (i * 100) as u64);
            let started = Instant::now();
            let (response, report) = handle_archive(event, sink, keys).await;
            elapsed += started.elapsed();
            assert!(response.batch_item_failures.is_empty());
            bytes += report.bytes;
        }
        let batches = ENTRIES / 100;
        let requests = if name.starts_with("S3") {
            format!("{:.2}", counter.get() as f64 / ENTRIES as f64)
        } else {
            "—".to_owned()
        };
        writeln!(
            out,
            "| {name} | {:.1} ms | {} | {:.0} | {requests} |",
            elapsed.as_secs_f64() * 1e3 / batches as f64,
            bytes / batches,
            bytes as f64 / ENTRIES as f64
        )
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(root);

    // Sealing alone (AES-256-GCM per field, the commitments, the line's JSON), against the same
    // entries' plain JSON.
    let slots: Vec<EntryKeys> = entries
        .iter()
        .map(|e| sealed_fields(e).into_iter().map(|f| (f.to_owned(), KeySlot::Key(FieldKey::random()))).collect())
        .collect();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        for (e, k) in entries.iter().zip(&slots) {
            std::hint::black_box(serde_json::to_vec(&seal(e, k).unwrap()).unwrap());
        }
    }
    let sealed = started.elapsed().as_secs_f64() * 1e6 / (rounds * ENTRIES) as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        for e in &entries {
            std::hint::black_box(serde_json::to_vec(e).unwrap());
        }
    }
    let plain = started.elapsed().as_secs_f64() * 1e6 / (rounds * ENTRIES) as f64;
    let fields: usize = slots.iter().map(EntryKeys::len).sum();
    writeln!(
        out,
        "\nSealing one typical entry ({:.1} fields sealed on average) and writing its line: {sealed:.1} µs, \
         against {plain:.1} µs for its plain JSON.",
        fields as f64 / ENTRIES as f64
    )
    .unwrap();
}
