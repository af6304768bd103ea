//! The local gateway: both APIs on one loopback port, served by the very handlers Lambda runs.
//!
//! Each HTTP request becomes an API Gateway HTTP API event — first the authorizer's, then the
//! route's — and each WebSocket upgrade the `$connect` authorizer's and integration's events; the
//! live feed runs the stream handler over batches of new entries. Storage is in memory by default,
//! or any DynamoDB API endpoint.

pub mod events;
pub mod push_faults;
pub mod sessions;
pub mod source;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditline::apigw::authorizer::{authorize_http, authorize_websocket};
use auditline::apigw::http::{AuditApi, MAX_BODY_BYTES, Route, handle};
use auditline::apigw::stream::FeedDeps;
use auditline::apigw::websocket;
use auditline::archive::{ArchiveSink, DirectorySink};
use auditline::auth::Secret;
use auditline::auth::api_keys::{self, ApiKeyStore, ApiKeyValidator, MemoryApiKeys};
use auditline::auth::jwt::sign_hmac;
use auditline::auth::origins::{self, OriginPolicy};
use auditline::auth::{AuthMethod, Authenticator, extract};
use auditline::domain::TenantId;
use auditline::idempotency::{IdempotencyStore, MemoryIdempotency};
use auditline::integrity::signing::{LocalSigner, Signer, public_key_pem};
use auditline::realtime::checkpoints::CheckpointFeed;
use auditline::realtime::fanout::FanoutSettings;
use auditline::realtime::{ConnectionLimits, ConnectionStore, MemoryConnections, Pusher};
use auditline::seal::publish::DirectoryCheckpoints;
use auditline::seal::{CheckpointSink, MAX_SEAL_DELAY_SECONDS, SealStore, Sealer, StaticKeys, WitnessClient};
use auditline::store::dynamo::tables::{
    self, API_KEYS, CHECKPOINTS, CONNECTIONS, COUNTERS, ENTRIES, IDEMPOTENCY, PROOFS, TableSpec,
};
use auditline::store::dynamo::{DynamoApiKeys, DynamoConnections, DynamoIdempotency, client_for_local_endpoint};
use auditline::store::s3::S3Archive;
use auditline::store::{AuditStore, MemoryStore};
use auditline::viewer::{self, ViewerConfig};
use auditline::witness::client::HttpWitness;
use auditline::{AuditLogger, Config};
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::events::{HttpRequest, Upgrade};
use self::sessions::{Outbox, Sessions};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tenant of the development credentials printed at start.
pub const DEV_TENANT: &str = "local";
/// How long the printed development token is valid.
pub const DEV_TOKEN_HOURS: i64 = 12;
/// Entries the in-memory store keeps before dropping the oldest.
pub const DEFAULT_MEMORY_ENTRIES: usize = 1_000_000;
/// Memory the in-memory store's entries may take (their JSON and index keys) before the oldest go.
pub const DEFAULT_MEMORY_BYTES: usize = 512 << 20;

/// What the gateway holds in memory besides the store, bounded in bytes and numbers so that no
/// client (one that never reads, one that sends huge frames, one that opens sockets in a loop) can
/// grow it without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open WebSocket sessions; more are refused with 503.
    pub max_sessions: usize,
    /// Messages waiting for one slow session; beyond, posts to it are throttled (as API Gateway does).
    pub session_buffer_bytes: usize,
    /// Idempotency records (in-memory storage); beyond, the oldest go.
    pub idempotency_bytes: usize,
    /// Largest WebSocket frame and message a client may send (API Gateway's: 32 KB, 128 KB).
    pub max_frame_bytes: usize,
    pub max_client_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 1_000,
            session_buffer_bytes: 1 << 20,
            idempotency_bytes: 64 << 20,
            max_frame_bytes: 32 * 1024,
            max_client_message_bytes: 128 * 1024,
        }
    }
}

/// Where the gateway keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Memory {
        max_entries: usize,
        max_bytes: usize,
    },
    /// A DynamoDB API endpoint (moto, DynamoDB Local, …); tables are created if missing.
    DynamoDb {
        endpoint: String,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    pub storage: Storage,
    pub config: Config,
    pub limits: Limits,
    pub seal: SealOptions,
    /// Where the archive consumer writes, if anywhere.
    pub archive: Option<ArchiveTarget>,
    /// Posts to live clients failed on purpose, per thousand (soak runs; see [`push_faults`]).
    pub push_faults_per_mille: u64,
}

/// The archive's destination: the same layout as the S3 bucket on AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveTarget {
    Directory(PathBuf),
    S3 { endpoint: String, bucket: String },
}

impl ArchiveTarget {
    fn sink(&self) -> Arc<dyn ArchiveSink> {
        match self {
            ArchiveTarget::Directory(root) => Arc::new(DirectorySink { root: root.clone() }),
            ArchiveTarget::S3 { endpoint, bucket } => Arc::new(S3Archive::for_local_endpoint(endpoint, bucket)),
        }
    }
}

/// How the gateway seals: how often it runs the sealer, and with which key.
#[derive(Debug, Clone)]
pub struct SealOptions {
    pub every: Duration,
    pub key: SealKey,
    /// Every new checkpoint is also written under this directory (as to the S3 bucket on AWS).
    pub publish_dir: Option<PathBuf>,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions { every: DEFAULT_SEAL_EVERY, key: SealKey::Generate, publish_dir: None }
    }
}

/// How often the sealer runs unless told otherwise.
pub const DEFAULT_SEAL_EVERY: Duration = Duration::from_secs(60);

/// The P-256 key checkpoints are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealKey {
    /// A new key for this run only.
    Generate,
    /// A PKCS#8 PEM file, made (with the public key beside it, `.pub.pem`) if it does not exist.
    File(PathBuf),
}

/// Where to find the key checkpoints are signed with.
#[derive(Debug, Clone)]
pub struct SealKeyInfo {
    pub key_id: String,
    /// The public key as PEM, when the key lives in a file.
    pub public_key_file: Option<PathBuf>,
    /// The log origin of the development tenant's chain.
    pub origin: String,
    /// The witnesses each new head goes to.
    pub witnesses: Vec<String>,
    /// Where checkpoints are published, if anywhere.
    pub publish_dir: Option<PathBuf>,
}

/// The signer for `key`, and the public key's file.
fn seal_key(key: &SealKey) -> Result<(Arc<LocalSigner>, Option<PathBuf>), BoxError> {
    let path = match key {
        SealKey::Generate => return Ok((Arc::new(LocalSigner::generate()?), None)),
        SealKey::File(path) => path,
    };
    let public = path.with_extension("pub.pem");
    let signer = match std::fs::read_to_string(path) {
        Ok(pem) => LocalSigner::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = LocalSigner::generate()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &signer.private_key_pem())?;
            signer
        }
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    std::fs::write(&public, public_key_pem(signer.public_key_der()))?;
    Ok((Arc::new(signer), Some(public)))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(pem.as_bytes())
}

/// Credentials a newcomer can use at once.
#[derive(Debug, Clone)]
pub struct DevCredentials {
    /// A JWT for tenant `local` with every scope — only when no JWT key is configured, so that the
    /// gateway signs with a secret it generated itself and nobody else holds. (Pointed at a real
    /// identity provider's or a deployment's key, it never mints tokens valid there.)
    pub token: Option<Secret>,
    /// An API key for tenant `local` with `audit:read audit:write`.
    pub api_key: Secret,
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub credentials: DevCredentials,
    pub storage: Storage,
    connections: Arc<dyn ConnectionStore>,
    sessions: Arc<Sessions>,
    pub seal_key: SealKeyInfo,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The connection records, as `$connect` and `$disconnect` leave them.
    pub fn connections(&self) -> &Arc<dyn ConnectionStore> {
        &self.connections
    }

    /// The open WebSocket sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Stops accepting, closes every WebSocket session, and waits for the server to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.server.await;
        for task in self.tasks {
            task.abort();
        }
    }
}

struct Gateway {
    api: AuditApi,
    auth: Authenticator,
    connections: Arc<dyn ConnectionStore>,
    connection_limits: ConnectionLimits,
    sessions: Arc<Sessions>,
    limits: Limits,
    /// Pages of these origins may call the HTTP API (CORS), as API Gateway's CORS configuration.
    cors: OriginPolicy,
    viewer: ViewerConfig,
}

/// The storage side: stores and key records, memory or DynamoDB.
struct Backends {
    store: Arc<dyn AuditStore>,
    /// The same store's checkpoints and tiles.
    seal: Arc<dyn SealStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    connections: Arc<dyn ConnectionStore>,
    api_keys: Arc<dyn ApiKeyStore>,
    /// The same key records, as the authenticator sees them.
    key_validator: Arc<dyn ApiKeyValidator>,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
}

/// Creates the table unless it exists. A DynamoDB API that fails now and then (throttling, a
/// dropped reply) must not stop the gateway from starting: transient failures are tried again.
async fn ensure_table(client: &aws_sdk_dynamodb::Client, spec: &TableSpec, name: &str) -> Result<(), BoxError> {
    const ATTEMPTS: u32 = 6;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        match client.describe_table().table_name(name).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                // Any failure here may be a lost reply: look again before trying again.
                match tables::create_table(client, spec, name).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
        }
    }
    Err(format!("table {name}: {last}").into())
}

async fn backends(storage: &Storage, config: &Config, limits: &Limits) -> Result<Backends, BoxError> {
    Ok(match storage {
        Storage::Memory { max_entries, max_bytes } => {
            let keys = Arc::new(MemoryApiKeys::new());
            let store = Arc::new(MemoryStore::bounded(*max_entries, *max_bytes));
            Backends {
                store: store.clone(),
                seal: store,
                idempotency: Arc::new(MemoryIdempotency::bounded(limits.idempotency_bytes)),
                connections: Arc::new(MemoryConnections::new()),
                api_keys: keys.clone(),
                key_validator: keys,
                dynamodb: None,
            }
        }
        Storage::DynamoDb { endpoint } => {
            let client = client_for_local_endpoint(endpoint, None);
            for (spec, name) in [
                (&ENTRIES, &config.entries_table),
                (&COUNTERS, &config.counters_table),
                (&API_KEYS, &config.api_keys_table),
                (&IDEMPOTENCY, &config.idempotency_table),
                (&CONNECTIONS, &config.connections_table),
                (&CHECKPOINTS, &config.checkpoints_table),
                (&PROOFS, &config.proofs_table),
            ] {
                ensure_table(&client, spec, name).await.map_err(|e| format!("table {name} at {endpoint}: {e}"))?;
            }
            let keys = Arc::new(DynamoApiKeys::new(client.clone(), &config.api_keys_table));
            let store = Arc::new(auditline::bootstrap::dynamo_store(client.clone(), config));
            Backends {
                store: store.clone(),
                seal: store,
                idempotency: Arc::new(DynamoIdempotency::new(client.clone(), &config.idempotency_table)),
                connections: Arc::new(DynamoConnections::new(client.clone(), &config.connections_table)),
                api_keys: keys.clone(),
                key_validator: keys,
                dynamodb: Some(client),
            }
        }
    })
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the gateway and its live feed; returns once it is listening.
pub async fn start(options: Options) -> Result<Running, BoxError> {
    let mut config = options.config;
    // What verifiers are told about how late a seal may be: this gateway's own timer.
    config.seal.schedule_seconds = options.seal.every.as_secs().clamp(1, u64::from(MAX_SEAL_DELAY_SECONDS)) as u32;
    let backends = backends(&options.storage, &config, &options.limits).await?;

    // With no JWT key configured, the gateway signs its own development tokens.
    let own_secret =
        config.auth.jwt_secret.is_none() && config.auth.jwt_public_key.is_none() && config.auth.jwt_jwks_url.is_none();
    if own_secret {
        config.auth.jwt_secret = Some(Secret::new(random_secret()));
        config.auth.jwt_algorithm = "HS256".into();
    }
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e} (set --port or AUDITLINE_PORT)", options.bind))?;
    let addr = listener.local_addr()?;
    // The live feed takes pages of the allowed origins and of this gateway's own (its viewer).
    let cors = config.auth.origins.clone();
    config.auth.origins = config.auth.origins.clone().with(&format!("http://{addr}"));
    if addr.ip().is_loopback() {
        config.auth.origins = config.auth.origins.clone().with(&format!("http://localhost:{}", addr.port()));
    }
    let auth = Authenticator::from_settings(&config.auth, Some(backends.key_validator.clone()))?;
    let now = chrono::Utc::now();
    let token = match (&config.auth.jwt_secret, own_secret) {
        (Some(secret), true) => {
            let algorithm = auditline::auth::jwt::parse_algorithm(&config.auth.jwt_algorithm)?;
            let mut claims = json!({
                "sub": "developer",
                "tenant_id": DEV_TENANT,
                "scope": "*",
                "iat": now.timestamp(),
                "exp": (now + chrono::Duration::hours(DEV_TOKEN_HOURS)).timestamp(),
            });
            if let Some(iss) = &config.auth.jwt_issuer {
                claims["iss"] = json!(iss);
            }
            if let Some(aud) = &config.auth.jwt_audience {
                claims["aud"] = json!(aud);
            }
            Some(Secret::new(sign_hmac(algorithm, secret.expose().as_bytes(), &claims)?))
        }
        _ => None,
    };
    let key = api_keys::generate(
        TenantId::parse(DEV_TENANT)?,
        "developer",
        vec!["audit:read".into(), "audit:write".into()],
        Some("local gateway".into()),
        Some(now + chrono::Duration::hours(DEV_TOKEN_HOURS)),
        now,
    )?;
    backends.api_keys.insert(&key.record).await?;

    let logger = Arc::new(AuditLogger::new(backends.store.clone(), config.audit));
    let (signer, public_key_file) = seal_key(&options.seal.key)?;
    let limits = options.limits;
    let sessions = Arc::new(Sessions::new(limits.max_sessions, limits.session_buffer_bytes));
    let pusher: Arc<dyn Pusher> = match options.push_faults_per_mille {
        0 => sessions.clone(),
        share => {
            tracing::warn!(per_mille = share, "live feed posts fail on purpose (AUDITLINE_PUSH_FAULTS_PER_MILLE)");
            Arc::new(push_faults::FaultyPusher::new(sessions.clone(), share))
        }
    };
    let feed_pusher = pusher.clone();
    let feed = FeedDeps::new(backends.connections.clone(), pusher, FanoutSettings::default());
    let consumers = source::Consumers { feed, archive: options.archive.as_ref().map(ArchiveTarget::sink) };
    let source = match (&options.storage, &backends.dynamodb) {
        (Storage::DynamoDb { endpoint }, Some(client)) => {
            let streams = aws_sdk_dynamodbstreams::Client::from_conf(
                aws_sdk_dynamodbstreams::Config::builder()
                    .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
                    .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new(
                        "local",
                        "local",
                        None,
                        None,
                        "auditline-local",
                    ))
                    .endpoint_url(endpoint)
                    .build(),
            );
            source::follow_stream(client.clone(), streams, config.entries_table.clone(), consumers).await?
        }
        _ => source::follow_listener(&logger, consumers),
    };

    let connections = backends.connections.clone();
    let gateway = Arc::new(Gateway {
        api: AuditApi {
            logger,
            idempotency: backends.idempotency,
            health_timeout: auditline::bootstrap::HEALTH_TIMEOUT,
            auth_methods: config.auth.allowed_methods.iter().map(AuthMethod::to_string).collect(),
            seal: backends.seal.clone(),
            seal_settings: config.seal,
            keys: Arc::new(StaticKeys::of(signer.as_ref())),
            witnesses: config.witnesses.iter().map(|w| (w.url.clone(), w.key.clone())).collect(),
            log_reads: config.log_reads,
        },
        auth,
        connections: backends.connections,
        connection_limits: config.connection_limits,
        sessions: sessions.clone(),
        limits,
        cors,
        // Only a gateway on loopback offers its development key to the page (it prints it anyway).
        viewer: ViewerConfig {
            websocket_url: None,
            development_api_key: addr.ip().is_loopback().then(|| key.key.expose().to_owned()),
        },
    });
    let app = Router::new().route("/ws", any(websocket_upgrade)).fallback(http_request).with_state(gateway);
    let (shutdown, stop) = oneshot::channel::<()>();
    let closing = sessions.clone();
    let server = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let stopped = async move {
            let _ = stop.await;
            closing.close_all();
        };
        if let Err(e) = axum::serve(listener, service).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    // The sealer on a timer: the same code as the scheduled seal function, with a local key.
    let mut sinks: Vec<Arc<dyn CheckpointSink>> =
        vec![Arc::new(CheckpointFeed { connections: connections.clone(), pusher: feed_pusher })];
    if let Some(dir) = &options.seal.publish_dir {
        sinks.push(Arc::new(DirectoryCheckpoints { root: dir.clone() }));
    }
    let witnesses = config
        .witnesses
        .iter()
        .map(|w| Arc::new(HttpWitness::new(&w.url, w.key.clone())) as Arc<dyn WitnessClient>)
        .collect();
    let sealer = Sealer::new(backends.seal, signer.clone(), config.seal)
        .with_origin(config.log_origin.clone())
        .with_witnesses(witnesses)
        .with_sinks(sinks);
    let every = options.seal.every;
    let sealing = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            if let Err(e) = sealer.run(chrono::Utc::now()).await {
                tracing::error!(error = %e, "sealing failed; the next tick tries again");
            }
        }
    });
    Ok(Running {
        addr,
        credentials: DevCredentials { token, api_key: key.key },
        storage: options.storage,
        connections,
        sessions,
        seal_key: SealKeyInfo {
            key_id: signer.key_id().to_owned(),
            public_key_file,
            origin: format!("{}/{DEV_TENANT}", config.log_origin),
            witnesses: config.witnesses.iter().map(|w| w.url.clone()).collect(),
            publish_dir: options.seal.publish_dir.clone(),
        },
        shutdown,
        server,
        tasks: vec![source, sealing],
    })
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("status and header are valid")
}

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Every HTTP request: route it as API Gateway would, authorize it with the authorizer, then hand
/// the route's event to its handler.
async fn http_request(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let method = parts.method.as_str().to_owned();
    let origin = parts.headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if method == "OPTIONS" && !gateway.cors.is_empty() {
        return preflight(&gateway.cors, origin.as_deref());
    }
    if method == "GET" && viewer::serves(&path) {
        let answer = viewer::respond(&path, &gateway.viewer);
        let mut response = Response::builder().status(answer.status);
        for (name, value) in answer.headers {
            response = response.header(name, value);
        }
        return response.body(Body::from(answer.body)).expect("status and headers are valid");
    }
    let Some((route, mut path_parameters)) = Route::resolve(&method, &path) else {
        return json_response(404, &json!({"message": "Not Found"}));
    };
    // API Gateway hands path parameters to the function decoded.
    for (_, value) in &mut path_parameters {
        *value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
    }
    let mut response = route_request(&gateway, route, &path_parameters, parts, body, peer, &raw_query).await;
    if let Some(origin) = origin.filter(|o| gateway.cors.allows(o)) {
        allow_origin(response.headers_mut(), &origin);
        let exposed = http::HeaderValue::from_str(&origins::EXPOSED_HEADERS.join(", ")).expect("ASCII");
        response.headers_mut().insert("access-control-expose-headers", exposed);
    }
    response
}

fn allow_origin(headers: &mut http::HeaderMap, origin: &str) {
    if let Ok(value) = http::HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", value);
    }
    headers.insert("vary", http::HeaderValue::from_static("origin"));
}

/// A CORS preflight, answered as API Gateway answers it for an HTTP API with a CORS configuration:
/// 204, with the allowance only for an origin on the list (the browser then refuses the others).
fn preflight(cors: &OriginPolicy, origin: Option<&str>) -> Response {
    let mut response = Response::builder().status(204).body(Body::empty()).expect("a valid response");
    if let Some(origin) = origin.filter(|o| cors.allows(o)) {
        let headers = response.headers_mut();
        allow_origin(headers, origin);
        let list = |items: &[&str]| http::HeaderValue::from_str(&items.join(", ")).expect("ASCII");
        headers.insert("access-control-allow-methods", list(origins::ALLOWED_METHODS));
        headers.insert("access-control-allow-headers", list(origins::ALLOWED_HEADERS));
        headers.insert("access-control-max-age", http::HeaderValue::from(origins::MAX_AGE_SECONDS));
    }
    response
}

/// One API route: the authorizer, then the route's handler, as API Gateway runs them.
async fn route_request(
    gateway: &Gateway,
    route: Route,
    path_parameters: &[(&'static str, String)],
    parts: http::request::Parts,
    body: Body,
    peer: SocketAddr,
    raw_query: &str,
) -> Response {
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    // Read at most one byte more than the limit: enough for the handler to answer 413.
    let body = match http_body_util::Limited::new(body, MAX_BODY_BYTES + 1).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => vec![b' '; MAX_BODY_BYTES + 1],
    };
    let request_id = request_id();
    let r = HttpRequest {
        route_key: route.route_key(),
        method: &method,
        path: &path,
        raw_query,
        headers: &parts.headers,
        source_ip: peer.ip(),
        request_id: &request_id,
    };
    // Every route has the authorizer, as deployed; the public health check lets callers without
    // credentials in and tells those with `audit:read` more.
    let event = serde_json::from_value(events::http_authorizer(&r)).unwrap_or_default();
    let decision = authorize_http(&event, &gateway.auth).await;
    if !decision.is_authorized {
        // What API Gateway answers for a denial: no reason given.
        return json_response(403, &json!({"message": "Forbidden"}));
    }
    let authorizer = Some(decision.context).filter(|c| c.as_object().is_some_and(|o| !o.is_empty()));
    let event = events::http_request(&r, path_parameters, &body, authorizer.as_ref());
    let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "could not build the API Gateway event");
            return json_response(500, &json!({"message": "Internal Server Error"}));
        }
    };
    let response = handle(route, lambda_request, &gateway.api).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, Body::from(bytes))
}

/// A WebSocket upgrade: the `$connect` authorizer, then the `$connect` integration, then the session.
async fn websocket_upgrade(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let connection_id =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &uuid::Uuid::now_v7().as_bytes()[6..]);
    let raw_query = query.unwrap_or_default();
    let u = Upgrade { connection_id: &connection_id, raw_query: &raw_query, headers: &headers, source_ip: peer.ip() };
    let event = serde_json::from_value(events::websocket_authorizer(&u)).unwrap_or_default();
    let decision = authorize_websocket(&event, &gateway.auth).await;
    let allowed = decision
        .policy_document
        .statement
        .first()
        .is_some_and(|s| s.effect == aws_lambda_events::iam::IamPolicyEffect::Allow);
    if !allowed {
        return json_response(403, &json!({"message": "Forbidden"}));
    }
    // The session's queue exists before the record does: no entry can find one without the other.
    let Some(queue) = gateway.sessions.register(&connection_id) else {
        return json_response(
            503,
            &json!({"error": {"code": "unavailable", "message": "this gateway has as many live connections as it takes; retry later"}}),
        );
    };
    let principal = decision.principal_id.unwrap_or_default();
    let connect = events::websocket_connect(&u, &principal, &decision.context);
    let connected = match serde_json::from_value(connect) {
        Ok(event) => {
            websocket::connect(&event, gateway.connections.as_ref(), gateway.connection_limits, chrono::Utc::now())
                .await
        }
        Err(_) => {
            gateway.sessions.remove(&connection_id);
            return json_response(500, &json!({"message": "Internal Server Error"}));
        }
    };
    if connected.status_code != 200 {
        gateway.sessions.remove(&connection_id);
        let body = match connected.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => serde_json::from_str(&t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        return json_response(connected.status_code as u16, &body);
    }
    let upgrade = upgrade
        .max_frame_size(gateway.limits.max_frame_bytes)
        .max_message_size(gateway.limits.max_client_message_bytes);
    let upgrade = match extract::negotiated_subprotocol(&headers) {
        Some(protocol) => upgrade.protocols([protocol]),
        None => upgrade,
    };
    upgrade.on_upgrade(move |socket| session(socket, queue, gateway, connection_id)).into_response()
}

/// One open WebSocket: forwards the feed's messages until either side closes, then `$disconnect`.
async fn session(socket: WebSocket, mut queue: Outbox, gateway: Arc<Gateway>, connection_id: String) {
    let (mut outgoing, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = queue.next() => match message {
                Some(text) => {
                    if outgoing.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = outgoing.send(Message::Close(None)).await;
                    break;
                }
            },
            received = incoming.next() => match received {
                // The API routes nothing from clients: their messages are read and dropped. One
                // over the size limits is an error that ends the session.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    gateway.sessions.remove(&connection_id);
    match serde_json::from_value(events::websocket_disconnect(&connection_id)) {
        Ok(event) => {
            websocket::disconnect(&event, gateway.connections.as_ref()).await;
        }
        Err(e) => tracing::error!(error = %e, "could not build the $disconnect event"),
    }
}

/// Where the gateway keeps its signing key unless `AUDITLINE_SEAL_KEY_FILE` says otherwise: kept
/// between runs, so a chain stored in a DynamoDB API verifies with one key.
pub const DEFAULT_SEAL_KEY_FILE: &str = ".auditline/seal-key.pem";

/// Options from the environment (the same variables as the deployed functions), the bind address
/// and how often to seal.
pub fn options_from_env(
    host: IpAddr,
    port: u16,
    seal_every: Duration,
    archive_dir: Option<PathBuf>,
    publish_dir: Option<PathBuf>,
    witnesses: &[String],
) -> Result<Options, BoxError> {
    let mut config = Config::from_env()?;
    for witness in witnesses {
        config.witnesses.extend(auditline::config::parse_witnesses(witness).map_err(|e| format!("--witness: {e}"))?);
    }
    // A directory if given; else the S3 API at S3_ENDPOINT, when ARCHIVE_BUCKET names a bucket.
    let archive = match (archive_dir, &config.archive_bucket, &config.s3_endpoint) {
        (Some(dir), _, _) => Some(ArchiveTarget::Directory(dir)),
        (None, Some(bucket), Some(endpoint)) => {
            Some(ArchiveTarget::S3 { endpoint: endpoint.clone(), bucket: bucket.clone() })
        }
        (None, Some(_), None) => return Err("ARCHIVE_BUCKET needs S3_ENDPOINT (the local S3 API) here".into()),
        (None, None, _) => None,
    };
    let storage = match &config.dynamodb_endpoint {
        Some(endpoint) => Storage::DynamoDb { endpoint: endpoint.clone() },
        None => Storage::Memory {
            max_entries: number_from_env("AUDITLINE_MEMORY_ENTRIES", DEFAULT_MEMORY_ENTRIES, 1)?,
            max_bytes: number_from_env("AUDITLINE_MEMORY_MB", DEFAULT_MEMORY_BYTES >> 20, 16)? << 20,
        },
    };
    let limits = Limits {
        max_sessions: number_from_env("AUDITLINE_MAX_SESSIONS", Limits::default().max_sessions, 1)?,
        ..Limits::default()
    };
    let key =
        std::env::var("AUDITLINE_SEAL_KEY_FILE").map_or_else(|_| PathBuf::from(DEFAULT_SEAL_KEY_FILE), PathBuf::from);
    let seal = SealOptions { every: seal_every, key: SealKey::File(key), publish_dir };
    let push_faults_per_mille = number_from_env("AUDITLINE_PUSH_FAULTS_PER_MILLE", 0, 0)? as u64;
    if push_faults_per_mille > 1000 {
        return Err("AUDITLINE_PUSH_FAULTS_PER_MILLE is a share per thousand: 0 to 1000".into());
    }
    Ok(Options { bind: SocketAddr::new(host, port), storage, config, limits, seal, archive, push_faults_per_mille })
}

/// A whole number of at least `min` from `variable`, or `default` when unset.
fn number_from_env(variable: &str, default: usize, min: usize) -> Result<usize, BoxError> {
    match std::env::var(variable) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| format!("{variable} must be a whole number of at least {min}").into()),
    }
}

/// Waits this long for in-flight requests after Ctrl-C before giving up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
