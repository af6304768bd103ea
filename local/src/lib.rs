//! The local gateway: both APIs on one loopback port, served by the very handlers Lambda runs.
//!
//! Each HTTP request becomes an API Gateway HTTP API event — first the authorizer's, then the
//! route's — and each WebSocket upgrade the `$connect` authorizer's and integration's events; the
//! live feed runs the stream handler over batches of new entries. Storage is in memory by default,
//! or any DynamoDB API endpoint.

pub mod events;
mod http;
pub mod push_faults;
mod seal_loop;
pub mod sessions;
pub mod source;
pub mod storage;
mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditline::apigw::http::AuditApi;
use auditline::apigw::stream::FeedDeps;
use auditline::archive::{ArchiveSink, DirectorySink};
use auditline::auth::Secret;
use auditline::auth::jwt::sign_hmac;
use auditline::auth::origins::OriginPolicy;
use auditline::auth::{AuthMethod, Authenticator};
use auditline::integrity::signing::Signer;
use auditline::realtime::checkpoints::CheckpointFeed;
use auditline::realtime::fanout::FanoutSettings;
use auditline::realtime::{ConnectionLimits, ConnectionStore, Pusher};
use auditline::seal::publish::DirectoryCheckpoints;
use auditline::seal::{CheckpointSink, MAX_SEAL_DELAY_SECONDS, Sealer, StaticKeys, WitnessClient};
use auditline::store::eventbridge::{AwsEventBus, TrustProbe};
use auditline::store::s3::S3Archive;
use auditline::streams::admin::StreamAdmin;
use auditline::streams::delivery::Deliverer;
use auditline::streams::outbound::Loopback;
use auditline::streams::queue::{JobQueue, WorkerSettings, run_worker};
use auditline::streams::route::Router as StreamRouter;
use auditline::streams::transport::{EventBus, HttpLimits, HttpSender, SafeHttp};
use auditline::viewer::ViewerConfig;
use auditline::witness::client::HttpWitness;
use auditline::{AuditLogger, Config};
use axum::Router;
use axum::routing::any;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::seal_loop::{DEFAULT_SEAL_EVERY, SealKey, SealKeyInfo, SealOptions};
use self::sessions::Sessions;
pub use self::storage::Storage;

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
    /// How log streams deliver from here.
    pub streams: StreamOptions,
}

/// How the gateway's log streams deliver: the same code as the deployed functions, with a local
/// queue and worker in place of SQS.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Plain HTTP to loopback receivers (a developer's own): allowed unless turned off
    /// (`AUDITLINE_STREAMS_LOOPBACK=false`); deployed functions never allow it.
    pub loopback: Loopback,
    pub http: HttpLimits,
    pub worker: WorkerSettings,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            loopback: Loopback::AllowedOverHttp,
            http: HttpLimits::default(),
            worker: WorkerSettings::default(),
        }
    }
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
    /// The SQLite file, when the data lives in one.
    pub database: Option<PathBuf>,
    /// How many entries it held at start.
    pub entries_at_start: Option<u64>,
    /// The data directory's store and lock, held while the gateway runs.
    local: Option<storage::Local>,
    connections: Arc<dyn ConnectionStore>,
    sessions: Arc<Sessions>,
    pub seal_key: SealKeyInfo,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    stop_worker: tokio::sync::watch::Sender<bool>,
    jobs: Arc<dyn JobQueue>,
}

impl Running {
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The SQLite store, when the data lives in one.
    pub fn sqlite_store(&self) -> Option<&auditline::store::SqliteStore> {
        self.local.as_ref().map(|l| &l.store)
    }

    /// The connection records, as `$connect` and `$disconnect` leave them.
    pub fn connections(&self) -> &Arc<dyn ConnectionStore> {
        &self.connections
    }

    /// The open WebSocket sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The log streams' delivery queue (jobs waiting, dead letters).
    pub fn delivery_queue(&self) -> &Arc<dyn JobQueue> {
        &self.jobs
    }

    /// Stops accepting, closes every WebSocket session, and waits for the server to finish.
    pub async fn shutdown(self) {
        let _ = self.stop_worker.send(true);
        let _ = self.shutdown.send(());
        let _ = self.server.await;
        for task in self.tasks {
            task.abort();
        }
        // Writes already queued are committed and the file closed whole; then the lock goes.
        if let Some(local) = self.local {
            let _ = tokio::task::spawn_blocking(move || {
                local.store.close();
                drop(local);
            })
            .await;
        }
    }
}

pub(crate) struct Gateway {
    pub(crate) api: AuditApi,
    pub(crate) auth: Authenticator,
    pub(crate) connections: Arc<dyn ConnectionStore>,
    pub(crate) connection_limits: ConnectionLimits,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) limits: Limits,
    /// Pages of these origins may call the HTTP API (CORS), as API Gateway's CORS configuration.
    pub(crate) cors: OriginPolicy,
    pub(crate) viewer: ViewerConfig,
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
    let backends = storage::backends(&options.storage, &config, &options.limits).await?;

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
    let api_key = storage::dev_api_key(&backends, now).await?;

    let logger = Arc::new(
        AuditLogger::new(backends.store.clone(), config.audit)
            .with_policies(backends.policies.clone())
            .with_archive_keys(backends.archive_keys.clone())
            .with_sweep_budget(auditline::logger::HOLD_SWEEP_BUDGET),
    );
    let (signer, public_key_file) = seal_loop::seal_key(&options.seal.key)?;
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
    // Log streams: the deployed functions' code, with the local queue and worker for SQS. Loopback
    // receivers only for a gateway on loopback: one others reach must not deliver to its own host.
    let loopback = if addr.ip().is_loopback() { options.streams.loopback } else { Loopback::Refused };
    let http: Arc<dyn HttpSender> = Arc::new(SafeHttp::new(loopback, options.streams.http));
    // EventBridge destinations, where a local EventBridge API is named (EVENTS_ENDPOINT; its STS
    // too, or STS_ENDPOINT's).
    let bus = match &config.events_endpoint {
        Some(events) => {
            // An emulator's STS grants any external id: asking it whether a role requires one
            // would refuse every role.
            let sts = config.sts_endpoint.as_deref().unwrap_or(events);
            let local = AwsEventBus::for_local_endpoint(events, sts, TrustProbe::Skip).await;
            Some(Arc::new(local) as Arc<dyn EventBus>)
        }
        None => None,
    };
    let deliverer = Arc::new(Deliverer::new(
        backends.streams.clone(),
        backends.secret_box.clone(),
        logger.clone(),
        http,
        bus,
        config.stream_retry,
    ));
    let stream_admin = Arc::new(StreamAdmin {
        streams: backends.streams.clone(),
        secrets: backends.secret_box.clone(),
        trail: logger.clone(),
        deliverer: deliverer.clone(),
        loopback,
    });
    // No cache: a stream created here takes the very next entries.
    let router = Arc::new(StreamRouter::new(backends.streams.clone(), backends.jobs.clone(), Duration::ZERO));
    let (stop_worker, worker_stop) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(run_worker(backends.jobs.clone(), deliverer, options.streams.worker, worker_stop));
    let consumers = source::Consumers {
        feed,
        archive: options.archive.as_ref().map(ArchiveTarget::sink),
        archive_keys: backends.archive_keys.clone(),
        // On SQLite the store routes, from its position (below); elsewhere the feed does.
        streams: backends.sqlite.is_none().then(|| router.clone()),
    };
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

    let routing = backends.sqlite.as_ref().map(|local| source::follow_routing(&logger, local.store.clone(), router));

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
            streams: Some(stream_admin),
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
            development_api_key: addr.ip().is_loopback().then(|| api_key.expose().to_owned()),
        },
    });
    let app =
        Router::new().route("/ws", any(websocket::websocket_upgrade)).fallback(http::http_request).with_state(gateway);
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
    let mut tasks = vec![source, seal_loop::spawn(sealer, options.seal.every), worker];
    tasks.extend(routing);
    let (database, entries_at_start) = match &backends.sqlite {
        Some(local) => {
            tasks.push(storage::spawn_purge(local.store.clone()));

            (Some(local.store.path().to_owned()), Some(local.store.entry_count().await?))
        }
        None => (None, None),
    };
    Ok(Running {
        addr,
        credentials: DevCredentials { token, api_key },
        storage: options.storage,
        database,
        entries_at_start,
        local: backends.sqlite,
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
        tasks,
        stop_worker,
        jobs: backends.jobs,
    })
}

/// The seal key's file in a data directory: kept between runs, beside the data it seals, so that
/// one chain verifies with one key.
pub const SEAL_KEY_FILE: &str = "seal-key.pem";

/// The default data directory: the database, the seal key and the development key.
pub const DEFAULT_DATA_DIR: &str = ".auditline";

/// Where the data lives when no DynamoDB API is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataChoice {
    /// A SQLite file in this directory (the default).
    Directory(PathBuf),
    /// Memory only: gone at exit (tests, benchmarks), and so is the seal key — a key kept on disk
    /// would sign a new genesis over a forgotten chain at every start.
    Memory,
}

/// Options from the environment (the same variables as the deployed functions), the bind address
/// and how often to seal.
pub fn options_from_env(
    host: IpAddr,
    port: u16,
    seal_every: Duration,
    archive_dir: Option<PathBuf>,
    publish_dir: Option<PathBuf>,
    witnesses: &[String],
    data: DataChoice,
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
    // DYNAMODB_ENDPOINT wins; then --memory; else the data directory's SQLite file.
    let storage = match (&config.dynamodb_endpoint, &data) {
        (Some(endpoint), _) => Storage::DynamoDb { endpoint: endpoint.clone() },
        (None, DataChoice::Memory) => Storage::Memory {
            max_entries: number_from_env("AUDITLINE_MEMORY_ENTRIES", DEFAULT_MEMORY_ENTRIES, 1)?,
            max_bytes: number_from_env("AUDITLINE_MEMORY_MB", DEFAULT_MEMORY_BYTES >> 20, 16)? << 20,
        },
        (None, DataChoice::Directory(dir)) => Storage::Sqlite { dir: dir.clone() },
    };
    let limits = Limits {
        max_sessions: number_from_env("AUDITLINE_MAX_SESSIONS", Limits::default().max_sessions, 1)?,
        ..Limits::default()
    };
    // The seal key lives as long as the data it seals: in the data directory (with a DynamoDB API
    // too: its tables outlive the process), for this run only in memory; unless told otherwise.
    let key = match (std::env::var_os("AUDITLINE_SEAL_KEY_FILE"), &storage, &data) {
        (Some(file), _, _) => SealKey::File(PathBuf::from(file)),
        (None, Storage::Memory { .. }, _) => SealKey::Generate,
        (None, _, DataChoice::Directory(dir)) => SealKey::File(dir.join(SEAL_KEY_FILE)),
        (None, _, DataChoice::Memory) => SealKey::File(Path::new(DEFAULT_DATA_DIR).join(SEAL_KEY_FILE)),
    };
    let seal = SealOptions { every: seal_every, key, publish_dir };
    let push_faults_per_mille = number_from_env("AUDITLINE_PUSH_FAULTS_PER_MILLE", 0, 0)? as u64;
    if push_faults_per_mille > 1000 {
        return Err("AUDITLINE_PUSH_FAULTS_PER_MILLE is a share per thousand: 0 to 1000".into());
    }
    let loopback = match std::env::var("AUDITLINE_STREAMS_LOOPBACK").ok().as_deref().map(str::trim) {
        None | Some("" | "true" | "1") => Loopback::AllowedOverHttp,
        Some("false" | "0") => Loopback::Refused,
        Some(_) => return Err("AUDITLINE_STREAMS_LOOPBACK is true or false".into()),
    };
    let streams = StreamOptions { loopback, ..StreamOptions::default() };
    Ok(Options {
        bind: SocketAddr::new(host, port),
        storage,
        config,
        limits,
        seal,
        archive,
        push_faults_per_mille,
        streams,
    })
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
