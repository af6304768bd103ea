//! What a function builds once per cold start, from its configuration: AWS clients, stores, the
//! authenticator. Never per request. Each Lambda `main` is one call into here.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::dynamodb::Event as StreamEvent;
use chrono::Utc;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use crate::apigw::http::{AuditApi, Route};
use crate::apigw::management::ApiGatewayPusher;
use crate::apigw::stream::{FeedDeps, handle_stream};
use crate::apigw::streams::DeliverDeps;
use crate::apigw::websocket;
use crate::auth::{AuthMethod, Authenticator};
use crate::kms::KmsSecretBox;
use crate::kms::KmsSigner;
use crate::realtime::fanout::FanoutSettings;
use crate::seal::Sealer;
use crate::store::DynamoStore;
use crate::store::dynamo::DynamoStreams;
use crate::store::dynamo::{
    DynamoApiKeys, DynamoArchiveKeys, DynamoConnections, DynamoIdempotency, SealTables, client_from_environment,
    open_connection,
};
use crate::store::eventbridge::AwsEventBus;
use crate::store::sqs::SqsQueue;
use crate::streams::admin::StreamAdmin;
use crate::streams::delivery::Deliverer;
use crate::streams::outbound::Loopback;
use crate::streams::route::Router;
use crate::streams::transport::{HttpLimits, SafeHttp};
use crate::{AuditLogger, Config, sdk};
use aws_lambda_events::kinesis::KinesisEvent;
use aws_lambda_events::sqs::SqsEvent;

/// How long the health check waits for storage before reporting it degraded.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(1500);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long init may spend opening the DynamoDB connection when `PRIME_CONNECTIONS` is on.
pub const PRIME_TIMEOUT: Duration = Duration::from_secs(1);

/// The DynamoDB client of a deployed function, its connection opened if the configuration says so.
async fn dynamodb(config: &Config) -> Result<aws_sdk_dynamodb::Client, BoxError> {
    let client = client_from_environment(sdk::config().await?, config.dynamodb_endpoint.as_deref());
    if config.prime_connections {
        open_connection(&client, PRIME_TIMEOUT).await;
    }
    Ok(client)
}

/// The authenticator of a deployed function: API keys in DynamoDB (only if `api_key` is allowed, so
/// JWT-only deployments need no table and no client).
pub async fn authenticator(config: &Config) -> Result<Authenticator, BoxError> {
    let api_keys = if config.auth.allowed_methods.contains(&AuthMethod::ApiKey) {
        Some(Arc::new(DynamoApiKeys::new(dynamodb(config).await?, &config.api_keys_table)) as _)
    } else {
        None
    };
    Ok(Authenticator::from_settings(&config.auth, api_keys)?)
}

/// The audit store on the configured tables.
pub fn dynamo_store(client: aws_sdk_dynamodb::Client, config: &Config) -> DynamoStore {
    DynamoStore::new(client, &config.entries_table, &config.counters_table)
        .with_counter_shards(config.counter_shards)
        .with_seal_tables(SealTables {
            checkpoints: config.checkpoints_table.clone(),
            proofs: config.proofs_table.clone(),
            retention_days: config.audit.retention_days,
        })
}

/// The archive's keys (which erasures destroy) on the configured table.
pub fn archive_keys(client: aws_sdk_dynamodb::Client, config: &Config) -> DynamoArchiveKeys {
    let days = i64::try_from(config.archive_retention_days).expect("at most 36,500 days");
    DynamoArchiveKeys::new(client, &config.archive_keys_table, days)
}

/// How long `stream-route` takes a tenant's streams from memory: a new stream, or a change, takes
/// effect within this (one Query per tenant and batch otherwise).
pub const STREAMS_CACHE: Duration = Duration::from_secs(30);

/// Delivers log streams' jobs: streams in DynamoDB, secrets under KMS, HTTPS to public addresses
/// only, EventBridge; failures recorded in the trail through `logger`.
pub async fn stream_deliverer(
    config: &Config,
    client: aws_sdk_dynamodb::Client,
    logger: Arc<AuditLogger>,
) -> Result<Deliverer, BoxError> {
    let sdk = sdk::config().await?;
    let key = config
        .streams_kms_key_id
        .clone()
        .ok_or("set STREAMS_KMS_KEY_ID to the KMS key streams' secrets are sealed under")?;
    Ok(Deliverer::new(
        Arc::new(DynamoStreams::new(client, &config.streams_table)),
        Arc::new(KmsSecretBox::from_environment(sdk, &key, config.kms_endpoint.as_deref())),
        logger,
        Arc::new(SafeHttp::new(Loopback::Refused, HttpLimits::default())),
        Some(Arc::new(AwsEventBus::from_environment(
            sdk,
            config.events_endpoint.as_deref(),
            config.sts_endpoint.as_deref(),
        ))),
        config.stream_retry,
    ))
}

/// The HTTP handlers' dependencies on DynamoDB (and, for the routes that manage log streams and the
/// health check, on the streams' table and key).
pub async fn audit_api(config: &Config, route: Route) -> Result<AuditApi, BoxError> {
    let client = dynamodb(config).await?;
    let store = Arc::new(dynamo_store(client.clone(), config));
    let keys = crate::kms::KmsKeys::from_environment(
        sdk::config().await?,
        config.seal_kms_key_id.clone(),
        config.seal_retired_kms_keys.clone(),
        config.kms_endpoint.as_deref(),
    );
    let logger = Arc::new(
        AuditLogger::new(store.clone(), config.audit)
            .with_cached_policies(store.clone(), crate::logger::POLICY_CACHE)
            .with_archive_keys(Arc::new(archive_keys(client.clone(), config)))
            .with_sweep_budget(crate::logger::HOLD_SWEEP_BUDGET),
    );
    // The health check shows failing streams where the deployment has them (a streams key).
    let streams = if route.manages_streams() || (route == Route::Health && config.streams_kms_key_id.is_some()) {
        let deliverer = Arc::new(stream_deliverer(config, client.clone(), logger.clone()).await?);
        Some(Arc::new(StreamAdmin {
            streams: deliverer.streams.clone(),
            secrets: deliverer.secrets.clone(),
            trail: logger.clone(),
            deliverer,
            loopback: Loopback::Refused,
        }))
    } else {
        None
    };
    Ok(AuditApi {
        logger,
        seal: store,
        seal_settings: config.seal,
        keys: Arc::new(keys),
        witnesses: config.witnesses.iter().map(|w| (w.url.clone(), w.key.clone())).collect(),
        log_reads: config.log_reads,
        streams,
        idempotency: Arc::new(DynamoIdempotency::new(client, &config.idempotency_table)),
        health_timeout: HEALTH_TIMEOUT,
        auth_methods: config.auth.allowed_methods.iter().map(ToString::to_string).collect(),
    })
}

/// Runs a function's initialisation; if it fails, tells Lambda through the Runtime API's
/// init-error endpoint (so the failure shows as `Runtime.InitError` with its reason, not as an
/// unexplained exit) and returns the error, which ends the process.
async fn initialise<T>(init: impl Future<Output = Result<T, BoxError>>) -> Result<T, BoxError> {
    match init.await {
        Ok(ready) => Ok(ready),
        Err(error) => {
            tracing::error!(error = %error, "initialisation failed");
            report_init_error(&error).await;
            Err(error)
        }
    }
}

async fn report_init_error(error: &BoxError) {
    let Some(uri) = std::env::var("AWS_LAMBDA_RUNTIME_API").ok().and_then(|a| format!("http://{a}").parse().ok())
    else {
        return;
    };
    let client = lambda_runtime_api_client::PooledClient::builder().with_endpoint(uri).build();
    // Configuration errors name the variable at fault, never a value.
    let body = serde_json::json!({"errorType": "Runtime.InitError", "errorMessage": error.to_string()}).to_string();
    let request = lambda_runtime_api_client::build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .header("content-type", "application/json")
        .body(lambda_runtime_api_client::body::Body::from(body));
    let sent = match request {
        Ok(request) => client.call(request).await.map(|_| ()),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = sent {
        tracing::error!(error = %e, "the init error could not be reported");
    }
}

/// `main` of an HTTP route's function.
pub async fn serve_http(route: Route) -> Result<(), BoxError> {
    lambda_http::tracing::init_default_subscriber();
    let api = initialise(async { audit_api(&Config::from_env()?, route).await }).await?;
    crate::apigw::http::run(route, api).await
}

/// `main` of the viewer function: the live feed's URL comes from the WebSocket API's settings.
pub async fn serve_viewer() -> Result<(), BoxError> {
    lambda_http::tracing::init_default_subscriber();
    let config = initialise(async { Ok(Config::from_env()?) }).await?;
    let viewer = crate::viewer::ViewerConfig {
        websocket_url: config.websocket_endpoint.map(|e| e.replacen("https://", "wss://", 1)),
        development_api_key: None,
    };
    crate::apigw::viewer::run(viewer).await
}

/// `main` of the authorizer function.
pub async fn serve_authorizer() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let auth = initialise(async { authenticator(&Config::from_env()?).await }).await?;
    let auth = &auth;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Value, BoxError>(crate::apigw::authorize(event.payload, auth).await?)
    }))
    .await
}

async fn connections(config: &Config) -> Result<DynamoConnections, BoxError> {
    Ok(DynamoConnections::new(dynamodb(config).await?, &config.connections_table))
}

/// `main` of the WebSocket `$connect` function.
pub async fn serve_ws_connect() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let (store, limits) = initialise(async {
        let config = Config::from_env()?;
        Ok((connections(&config).await?, config.connection_limits))
    })
    .await?;
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, BoxError>(websocket::connect(&event.payload, store, limits, Utc::now()).await)
    }))
    .await
}

/// `main` of the WebSocket `$disconnect` function.
pub async fn serve_ws_disconnect() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let store = &initialise(async { connections(&Config::from_env()?).await }).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
        Ok::<_, BoxError>(websocket::disconnect(&event.payload, store).await)
    }))
    .await
}

/// `main` of the stream fan-out function.
pub async fn serve_stream_fanout() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = &initialise(async {
        let config = Config::from_env()?;
        let endpoint = config.websocket_endpoint.clone().ok_or(
            "set WEBSOCKET_API_ID, AWS_REGION and WEBSOCKET_STAGE (or WEBSOCKET_ENDPOINT) so the fan-out can post messages",
        )?;
        let pusher = ApiGatewayPusher::from_environment(sdk::config().await?, &endpoint);
        Ok(FeedDeps::new(Arc::new(connections(&config).await?), Arc::new(pusher), FanoutSettings::default()))
    })
    .await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| async move {
        Ok::<_, BoxError>(handle_stream(event.payload, deps).await.0)
    }))
    .await
}

/// `main` of the archive function: writes each batch of new entries to the archive bucket.
pub async fn serve_stream_archive() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let (sink, keys) = initialise(async {
        let config = Config::from_env()?;
        let bucket = config.archive_bucket.clone().ok_or("set ARCHIVE_BUCKET to the archive's S3 bucket")?;
        let sink =
            crate::store::s3::S3Archive::from_environment(sdk::config().await?, &bucket, config.s3_endpoint.as_deref());
        Ok((sink, archive_keys(dynamodb(&config).await?, &config)))
    })
    .await?;
    let (sink, keys) = (&sink, &keys);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StreamEvent>| async move {
        Ok::<_, BoxError>(crate::apigw::stream::handle_archive(event.payload, sink, keys).await.0)
    }))
    .await
}

/// `main` of `stream-route`: the entries table's changes from Kinesis become delivery jobs in SQS.
pub async fn serve_stream_route() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let router = initialise(async {
        let config = Config::from_env()?;
        let queue = delivery_queue(&config).await?;
        let streams = Arc::new(DynamoStreams::new(dynamodb(&config).await?, &config.streams_table));
        Ok(Router::new(streams, Arc::new(queue), STREAMS_CACHE))
    })
    .await?;
    let router = &router;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| async move {
        Ok::<_, BoxError>(crate::apigw::streams::route_kinesis(event.payload, router).await)
    }))
    .await
}

/// `main` of `stream-deliver`: runs the delivery queue's jobs.
pub async fn serve_stream_deliver() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = initialise(async {
        let config = Config::from_env()?;
        let client = dynamodb(&config).await?;
        let store = Arc::new(dynamo_store(client.clone(), &config));
        let logger = Arc::new(
            AuditLogger::new(store.clone(), config.audit).with_cached_policies(store, crate::logger::POLICY_CACHE),
        );
        Ok(DeliverDeps {
            deliverer: Arc::new(stream_deliverer(&config, client, logger).await?),
            queue: Arc::new(delivery_queue(&config).await?),
        })
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, BoxError>(crate::apigw::streams::deliver_sqs(event.payload, deps).await)
    }))
    .await
}

async fn delivery_queue(config: &Config) -> Result<SqsQueue, BoxError> {
    let queue = config.delivery_queue_url.as_deref().ok_or("set DELIVERY_QUEUE_URL to the delivery queue")?;
    let dead = config
        .delivery_dead_letter_queue_url
        .as_deref()
        .ok_or("set DELIVERY_DEAD_LETTER_QUEUE_URL to the delivery dead-letter queue")?;
    Ok(SqsQueue::from_environment(sdk::config().await?, queue, dead, config.sqs_endpoint.as_deref()))
}

/// `main` of the seal function: on each scheduled invocation, seals every tenant's closed periods.
pub async fn serve_seal() -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    let sealer = initialise(async {
        let config = Config::from_env()?;
        let key = config
            .seal_kms_key_id
            .clone()
            .ok_or("set SEAL_KMS_KEY_ID to the KMS key (ECC_NIST_P256) that signs checkpoints")?;
        let sdk = sdk::config().await?;
        let signer = KmsSigner::from_environment(sdk, &key, config.kms_endpoint.as_deref()).await?;
        let mut sinks: Vec<Arc<dyn crate::seal::CheckpointSink>> = Vec::new();
        if let Some(endpoint) = &config.websocket_endpoint {
            sinks.push(Arc::new(crate::realtime::checkpoints::CheckpointFeed {
                connections: Arc::new(connections(&config).await?),
                pusher: Arc::new(ApiGatewayPusher::from_environment(sdk, endpoint)),
            }));
        }
        if let Some(bucket) = &config.checkpoint_bucket {
            sinks.push(Arc::new(crate::store::s3::S3Checkpoints::from_environment(
                sdk,
                bucket,
                config.s3_endpoint.as_deref(),
            )));
        }
        let witnesses = config
            .witnesses
            .iter()
            .map(|w| Arc::new(crate::witness::client::HttpWitness::new(&w.url, w.key.clone())) as _)
            .collect::<Vec<_>>();
        // A head signed before a rotation is still this seal's: the retired keys' public halves.
        let retired = if config.seal_retired_kms_keys.is_empty() {
            Vec::new()
        } else {
            use crate::seal::KeySource;
            let keys = crate::kms::KmsKeys::from_environment(
                sdk,
                None,
                config.seal_retired_kms_keys.clone(),
                config.kms_endpoint.as_deref(),
            );
            keys.keys()
                .await?
                .iter()
                .filter_map(|k| crate::integrity::signing::pem_der(&k.public_key_pem, "PUBLIC KEY"))
                .collect()
        };
        Ok(Sealer::new(Arc::new(dynamo_store(dynamodb(&config).await?, &config)), Arc::new(signer), config.seal)
            .with_retired_keys(retired)
            .with_origin(config.log_origin.clone())
            .with_witnesses(witnesses)
            .with_sinks(sinks))
    })
    .await?;
    let sealer = &sealer;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let report = sealer.run(Utc::now()).await?;
        tracing::info!(?report, "sealed");
        Ok::<Value, BoxError>(serde_json::json!({
            "tenants": report.tenants,
            "checkpoints": report.checkpoints,
            "entries": report.entries,
            "raced": report.raced,
            "cosigned": report.cosigned,
            "witness_failures": report.witness_failures,
            "publish_failures": report.publish_failures,
        }))
    }))
    .await
}

/// The functions the one `auditline-lambda` binary serves, by handler name (the `Handler` of each function in
/// template.yaml, which Lambda passes as `_HANDLER`).
pub const HANDLERS: &[&str] = &[
    "authorizer",
    "ws-authorizer",
    "ingest",
    "list-logs",
    "get-log",
    "entity-logs",
    "project-logs",
    "stats",
    "health",
    "export",
    "list-checkpoints",
    "latest-checkpoint",
    "checkpoint-leaves",
    "get-proof",
    "list-keys",
    "erase",
    "erase-subject",
    "get-settings",
    "put-settings",
    "place-hold",
    "release-hold",
    "viewer",
    "ws-connect",
    "ws-disconnect",
    "stream-fanout",
    "stream-archive",
    "seal",
    "create-stream",
    "list-streams",
    "get-stream",
    "update-stream",
    "delete-stream",
    "rotate-stream-secret",
    "test-stream",
    "stream-route",
    "stream-deliver",
];

/// Runs the function `handler` names.
pub async fn serve(handler: &str) -> Result<(), BoxError> {
    match handler {
        // The same code serves the HTTP API and the WebSocket API's `$connect`, deployed twice.
        "authorizer" | "ws-authorizer" => serve_authorizer().await,
        "ingest" => serve_http(Route::Ingest).await,
        "list-logs" => serve_http(Route::ListLogs).await,
        "get-log" => serve_http(Route::GetLog).await,
        "entity-logs" => serve_http(Route::EntityLogs).await,
        "project-logs" => serve_http(Route::ProjectLogs).await,
        "stats" => serve_http(Route::Stats).await,
        "health" => serve_http(Route::Health).await,
        "export" => serve_http(Route::Export).await,
        "list-checkpoints" => serve_http(Route::Checkpoints).await,
        "latest-checkpoint" => serve_http(Route::LatestCheckpoint).await,
        "checkpoint-leaves" => serve_http(Route::PeriodLeaves).await,
        "get-proof" => serve_http(Route::Proof).await,
        "list-keys" => serve_http(Route::Keys).await,
        "erase" => serve_http(Route::Erase).await,
        "erase-subject" => serve_http(Route::EraseSubject).await,
        "get-settings" => serve_http(Route::Settings).await,
        "put-settings" => serve_http(Route::UpdateSettings).await,
        "place-hold" => serve_http(Route::PlaceHold).await,
        "release-hold" => serve_http(Route::ReleaseHold).await,
        "viewer" => serve_viewer().await,
        "ws-connect" => serve_ws_connect().await,
        "ws-disconnect" => serve_ws_disconnect().await,
        "stream-fanout" => serve_stream_fanout().await,
        "stream-archive" => serve_stream_archive().await,
        "seal" => serve_seal().await,
        "create-stream" => serve_http(Route::CreateStream).await,
        "list-streams" => serve_http(Route::ListStreams).await,
        "get-stream" => serve_http(Route::GetStream).await,
        "update-stream" => serve_http(Route::UpdateStream).await,
        "delete-stream" => serve_http(Route::DeleteStream).await,
        "rotate-stream-secret" => serve_http(Route::RotateStreamSecret).await,
        "test-stream" => serve_http(Route::TestStream).await,
        "stream-route" => serve_stream_route().await,
        "stream-deliver" => serve_stream_deliver().await,
        unknown => {
            let error: BoxError =
                format!("no function is called {unknown:?}: set the Handler to one of {}", HANDLERS.join(", ")).into();
            report_init_error(&error).await;
            Err(error)
        }
    }
}
