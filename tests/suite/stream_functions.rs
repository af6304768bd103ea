//! Log streams on AWS, with the real binaries under the Runtime API emulator and moto for
//! DynamoDB, KMS, SQS and EventBridge: a stream made by `create-stream`, an entry written by
//! `ingest`, its change as the entries table's Kinesis destination carries it routed by
//! `stream-route` into the delivery queue, and the job run by `stream-deliver`, which puts the
//! entry on the tenant's EventBridge bus — read back from the queue a rule on that bus feeds.

use std::time::Duration;

use auditline::apigw::streams::kinesis_entries;
use auditline::domain::TenantId;
use auditline::kms::KmsSecretBox;
use auditline::streams::secrets::{SecretBox, SecretContext};
use auditline_tests::event;
use auditline_tests::runtime::{function_environment, invoke, response_body, started_function};
use aws_lambda_events::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn region_config() -> (aws_sdk_sqs::config::Region, aws_sdk_sqs::config::Credentials) {
    (
        aws_sdk_sqs::config::Region::new("us-east-1"),
        aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "test"),
    )
}

fn sqs() -> aws_sdk_sqs::Client {
    let (region, credentials) = region_config();
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .endpoint_url(auditline_tests::dynamodb_endpoint())
            .build(),
    )
}

fn events() -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_eventbridge::config::Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(auditline_tests::dynamodb_endpoint())
            .build(),
    )
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url =
        sqs.create_queue().queue_name(auditline_tests::unique_name(name)).send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < want {
        assert!(std::time::Instant::now() < deadline, "{} of {want} messages in {url}", got.len());
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        got.extend(out.messages.unwrap_or_default());
    }
    got
}

async fn symmetric_key() -> String {
    let kms = auditline_tests::kms::local_kms();
    kms.create_key().description("auditline streams (test)").send().await.unwrap().key_metadata.unwrap().key_id
}

#[test]
fn the_kinesis_sample_carries_the_same_entries_as_the_dynamodb_stream_sample() {
    let kinesis: KinesisEvent = serde_json::from_value(event("kinesis-entries.json")).unwrap();
    let from_kinesis = kinesis_entries(&kinesis);
    let stream: aws_lambda_events::dynamodb::Event = serde_json::from_value(event("stream-batch.json")).unwrap();
    let (from_stream, unreadable) = auditline::apigw::stream::inserted_entries(&stream);
    assert!(unreadable.is_empty());
    let from_stream: Vec<_> = from_stream.into_iter().map(|(_, e)| e).collect();
    assert_eq!(from_kinesis, from_stream, "INSERTs only; the TTL removal is not an entry");
    assert_eq!(from_kinesis.len(), 2);
}

#[tokio::test]
async fn secrets_sealed_under_kms_open_only_with_their_tenant_and_stream() {
    let key = symmetric_key().await;
    let sealing = KmsSecretBox::new(auditline_tests::kms::local_kms(), &key);
    let tenant = TenantId::parse("acme").unwrap();
    let stream = Uuid::now_v7();
    let context = SecretContext { tenant: &tenant, stream };
    let sealed = sealing.seal_bytes(context, b"hec-token-value").await.unwrap();
    assert!(sealed.starts_with("kms1.") && !sealed.contains("hec-token"));
    // Another process (an empty cache) opens it through KMS.
    let opening = KmsSecretBox::new(auditline_tests::kms::local_kms(), &key);
    assert_eq!(opening.open_bytes(context, &sealed).await.unwrap(), b"hec-token-value");
    let elsewhere = SecretContext { tenant: &tenant, stream: Uuid::now_v7() };
    assert!(opening.open_bytes(elsewhere, &sealed).await.is_err(), "copied to another stream, it does not open");
    let other = TenantId::parse("globex").unwrap();
    assert!(opening.open_bytes(SecretContext { tenant: &other, stream }, &sealed).await.is_err());
}

/// A tenant's bus in moto, with a rule that sends auditline's events to the queue `target_arn`.
async fn bus_feeding(target_arn: &str) -> String {
    let bus_name = auditline_tests::unique_name("tenant-bus");
    let events = events();
    let bus = events.create_event_bus().name(&bus_name).send().await.unwrap().event_bus_arn.unwrap();
    events
        .put_rule()
        .name(auditline_tests::unique_name("audit"))
        .event_bus_name(&bus_name)
        .event_pattern(json!({"source": ["auditline"]}).to_string())
        .send()
        .await
        .unwrap();
    let rule =
        events.list_rules().event_bus_name(&bus_name).send().await.unwrap().rules.unwrap()[0].name.clone().unwrap();
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus_name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(target_arn).build().unwrap())
        .send()
        .await
        .unwrap();
    bus
}

/// The local gateway, given a local EventBridge API (EVENTS_ENDPOINT, moto: its STS too), puts a
/// stream's entries on the tenant's bus with the same code.
#[tokio::test]
async fn the_local_gateway_puts_a_streams_entries_on_the_tenants_bus() {
    use crate::streams::end_to_end::{create, gateway_with, token, write};
    let endpoint = auditline_tests::dynamodb_endpoint();
    let sqs = sqs();
    let (target_url, target_arn) = queue(&sqs, "local-bus-target").await;
    let bus = bus_feeding(&target_arn).await;
    let g = gateway_with(&[("EVENTS_ENDPOINT", &endpoint)], auditline_local::StreamOptions::default()).await;
    let role = "arn:aws:iam::123456789012:role/put-for-acme";
    let target = json!({"type": "eventbridge", "event_bus_arn": bus, "role_arn": role});
    create(&g, &token("acme", "audit:admin"), json!({"name": "Bus", "target": target})).await;
    let ids = write(&g, &token("acme", "audit:write"), 3, "on-the-bus").await;
    // The stream's creation record, then the three entries.
    let on_bus: Vec<Value> =
        receive(&sqs, &target_url, 4).await.iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    let put: Vec<&str> = on_bus.iter().filter_map(|e| e["detail"]["id"].as_str()).collect();
    for id in &ids {
        assert!(put.contains(&id.as_str()), "{id} on the bus: {on_bus:?}");
    }
    assert!(on_bus.iter().all(|e| e["source"] == "auditline" && e["detail"]["tenant_id"] == "acme"));
    g.shutdown().await;
}

#[tokio::test]
async fn an_entry_goes_from_ingest_through_kinesis_and_sqs_to_the_tenants_eventbridge_bus() {
    let endpoint = auditline_tests::dynamodb_endpoint();
    let sqs = sqs();
    let (jobs_url, _) = queue(&sqs, "delivery").await;
    let (dead_url, _) = queue(&sqs, "delivery-dead").await;
    let (target_url, target_arn) = queue(&sqs, "bus-target").await;
    let bus = bus_feeding(&target_arn).await;

    let (sts, assumed) = fake_aws().await;
    let env = function_environment(&[
        ("STREAMS_KMS_KEY_ID", symmetric_key().await),
        ("KMS_ENDPOINT", endpoint.clone()),
        ("SQS_ENDPOINT", endpoint.clone()),
        ("EVENTS_ENDPOINT", endpoint.clone()),
        // STS as the tenant's trust policy answers (moto's grants any external id).
        ("STS_ENDPOINT", sts.clone()),
        ("DELIVERY_QUEUE_URL", jobs_url.clone()),
        ("DELIVERY_DEAD_LETTER_QUEUE_URL", dead_url.clone()),
    ])
    .await;

    // The stream, made by its function from the sample event (pointed at the bus).
    let mut create = event("http-create-stream.json");
    let role = "arn:aws:iam::123456789012:role/put-for-acme";
    let target = json!({"type": "eventbridge", "event_bus_arn": bus, "role_arn": role});
    create["body"] = json!(json!({"name": "Bus", "target": target}).to_string());
    let created = invoke(&started_function("create-stream", &env).await, &create).await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let stream_id = response_body(&created)["stream"]["id"].as_str().unwrap().to_owned();

    // An entry, written by ingest; its item as the Kinesis destination carries it.
    let mut ingest = event("http-ingest.json");
    ingest["headers"].as_object_mut().unwrap().remove("idempotency-key");
    let written = invoke(&started_function("ingest", &env).await, &ingest).await;
    assert_eq!(written["statusCode"], 201, "{written}");
    let entry = response_body(&written);
    let (client, _) = auditline_tests::local_client();
    let table = env.iter().find(|(k, _)| *k == "AUDIT_ENTRIES_TABLE").unwrap().1.clone();
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("T#acme".into()))
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S(entry["id"].as_str().unwrap().into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the entry's item");
    let image: serde_dynamo::Item = item.into();
    let change = json!({
        "awsRegion": "us-east-1", "eventID": "1", "eventName": "INSERT", "recordFormat": "application/json",
        "tableName": table, "eventSource": "aws:dynamodb",
        "dynamodb": {"ApproximateCreationDateTime": 1795688430000u64, "ApproximateCreationDateTimePrecision": "MILLISECOND",
                     "Keys": {}, "NewImage": image, "SizeBytes": 600},
    });
    let mut kinesis = event("kinesis-entries.json");
    let records = kinesis["Records"].as_array_mut().unwrap();
    records.truncate(1);
    records[0]["kinesis"]["data"] = json!(base64::engine::general_purpose::STANDARD.encode(change.to_string()));
    let routed = invoke(&started_function("stream-route", &env).await, &kinesis).await;
    assert_eq!(routed["batchItemFailures"], json!([]), "{routed}");

    // The job in the delivery queue: ids only, never values.
    let messages = receive(&sqs, &jobs_url, 1).await;
    let job: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(job["stream_id"], json!(stream_id));
    assert_eq!(job["entry_ids"], json!([entry["id"]]));
    assert!(!messages[0].body().unwrap().contains("REPORT"), "no entry values in the queue");
    let mut delivery = event("sqs-delivery-job.json");
    delivery["Records"][0]["body"] = json!(messages[0].body().unwrap());
    delivery["Records"][0]["messageId"] = json!(messages[0].message_id().unwrap());
    let delivered = invoke(&started_function("stream-deliver", &env).await, &delivery).await;
    assert_eq!(delivered["batchItemFailures"], json!([]), "{delivered}");

    // On the bus: the rule's queue has the entry, as EventBridge shapes an event.
    let on_bus = receive(&sqs, &target_url, 1).await;
    let put: Value = serde_json::from_str(on_bus[0].body().unwrap()).unwrap();
    assert_eq!(put["source"], "auditline");
    assert_eq!(put["detail-type"], "Audit Log Entry");
    assert_eq!(put["detail"]["id"], entry["id"], "{put}");
    // Put as the tenant's role: asked for with an id nobody was given (refused), then with acme's.
    let ids: Vec<String> = assumed.lock().unwrap().assume_role.iter().map(|b| form(b)["ExternalId"].clone()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].starts_with("auditline:acme:probe-") && ids[1] == "auditline:acme", "{ids:?}");

    // The stream's figures count it.
    let mut get = event("http-get-stream.json");
    get["pathParameters"]["stream_id"] = json!(stream_id);
    get["rawPath"] = json!(format!("/audit/streams/{stream_id}"));
    let got = invoke(&started_function("get-stream", &env).await, &get).await;
    assert_eq!(response_body(&got)["figures"]["delivered"], 1, "{got}");
}

/// A receiver in process that takes everything, except at one address, where the sender fails
/// as a bug would: by panicking.
struct PanicsAt {
    address: &'static str,
    sent: std::sync::Mutex<Vec<auditline::streams::transport::HttpRequest>>,
}

#[async_trait::async_trait]
impl auditline::streams::transport::HttpSender for PanicsAt {
    async fn send(
        &self,
        request: auditline::streams::transport::HttpRequest,
    ) -> Result<auditline::streams::transport::HttpAnswer, auditline::streams::transport::SendError> {
        assert!(!request.url.contains(self.address), "a sender's bug");
        self.sent.lock().unwrap().push(request);
        Ok(auditline::streams::transport::HttpAnswer {
            status: 200,
            retry_after: None,
            location: None,
            body: String::new(),
        })
    }
}

#[tokio::test]
async fn one_job_that_panics_fails_its_own_message_and_no_other_tenants() {
    use std::sync::Arc;

    use auditline::apigw::streams::{DeliverDeps, deliver_sqs};
    use auditline::domain::{Actor, AuditAction, EntityType};
    use auditline::store::sqs::SqsQueue;
    use auditline::streams::admin::StreamAdmin;
    use auditline::streams::delivery::{Deliverer, Job, RetryPolicy};
    use auditline::streams::outbound::Loopback;
    use auditline::streams::secrets::LocalSecretBox;
    use auditline::streams::store::MemoryStreams;
    use auditline::{AuditLogger, AuditSettings, LogOutcome};

    let sqs = sqs();
    let (jobs_url, _) = queue(&sqs, "delivery").await;
    let (dead_url, _) = queue(&sqs, "delivery-dead").await;
    let logger = Arc::new(AuditLogger::new(Arc::new(auditline::store::MemoryStore::new()), AuditSettings::default()));
    let streams = Arc::new(MemoryStreams::default());
    let secrets = Arc::new(LocalSecretBox::ephemeral());
    let http = Arc::new(PanicsAt { address: "127.0.0.1:9001", sent: std::sync::Mutex::new(Vec::new()) });
    let deliverer = Arc::new(Deliverer::new(
        streams.clone(),
        secrets.clone(),
        logger.clone(),
        http.clone(),
        None,
        RetryPolicy::default(),
    ));
    let admin = StreamAdmin {
        streams,
        secrets,
        trail: logger.clone(),
        deliverer: deliverer.clone(),
        loopback: Loopback::AllowedOverHttp,
    };
    let actor = Actor { user_id: None, ip_address: None };
    let mut records = Vec::new();
    for (tenant, url) in [("mallory", "http://127.0.0.1:9001/hook"), ("acme", "http://127.0.0.1:9002/hook")] {
        let tenant = TenantId::parse(tenant).unwrap();
        let body = json!({"name": "Hook", "target": {"type": "webhook", "url": url}});
        let stream = admin.create(&tenant, serde_json::from_value(body).unwrap(), &actor).await.unwrap().stream.stream;
        let entry = auditline_tests::new_entry(&tenant, AuditAction::Create, EntityType::File, "f-1", None, None);
        let Ok(LogOutcome::Stored(entry)) = logger.log(entry).await else { panic!("stored") };
        let job = Job::new(tenant.clone(), stream.id, vec![entry.id], chrono::Utc::now());
        let mut record = event("sqs-delivery-job.json")["Records"][0].clone();
        record["messageId"] = json!(tenant.as_str());
        record["body"] = json!(serde_json::to_string(&job).unwrap());
        records.push(record);
    }
    let batch: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    let deps = DeliverDeps { deliverer, queue: Arc::new(SqsQueue::new(sqs, &jobs_url, &dead_url)) };
    let response = deliver_sqs(batch, &deps).await;
    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [Some("mallory".to_owned())], "only the job that failed goes back to the queue");
    assert_eq!(http.sent.lock().unwrap().len(), 1, "the other tenant's job was delivered");
}

#[test]
fn stream_deliver_may_change_a_streams_figures_but_never_its_settings() {
    use auditline::store::dynamo::tables::stream_attr as attr;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let template: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let statements: Vec<&serde_norway::Value> =
        template["Resources"]["StreamDeliverFunction"]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().unwrap())
            .collect();
    let text = |v: &serde_norway::Value| serde_norway::to_string(v).unwrap();
    let updates: Vec<&&serde_norway::Value> =
        statements.iter().filter(|s| text(&s["Action"]).contains("dynamodb:UpdateItem")).collect();
    let on_streams: Vec<&&&serde_norway::Value> =
        updates.iter().filter(|s| text(&s["Resource"]).contains("StreamsTable")).collect();
    assert_eq!(on_streams.len(), 1);
    let allowed: Vec<String> = on_streams[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:Attributes"]
        .as_sequence()
        .expect("UpdateItem on the streams table is limited to named attributes")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for attribute in [attr::BODY, attr::VERSION, attr::COUNT] {
        assert!(
            !allowed.iter().any(|a| a == attribute || (a.ends_with('*') && attribute.starts_with(&a[..a.len() - 1]))),
            "{attribute} is a setting: {allowed:?}"
        );
    }
    for attribute in [
        attr::PK,
        attr::SK,
        attr::DELIVERED,
        attr::FAILED,
        attr::RETRIED,
        attr::LAST_ERROR,
        attr::LAST_ERROR_AT,
        attr::LAST_DELIVERED_AT,
        attr::FAILING,
        attr::FAILING_SINCE,
        attr::FAILING_REASON,
    ] {
        assert!(allowed.iter().any(|a| a == attribute), "{attribute}: {allowed:?}");
    }
    assert!(allowed.iter().any(|a| a == &format!("{}*", attr::LAG_PREFIX)), "{allowed:?}");
}

/// What the fake AWS below was asked: STS's `AssumeRole` forms, and PutEvents' signing headers.
#[derive(Default)]
struct AwsCalls {
    assume_role: Vec<String>,
    put_events: Vec<(String, String)>,
}

/// STS and EventBridge on loopback, as far as a delivery needs them. Roles, by name: `put-for-<t>`
/// trusts the deployment with the external id `auditline:<t>` alone (as the README says to make
/// it), `lax` trusts it with any external id, `untrusting` not at all. PutEvents takes every event.
/// It shows what moto cannot: the ids and session policy asked for, and which credentials signed.
async fn fake_aws() -> (String, std::sync::Arc<std::sync::Mutex<AwsCalls>>) {
    use auditline_tests::wire::{read_request, respond};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(AwsCalls::default()));
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { continue };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else { return };
                let body = String::from_utf8_lossy(&request.body).into_owned();
                if request.header("x-amz-target") == Some("AWSEvents.PutEvents") {
                    let signed = request.header("authorization").unwrap_or_default().to_owned();
                    let token = request.header("x-amz-security-token").unwrap_or_default().to_owned();
                    seen.lock().unwrap().put_events.push((signed, token));
                    let count = serde_json::from_str::<Value>(&body).unwrap()["Entries"].as_array().unwrap().len();
                    let entries: Vec<Value> = (0..count).map(|i| json!({"EventId": format!("event-{i}")})).collect();
                    let answer = json!({"FailedEntryCount": 0, "Entries": entries}).to_string();
                    respond(&mut socket, 200, &[("content-type", "application/x-amz-json-1.1")], &answer).await;
                    return;
                }
                let form = form(&body);
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.assume_role.push(body.clone());
                    seen.assume_role.len()
                };
                let role = form.get("RoleArn").and_then(|arn| arn.rsplit('/').next()).unwrap_or_default().to_owned();
                let external = form.get("ExternalId").cloned().unwrap_or_default();
                let trusted = match role.strip_prefix("put-for-") {
                    Some(tenant) => external == format!("auditline:{tenant}"),
                    None => role == "lax",
                };
                if !trusted {
                    let denied = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                        <Code>AccessDenied</Code><Message>not authorized to perform: sts:AssumeRole</Message></Error>\
                        <RequestId>r-1</RequestId></ErrorResponse>";
                    respond(&mut socket, 403, &[("content-type", "text/xml")], denied).await;
                    return;
                }
                let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
                let granted = format!(
                    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
                     <Credentials><AccessKeyId>ASIAASSUMED{n}</AccessKeyId><SecretAccessKey>secret-{n}</SecretAccessKey>\
                     <SessionToken>session-token-{n}</SessionToken><Expiration>{expires}</Expiration></Credentials>\
                     <AssumedRoleUser><Arn>arn:aws:sts::210987654321:assumed-role/{role}/s</Arn>\
                     <AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>\
                     <ResponseMetadata><RequestId>r-{n}</RequestId></ResponseMetadata></AssumeRoleResponse>"
                );
                respond(&mut socket, 200, &[("content-type", "text/xml")], &granted).await;
            });
        }
    });
    (url, calls)
}

/// An `application/x-www-form-urlencoded` body's fields.
fn form(body: &str) -> std::collections::HashMap<String, String> {
    body.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), percent_decoded(v))).collect()
}

/// A form value with its %XX escapes (and + for space) decoded.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

const BUS: &str = "arn:aws:events:eu-west-1:210987654321:event-bus/audit";

fn bus_event() -> auditline::streams::transport::BusEvent {
    auditline::streams::transport::BusEvent {
        source: "auditline".into(),
        detail_type: "Audit Log Entry".into(),
        detail: json!({"id": "e-1"}).to_string(),
        time: chrono::Utc::now(),
    }
}

fn bus_target(tenant: &str, role: &str) -> auditline::streams::transport::BusTarget {
    auditline::streams::transport::BusTarget::new(
        &TenantId::parse(tenant).unwrap(),
        Uuid::now_v7(),
        BUS,
        &format!("arn:aws:iam::210987654321:role/{role}"),
    )
}

#[tokio::test]
async fn events_are_put_as_the_tenants_role_assumed_with_that_tenants_external_id() {
    use auditline::store::eventbridge::{AwsEventBus, TrustProbe};
    use auditline::streams::transport::{EventBus, SendError};
    let (aws, calls) = fake_aws().await;
    let bus = AwsEventBus::for_local_endpoint(&aws, &aws, TrustProbe::Require).await;
    let event = bus_event();
    let acme = bus_target("acme", "put-for-acme");
    for _ in 0..3 {
        assert_eq!(bus.put_events(&acme, std::slice::from_ref(&event)).await.unwrap(), vec![None]);
    }
    {
        let seen = calls.lock().unwrap();
        // First with an id nobody was given (refused: the role requires its own), then with acme's.
        assert_eq!(seen.assume_role.len(), 2, "assumed once, kept for its hour: {:?}", seen.assume_role);
        let (probe, assumed) = (form(&seen.assume_role[0]), form(&seen.assume_role[1]));
        assert!(probe["ExternalId"].starts_with("auditline:acme:probe-"), "{probe:?}");
        assert_eq!(assumed["Action"], "AssumeRole");
        assert_eq!(assumed["RoleArn"], "arn:aws:iam::210987654321:role/put-for-acme");
        assert_eq!(assumed["ExternalId"], "auditline:acme", "the tenant's external id");
        assert_eq!(assumed["RoleSessionName"], acme.session_name);
        // A session policy: whatever else the role may do, these credentials put on this bus only.
        let policy: Value = serde_json::from_str(&assumed["Policy"]).unwrap();
        assert_eq!(policy["Statement"], json!([{"Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS}]));
        // Every put signed with the assumed credentials, in the bus's region, never the deployment's own.
        assert_eq!(seen.put_events.len(), 3);
        for (signed, token) in &seen.put_events {
            assert!(signed.contains("Credential=ASIAASSUMED2/") && signed.contains("/eu-west-1/events/"), "{signed}");
            assert_eq!(token, "session-token-2");
        }
    }

    // Another tenant naming acme's role is refused by its trust policy, and asked about once a
    // minute, not at every delivery.
    let globex = bus_target("globex", "put-for-acme");
    let (asked, puts) = {
        let seen = calls.lock().unwrap();
        (seen.assume_role.len(), seen.put_events.len())
    };
    for _ in 0..3 {
        match bus.put_events(&globex, std::slice::from_ref(&event)).await {
            Err(SendError::Failed(message)) => {
                assert!(
                    message.contains("external id auditline:globex") && message.contains("AccessDenied"),
                    "{message}"
                );
                assert!(message.len() < 300 && !message.contains("Response"), "brief, no raw answer: {message}");
            }
            other => panic!("refused, not {other:?}"),
        }
    }
    let seen = calls.lock().unwrap();
    assert_eq!(seen.assume_role.len() - asked, 2, "a refusal is kept");
    assert_eq!(form(&seen.assume_role[asked + 1])["ExternalId"], "auditline:globex");
    assert_eq!(seen.put_events.len(), puts, "nothing put without the role");
}

#[tokio::test]
async fn a_role_that_does_not_require_the_external_id_is_refused_and_nothing_is_put() {
    use auditline::store::eventbridge::{AwsEventBus, TrustProbe};
    use auditline::streams::transport::{EventBus, SendError};
    let (aws, calls) = fake_aws().await;
    let bus = AwsEventBus::for_local_endpoint(&aws, &aws, TrustProbe::Require).await;
    for (role, says) in [("lax", "does not require the external id"), ("untrusting", "AccessDenied")] {
        match bus.put_events(&bus_target("acme", role), &[bus_event()]).await {
            Err(SendError::Failed(message)) => assert!(message.contains(says), "{role}: {message}"),
            other => panic!("{role}: refused, not {other:?}"),
        }
    }
    {
        let seen = calls.lock().unwrap();
        assert_eq!(seen.assume_role.len(), 3, "lax: the probe alone; untrusting: probe and assume");
        assert!(seen.put_events.is_empty());
    }
    // The local gateway, whose emulated STS grants any id, skips the probe: the role is assumed.
    let local = AwsEventBus::for_local_endpoint(&aws, &aws, TrustProbe::Skip).await;
    local.put_events(&bus_target("acme", "lax"), &[bus_event()]).await.unwrap();
    let seen = calls.lock().unwrap();
    assert_eq!((seen.assume_role.len(), seen.put_events.len()), (4, 1));
}

#[tokio::test]
async fn many_streams_keep_their_credentials_each_for_its_hour() {
    use auditline::store::eventbridge::{AwsEventBus, TrustProbe};
    use auditline::streams::transport::EventBus;
    let (aws, calls) = fake_aws().await;
    let bus = AwsEventBus::for_local_endpoint(&aws, &aws, TrustProbe::Require).await;
    let targets: Vec<_> = (0..100).map(|_| bus_target("acme", "put-for-acme")).collect();
    for round in 0..2 {
        for target in &targets {
            bus.put_events(target, &[bus_event()]).await.unwrap();
        }
        assert_eq!(calls.lock().unwrap().assume_role.len(), 200, "round {round}: STS asked twice per stream, once");
    }
}
