//! Checkpoints outside the tables (issue 23): every new checkpoint published once to an Object
//! Lock bucket (moto's S3), a `{"type":"checkpoint"}` frame to the tenant's `audit:read`
//! connections (through the real Management API client), a sink that fails never undoing a seal and
//! being caught up later; and `GET /audit/keys` answered from KMS (moto's), whatever the tables hold.

use std::sync::Arc;

use auditline::apigw::http::Route;
use auditline::auth::{AuthMethod, Caller};
use auditline::backend::BackendError;
use auditline::domain::{AuditAction, EntityType, TenantId};
use auditline::integrity::checkpoint::Checkpoint;
use auditline::integrity::signing::{self, LocalSigner, Signer};
use auditline::kms::{KmsKeys, KmsSigner};
use auditline::realtime::checkpoints::CheckpointFeed;
use auditline::realtime::{ConnectionFilters, ConnectionStore, MemoryConnections, WebSocketConnectionInfo};
use auditline::seal::publish::publication_key;
use auditline::seal::{CheckpointSink, SealSettings, SealStore, Sealer};
use auditline::store::MemoryStore;
use auditline::store::s3::S3Checkpoints;
use auditline::{AuditLogger, AuditSettings, LogOutcome};
use auditline_tests::feed::ManagementServer;
use auditline_tests::http::{call, dynamo_api, sample};
use auditline_tests::kms::{local_kms, p256_key};
use auditline_tests::{dynamodb_endpoint, new_entry, stepping_clock, tenant, unique_name};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
};
use chrono::{Duration, DurationRound, Utc};
use serde_json::{Value, json};

async fn sealed_store(t: &TenantId, hours: i64) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let start = (Utc::now() - Duration::hours(hours + 1)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::minutes(1), 20 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..hours * 3 {
        let request = new_entry(t, AuditAction::Create, EntityType::File, &format!("f-{i}"), None, None);
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
    store
}

fn sealer(store: &Arc<MemoryStore>, key: Arc<LocalSigner>) -> Sealer {
    Sealer::new(store.clone(), key, SealSettings { lookback_hours: 12, ..SealSettings::default() })
}

/// A sink that refuses everything (a bucket that is down).
struct Down;

#[async_trait::async_trait]
impl CheckpointSink for Down {
    fn name(&self) -> &str {
        "down"
    }
    async fn publish(&self, _: &Checkpoint) -> Result<(), BackendError> {
        Err(BackendError::Unavailable("the bucket does not answer".into()))
    }
}

#[tokio::test]
async fn every_checkpoint_is_published_once_to_an_object_lock_bucket_and_a_sink_down_is_caught_up() {
    let acme = tenant("acme");
    let store = sealed_store(&acme, 3).await;
    let key = Arc::new(LocalSigner::generate().unwrap());
    // A sink that is down: the seal goes on, the checkpoints are not marked published.
    let report = sealer(&store, key.clone()).with_sinks(vec![Arc::new(Down)]).run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.publish_failures), (3, 1), "{report:?}");
    assert_eq!(store.seal_state(&acme).await.unwrap().published, None);

    // The bucket, locked in compliance mode as the template makes it.
    let bucket = unique_name("checkpoints").to_lowercase();
    let sink = S3Checkpoints::for_local_endpoint(&dynamodb_endpoint(), &bucket);
    let s3 = s3_client();
    s3.create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send().await.expect("a locked bucket");
    let retention = DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(1).build();
    s3.put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(ObjectLockRule::builder().default_retention(retention).build())
                .build(),
        )
        .send()
        .await
        .expect("compliance mode");
    // The next run, with the bucket up, publishes the three it missed (nothing new was sealed).
    let sink = Arc::new(sink);
    let with_bucket = sealer(&store, key.clone()).with_sinks(vec![sink.clone()]);
    let report = with_bucket.run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.publish_failures), (0, 0), "{report:?}");
    let chain = store.checkpoints(&acme, None, None, 100).await.unwrap();
    let listed = s3.list_objects_v2().bucket(&bucket).prefix("checkpoints/tenant=acme/").send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert_eq!(
        keys,
        chain.iter().rev().map(publication_key).collect::<Vec<_>>(),
        "one object per checkpoint, newest first"
    );
    assert_eq!(sink.latest(&acme).await.unwrap().as_ref(), chain.last(), "the anchor: one listing, one read");
    for c in &chain {
        let object = s3.get_object().bucket(&bucket).key(publication_key(c)).send().await.unwrap();
        let body: Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
        assert_eq!(body["checkpoint"], serde_json::to_value(c).unwrap());
        assert_eq!(body["note"].as_str(), c.note().as_deref());
    }
    assert_eq!(
        store.seal_state(&acme).await.unwrap().published.map(auditline::domain::time::format_timestamp).as_deref(),
        Some(chain[2].body.end.as_str())
    );
    // Published again (a retry after a lost answer): the object is not replaced.
    sink.publish(&chain[0]).await.expect("a second publication is not an error");
    let versions = s3.list_object_versions().bucket(&bucket).prefix(publication_key(&chain[0])).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "never a second version of a checkpoint");
    // Compliance mode: the version cannot be deleted before its retention ends.
    let version = versions.versions()[0].version_id().unwrap().to_owned();
    let deleted = s3.delete_object().bucket(&bucket).key(publication_key(&chain[0])).version_id(version).send().await;
    assert!(deleted.is_err(), "a locked checkpoint cannot be deleted");
    // Another checkpoint for a period already published (a fork): refused, with an alarm.
    let mut rival = chain[1].clone();
    rival.body.root = auditline::integrity::Hash::of(&[b"another history"]);
    let forked = sink.publish(&rival).await.unwrap_err().to_string();
    assert!(forked.contains("the chain forked"), "{forked}");
}

fn s3_client() -> aws_sdk_s3::Client {
    auditline::store::s3::S3Archive::for_local_endpoint(&dynamodb_endpoint(), "unused").client().clone()
}

fn connection(id: &str, tenant: &str, scopes: &[&str]) -> WebSocketConnectionInfo {
    let caller = Caller {
        tenant_id: TenantId::parse(tenant).unwrap(),
        user_id: Some("u".into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        auth_method: AuthMethod::Jwt,
        credential_expires_at: None,
    };
    WebSocketConnectionInfo::new(id, &caller, ConnectionFilters::default(), Utc::now())
}

#[tokio::test]
async fn new_checkpoints_reach_the_tenants_audit_read_connections_on_the_live_feed() {
    let acme = tenant("acme");
    let store = sealed_store(&acme, 3).await;
    let connections = Arc::new(MemoryConnections::new());
    for c in [
        connection("reader", "acme", &["audit:read"]),
        connection("reports-only", "acme", &["reports:read"]),
        connection("other-tenant", "globex", &["audit:read"]),
    ] {
        connections.put(&c).await.unwrap();
    }
    let server = ManagementServer::start().await;
    let feed = Arc::new(CheckpointFeed { connections: connections.clone(), pusher: Arc::new(server.pusher()) });
    let key = Arc::new(LocalSigner::generate().unwrap());
    sealer(&store, key).with_sinks(vec![feed]).run(Utc::now()).await.unwrap();
    let chain = store.checkpoints(&acme, None, None, 100).await.unwrap();
    let delivered = server.delivered();
    let frames = &delivered["reader"];
    assert_eq!(frames.len(), chain.len(), "one frame per new checkpoint");
    for (frame, c) in frames.iter().zip(&chain) {
        assert_eq!(frame["type"], json!("checkpoint"));
        assert_eq!(frame["checkpoint"], serde_json::to_value(c).unwrap());
        assert_eq!(frame["note"].as_str(), c.note().as_deref());
    }
    assert!(!delivered.contains_key("reports-only"), "a subset reader does not learn the tenant's counts");
    assert!(!delivered.contains_key("other-tenant"));
}

#[tokio::test]
async fn the_keys_route_answers_from_kms_with_windows_whatever_the_table_holds() {
    let kms = local_kms();
    let (old, current) = (p256_key(&kms).await, p256_key(&kms).await);
    let rotation = Utc::now() - Duration::days(30);
    let (mut api, _) = dynamo_api().await;
    api.keys = Arc::new(KmsKeys::new(kms.clone(), Some(current.clone()), vec![(old.clone(), rotation)]));
    // Someone with table access adds a key the old way (an item in the checkpoints table).
    let rogue = LocalSigner::generate().unwrap();
    let (client, _) = auditline_tests::local_client();
    let tables = client.list_tables().send().await.unwrap();
    for table in tables.table_names().iter().filter(|t| t.starts_with("checkpoints")) {
        client
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S("KEYS".into()))
            .item("sk", AttributeValue::S(rogue.key_id().into()))
            .item("key_id", AttributeValue::S(rogue.key_id().into()))
            .item("public_key_pem", AttributeValue::S(signing::public_key_pem(rogue.public_key_der())))
            .send()
            .await
            .unwrap();
    }
    let anonymous = sample("http-keys.json", |e| {
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
    });
    let reply = call(&api, Route::Keys, &anonymous).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let old_id = KmsSigner::new(kms.clone(), &old).await.unwrap().key_id().to_owned();
    let current_id = KmsSigner::new(kms.clone(), &current).await.unwrap().key_id().to_owned();
    let keys = reply.body["keys"].as_array().unwrap();
    let ids: Vec<&str> = keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [old_id.as_str(), current_id.as_str()], "KMS's keys, oldest first; never the table's");
    let until = auditline::domain::time::format_timestamp(rotation);
    assert_eq!(
        (keys[0]["valid_until"].as_str(), keys[1]["valid_from"].as_str()),
        (Some(until.as_str()), Some(until.as_str()))
    );
    assert!(keys[1].get("valid_until").is_none(), "the current key's window is open");
    // Each PEM is the key its id names.
    for k in keys {
        let der = signing::pem_der(k["public_key_pem"].as_str().unwrap(), "PUBLIC KEY").unwrap();
        assert_eq!(signing::key_id(&der), k["key_id"].as_str().unwrap());
    }
}

/// The seal on DynamoDB with its Object Lock bucket, and what a table writer does to it.
struct Sealed {
    client: aws_sdk_dynamodb::Client,
    counters: String,
    checkpoints: String,
    store: Arc<auditline::store::DynamoStore>,
    sealer: Sealer,
}

async fn sealed_on_dynamodb() -> Sealed {
    use auditline::store::dynamo::SealTables;
    use auditline::store::dynamo::tables::{CHECKPOINTS, COUNTERS, ENTRIES, PROOFS};
    let (client, _) = auditline_tests::local_client();
    let entries = auditline_tests::fresh_table(&client, &ENTRIES, "entries").await;
    let counters = auditline_tests::fresh_table(&client, &COUNTERS, "counters").await;
    let checkpoints = auditline_tests::fresh_table(&client, &CHECKPOINTS, "checkpoints").await;
    let tables = SealTables {
        checkpoints: checkpoints.clone(),
        proofs: auditline_tests::fresh_table(&client, &PROOFS, "proofs").await,
        retention_days: 90,
    };
    let store = Arc::new(
        auditline::store::DynamoStore::new(client.clone(), entries, counters.clone()).with_seal_tables(tables),
    );
    let start = (Utc::now() - Duration::hours(4)).duration_trunc(Duration::hours(1)).unwrap();
    let (clock, _) = stepping_clock(start + Duration::minutes(1), 20 * 60_000);
    let logger = AuditLogger::with_clock(store.clone(), AuditSettings::default(), clock);
    for i in 0..9 {
        let request = new_entry(&tenant("acme"), AuditAction::Create, EntityType::File, &format!("f-{i}"), None, None);
        let Ok(LogOutcome::Stored(_)) = logger.log(request).await else { panic!("stored") };
    }
    let bucket = unique_name("anchor").to_lowercase();
    s3_client().create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send().await.unwrap();
    let sink = Arc::new(S3Checkpoints::for_local_endpoint(&dynamodb_endpoint(), &bucket));
    let key = Arc::new(LocalSigner::generate().unwrap());
    let settings = SealSettings { lookback_hours: 12, ..SealSettings::default() };
    let sealer = Sealer::new(store.clone(), key, settings).with_sinks(vec![sink]);
    let report = sealer.run(Utc::now()).await.unwrap();
    assert_eq!((report.checkpoints, report.publish_failures), (3, 0), "{report:?}");
    Sealed { client, counters, checkpoints, store, sealer }
}

impl Sealed {
    /// Sets the seal item's head to `c` (a rollback), as a table writer can.
    async fn roll_head_back_to(&self, c: &Checkpoint) {
        let end = chrono::DateTime::parse_from_rfc3339(&c.body.end).unwrap().timestamp_millis();
        self.client
            .update_item()
            .table_name(&self.counters)
            .key("pk", AttributeValue::S("T#acme".into()))
            .key("sk", AttributeValue::S("SEAL".into()))
            .update_expression("SET head_end = :e, head_hash = :h, head_total = :t")
            .expression_attribute_values(":e", AttributeValue::N(end.to_string()))
            .expression_attribute_values(":h", AttributeValue::S(c.link().to_hex()))
            .expression_attribute_values(":t", AttributeValue::N(c.body.total.to_string()))
            .send()
            .await
            .unwrap();
    }

    async fn delete_checkpoint(&self, c: &Checkpoint) {
        let end = chrono::DateTime::parse_from_rfc3339(&c.body.end).unwrap().timestamp_millis();
        self.client
            .delete_item()
            .table_name(&self.checkpoints)
            .key("pk", AttributeValue::S("T#acme".into()))
            .key("sk", AttributeValue::S(format!("{end:015}")))
            .send()
            .await
            .unwrap();
    }

    async fn delete_seal_state(&self) {
        for (pk, sk) in [("T#acme", "SEAL"), ("SEAL#CURSOR", "SEAL#CURSOR")] {
            self.client
                .delete_item()
                .table_name(&self.counters)
                .key("pk", AttributeValue::S(pk.into()))
                .key("sk", AttributeValue::S(sk.into()))
                .send()
                .await
                .unwrap();
        }
    }

    async fn chain(&self) -> Vec<Checkpoint> {
        self.store.checkpoints(&tenant("acme"), None, None, 100).await.unwrap()
    }
}

#[tokio::test]
async fn the_seal_refuses_to_sign_on_a_chain_that_disagrees_with_itself_or_with_what_it_published() {
    // A head rolled back while the later checkpoints stay: the head is not the newest checkpoint.
    let s = sealed_on_dynamodb().await;
    let chain = s.chain().await;
    s.roll_head_back_to(&chain[0]).await;
    let report = s.sealer.run(Utc::now()).await.expect("the run goes on");
    assert_eq!((report.refused, report.checkpoints), (1, 0), "{report:?}");
    assert_eq!(s.chain().await, chain, "nothing signed on top of it");

    // The head rolled back and the later checkpoints deleted: the table agrees with itself, but
    // the bucket holds a later checkpoint.
    let s = sealed_on_dynamodb().await;
    let chain = s.chain().await;
    s.roll_head_back_to(&chain[0]).await;
    s.delete_checkpoint(&chain[1]).await;
    s.delete_checkpoint(&chain[2]).await;
    let report = s.sealer.run(Utc::now()).await.unwrap();
    assert_eq!((report.refused, report.checkpoints), (1, 0), "{report:?}");
    assert_eq!(s.chain().await, chain[..1].to_vec());

    // Everything deleted (checkpoints, seal state, cursor), as if to have history re-sealed from
    // genesis: the bucket holds the tenant's chain, so no new genesis is signed.
    let s = sealed_on_dynamodb().await;
    for c in &s.chain().await {
        s.delete_checkpoint(c).await;
    }
    s.delete_seal_state().await;
    let report = s.sealer.run(Utc::now()).await.unwrap();
    assert_eq!((report.refused, report.checkpoints), (1, 0), "{report:?}");
    assert!(s.chain().await.is_empty(), "no second genesis");

    // A checkpoint of the chain forged into the table (signed by another key): refused.
    let s = sealed_on_dynamodb().await;
    let chain = s.chain().await;
    let stranger = LocalSigner::generate().unwrap();
    let mut forged = chain[2].clone();
    let der = futures::executor::block_on(stranger.sign(&forged.body.signed_bytes())).unwrap();
    forged.signature = auditline::integrity::checkpoint::encode_signature(&der);
    s.delete_checkpoint(&chain[2]).await;
    let item = serde_dynamo::to_item(&forged).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(&forged.body.end).unwrap().timestamp_millis();
    s.client
        .put_item()
        .table_name(&s.checkpoints)
        .item("pk", AttributeValue::S("T#acme".into()))
        .item("sk", AttributeValue::S(format!("{end:015}")))
        .item("checkpoint", AttributeValue::M(item))
        .send()
        .await
        .unwrap();
    // The guard runs before each signature: an entry of the open hour, sealed once it is over.
    let logger = AuditLogger::new(s.store.clone(), AuditSettings::default());
    let Ok(LogOutcome::Stored(_)) =
        logger.log(new_entry(&tenant("acme"), AuditAction::View, EntityType::File, "now", None, None)).await
    else {
        panic!("stored")
    };
    let later = Utc::now() + Duration::hours(2);
    let refused = s.sealer.seal_tenant(&tenant("acme"), Utc::now() - Duration::hours(6), later).await;
    let Err(auditline::seal::SealError::Tampered { reason, .. }) = refused else {
        panic!("a head not signed by this seal is refused: {refused:?}")
    };
    assert!(reason.contains("not one this seal signed"), "{reason}");
    assert_eq!(s.chain().await.len(), 3, "nothing appended");
}
