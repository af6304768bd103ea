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
    assert_eq!(keys, chain.iter().map(publication_key).collect::<Vec<_>>(), "one object per checkpoint, in order");
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
