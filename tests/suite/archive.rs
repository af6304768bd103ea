//! The archive consumer against moto's S3: objects keyed by tenant, date and hour hold exactly the
//! batch's entries; a redelivered batch rewrites the same objects (no second copy); a batch Lambda
//! splits in two still leaves every entry in exactly one object; a failure is reported by the
//! batch's first record, with nothing half-done; and the directory sink writes the same layout.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use auditline::apigw::stream::{handle_archive, insert_event};
use auditline::archive::shred::{ArchiveKeys, MemoryArchiveKeys};
use auditline::archive::{ArchiveSink, DirectorySink, open_object};
use auditline::domain::{AuditAction, AuditLogEntry, EntityType};
use auditline::store::MemoryStore;
use auditline::store::s3::S3Archive;
use auditline::{AuditLogger, AuditSettings};
use auditline_tests::{dynamodb_endpoint, fresh_dynamo_archive_keys, new_entry, stepping_clock, tenant, unique_name};
use chrono::{Duration, DurationRound, Utc};

/// 30 entries of two tenants, interleaved, across two hours.
async fn entries() -> Vec<AuditLogEntry> {
    let start = (Utc::now() - Duration::hours(5)).duration_trunc(Duration::hours(1)).unwrap() + Duration::minutes(50);
    let (clock, _) = stepping_clock(start, 40_000);
    let logger = AuditLogger::with_clock(Arc::new(MemoryStore::new()), AuditSettings::default(), clock);
    let mut out = Vec::new();
    for i in 0..30 {
        let t = if i % 3 == 0 { "globex" } else { "acme" };
        let request = new_entry(&tenant(t), AuditAction::ALL[i % 6], EntityType::File, &format!("f-{i}"), None, None);
        out.push(logger.log(request).await.unwrap().entry().cloned().unwrap());
    }
    out
}

async fn bucket() -> (S3Archive, String) {
    let name = unique_name("archive").to_lowercase().replace('_', "-");
    let sink = S3Archive::for_local_endpoint(&dynamodb_endpoint(), &name);
    sink.client().create_bucket().bucket(&name).send().await.expect("a bucket on the local S3 API");
    (sink, name)
}

/// Every current object: key → its entries, opened with `keys`.
async fn objects(sink: &S3Archive, bucket: &str, keys: &dyn ArchiveKeys) -> BTreeMap<String, Vec<AuditLogEntry>> {
    let listed = sink.client().list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = sink.client().get_object().bucket(bucket).key(&key).send().await.unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        out.insert(key, open_object(&bytes, keys).await.expect("an archive object"));
    }
    out
}

fn gunzip_text(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).expect("gzip");
    text
}

/// Each entry in exactly one object, and each object in the partition of its entries.
fn assert_exactly_once(objects: &BTreeMap<String, Vec<AuditLogEntry>>, expected: &[AuditLogEntry]) {
    // Opened, an entry has its values back, with explicit salts where the stored one has a seed.
    let as_stored = |e: &AuditLogEntry| (e.committed_fields(), e.integrity.leaf_hash, e.expires_at);
    let mut seen: Vec<&AuditLogEntry> = objects.values().flatten().collect();
    seen.sort_by_key(|e| e.id);
    let mut want: Vec<&AuditLogEntry> = expected.iter().collect();
    want.sort_by_key(|e| e.id);
    assert_eq!(
        seen.iter().map(|e| as_stored(e)).collect::<Vec<_>>(),
        want.iter().map(|e| as_stored(e)).collect::<Vec<_>>(),
        "every entry once, as stored"
    );
    for e in &seen {
        assert!(e.integrity.verify(&e.committed_fields()).unwrap().is_empty(), "{} opens to its leaf", e.id);
    }
    for (key, entries) in objects {
        for e in entries {
            let partition = format!(
                "tenant={}/date={}/hour={}/",
                e.tenant_id,
                e.timestamp.format("%Y-%m-%d"),
                e.timestamp.format("%H")
            );
            assert!(key.starts_with(&partition), "{key} holds an entry of {partition}");
        }
        assert!(key.ends_with(".jsonl.gz"));
    }
}

#[tokio::test]
async fn batches_land_in_hive_partitions_once_even_when_redelivered_or_split() {
    let (sink, name) = bucket().await;
    let keys = fresh_dynamo_archive_keys().await;
    let all = entries().await;
    let event = insert_event(&all, 1000);
    let (response, report) = handle_archive(event.clone(), &sink, &keys).await;
    assert!(response.batch_item_failures.is_empty());
    let first = objects(&sink, &name, &keys).await;
    assert_eq!(first.len(), 4, "two tenants × two hours: {:?}", first.keys().collect::<Vec<_>>());
    assert_exactly_once(&first, &all);
    assert_eq!((report.entries, report.objects), (30, 4));
    // The entries of an object keep the stream's order.
    for entries in first.values() {
        assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
    }

    // The same batch again (a retry after a timeout): the same objects, nothing added.
    handle_archive(event, &sink, &keys).await;
    assert_eq!(objects(&sink, &name, &keys).await, first, "a redelivered batch rewrites the same objects");

    // Split in two, as Lambda bisects a failing batch: still each entry once.
    handle_archive(insert_event(&all[..13], 1000), &sink, &keys).await;
    handle_archive(insert_event(&all[13..], 1013), &sink, &keys).await;
    assert_exactly_once(&objects(&sink, &name, &keys).await, &all);
}

#[tokio::test]
async fn failures_are_reported_by_the_first_record_and_leave_nothing_half_done() {
    let all = entries().await;
    let keys = MemoryArchiveKeys::default();
    // A bucket that does not exist: every write fails; the batch is retried from its first record.
    let missing = S3Archive::for_local_endpoint(&dynamodb_endpoint(), "no-such-bucket-auditline");
    let (response, report) = handle_archive(insert_event(&all, 500), &missing, &keys).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [Some("500".to_owned())]);
    assert!(report.retried);

    // A record that is not an entry: reported, and nothing of the batch written.
    let (sink, name) = bucket().await;
    let mut event = insert_event(&all[..5], 700);
    event.records[2].change.new_image.remove("action");
    let (response, _) = handle_archive(event, &sink, &keys).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some("700"));
    assert!(objects(&sink, &name, &keys).await.is_empty(), "no object from a batch that failed to read");

    // Keys that cannot be issued (a table that does not exist): retried, nothing written in the clear.
    let (client, _) = auditline_tests::local_client();
    let no_table = auditline::store::dynamo::DynamoArchiveKeys::new(client, "no-such-table-auditline", 30);
    let (response, report) = handle_archive(insert_event(&all[..5], 800), &sink, &no_table).await;
    assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some("800"));
    assert!(report.retried);
    assert!(objects(&sink, &name, &keys).await.is_empty(), "no object without its keys");
}

#[tokio::test]
async fn the_directory_sink_writes_the_same_layout() {
    let root = std::env::temp_dir().join(unique_name("archive-dir"));
    let sink = DirectorySink { root: root.clone() };
    let keys = MemoryArchiveKeys::default();
    let all = entries().await;
    let (response, _) = handle_archive(insert_event(&all, 42), &sink, &keys).await;
    assert!(response.batch_item_failures.is_empty());
    let mut found = BTreeMap::new();
    for tenant_dir in std::fs::read_dir(&root).unwrap() {
        for date_dir in std::fs::read_dir(tenant_dir.unwrap().path()).unwrap() {
            for hour_dir in std::fs::read_dir(date_dir.unwrap().path()).unwrap() {
                for file in std::fs::read_dir(hour_dir.unwrap().path()).unwrap() {
                    let path = file.unwrap().path();
                    let key = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
                    found.insert(key, open_object(&std::fs::read(&path).unwrap(), &keys).await.unwrap());
                }
            }
        }
    }
    assert_eq!(found.len(), 4);
    assert_exactly_once(&found, &all);
    // Rewriting an object replaces it whole.
    sink.put("tenant=acme/date=2026-01-01/hour=00/1.jsonl.gz", vec![1, 2, 3]).await.unwrap();
    sink.put("tenant=acme/date=2026-01-01/hour=00/1.jsonl.gz", vec![4]).await.unwrap();
    assert_eq!(std::fs::read(root.join("tenant=acme/date=2026-01-01/hour=00/1.jsonl.gz")).unwrap(), [4]);
}

/// The gateway on SQLite with `--archive-dir`: what it stores is archived sealed, and an erasure
/// over HTTP shreds the archived copy (the keys are in its data file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_gateway_archives_what_it_stores_sealed_and_an_erasure_shreds_it() {
    use auditline_local::{ArchiveTarget, Limits, Options, SealOptions, Storage, start};
    use auditline_tests::client::http;
    let root = std::env::temp_dir().join(unique_name("gateway-archive"));
    let data = auditline_tests::fresh_dir("gateway-archive-data");
    let options = Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        storage: Storage::Sqlite { dir: data.clone() },
        config: auditline::Config::from_lookup(|_| None).unwrap(),
        limits: Limits::default(),
        seal: SealOptions::default(),
        archive: Some(ArchiveTarget::Directory(root.clone())),
        push_faults_per_mille: 0,
        streams: Default::default(),
    };
    let g = start(options).await.expect("the gateway starts");
    let token = format!("Bearer {}", g.credentials.token.as_ref().expect("a dev token").expose());
    let auth = [("authorization", token.as_str())];
    let batch: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({"action": "CREATE", "entity_type": "FILE", "entity_id": format!("f-{i}"),
                "changes": {"name": format!("Secret Name {i}")}})
        })
        .collect();
    let created = http("POST", &format!("{}/audit/logs", g.http_url()), &auth, Some(&serde_json::json!(batch))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let posted: Vec<String> = created.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entry"]["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = root.join(format!("tenant={}", auditline_local::DEV_TENANT));
    let started = std::time::Instant::now();
    let files = loop {
        let files: Vec<std::path::PathBuf> = walk(&dir);
        let lines: usize = files.iter().map(|f| gunzip_text(&std::fs::read(f).unwrap()).lines().count()).sum();
        if lines >= 5 {
            break files;
        }
        // A guard against waiting forever, not a measure of speed.
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "archived: {files:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let raw: String = files.iter().map(|f| gunzip_text(&std::fs::read(f).unwrap())).collect();
    // The token's subject is each entry's user_id.
    assert!(!raw.contains("developer") && !raw.contains("Secret Name"), "values are sealed: {raw}");

    let erased = http(
        "POST",
        &format!("{}/audit/logs/{}/erasure", g.http_url(), posted[2]),
        &auth,
        Some(&serde_json::json!({"fields": ["user_id", "changes"], "reason": "GDPR art. 17"})),
    )
    .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let record: uuid::Uuid = erased.body["record"]["id"].as_str().unwrap().parse().unwrap();
    g.shutdown().await;

    let store = auditline::store::SqliteStore::open(&data.join(auditline::store::sqlite::DATABASE_FILE)).unwrap();
    let mut archived = Vec::new();
    for f in walk(&dir) {
        archived.extend(open_object(&std::fs::read(&f).unwrap(), &store).await.unwrap());
    }
    let ids: Vec<String> = archived.iter().map(|e| e.id.to_string()).collect();
    for id in &posted {
        assert!(ids.contains(id), "{id} archived");
    }
    for e in &archived {
        if e.id.to_string() == posted[2] {
            assert_eq!((e.user_id.as_deref(), e.changes.as_ref()), (None, None));
            assert_eq!(e.integrity.erased_by.get("changes"), Some(&record));
        } else if posted.contains(&e.id.to_string()) {
            assert_eq!(e.user_id.as_deref(), Some("developer"), "readable with its key");
            assert!(e.changes.as_ref().is_some_and(|c| c["name"].as_str().unwrap().starts_with("Secret Name")));
        }
        assert!(e.integrity.verify(&e.committed_fields()).is_ok());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return vec![] };
    let mut out = Vec::new();
    for entry in read {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "gz") {
            out.push(path);
        }
    }
    out
}
