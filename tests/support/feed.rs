//! For the live feed: a stand-in for the API Gateway Management API on loopback (for the real
//! aws-sdk-apigatewaymanagement client), and the local DynamoDB API's real stream records turned
//! into the event Lambda would deliver.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use async_trait::async_trait;
use auditline::apigw::management::ApiGatewayPusher;
use auditline::backend::BackendError;
use auditline::domain::TenantId;
use auditline::realtime::{ConnectionCounts, ConnectionStore, MemoryConnections, WebSocketConnectionInfo};
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use super::wire::{read_request, respond};

/// How the stand-in answers posts to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Gone,
    Broken,
    TooLarge,
}

#[derive(Default)]
struct State {
    posts: Vec<(String, Value)>,
    answers: HashMap<String, Answer>,
    attempts: HashMap<String, usize>,
    limit: Option<usize>,
    closed: Vec<String>,
    /// Per mille of the other posts answered 429 or 500 (alternately), deterministically.
    flaky: u64,
    posts_seen: u64,
}

/// Records every PostToConnection; answers 410 GoneException, 500, or 413 PayloadTooLargeException
/// for the connections it is told to, and 413 for any message over `limit` bytes.
#[derive(Clone)]
pub struct ManagementServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl ManagementServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = ManagementServer { url, state: Arc::default() };
        let state = server.state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, state.clone()));
            }
        });
        server
    }

    pub fn answer(&self, connection_id: &str, answer: Answer) {
        self.state.lock().unwrap().answers.insert(connection_id.to_owned(), answer);
    }

    /// Fails `per_mille` of the posts not otherwise answered, with 429 (throttled) and 500 in turn.
    pub fn flaky(&self, per_mille: u64) {
        self.state.lock().unwrap().flaky = per_mille;
    }

    pub fn limit_messages_to(&self, bytes: usize) {
        self.state.lock().unwrap().limit = Some(bytes);
    }

    /// The messages delivered (2xx) to each connection, in order.
    pub fn delivered(&self) -> HashMap<String, Vec<Value>> {
        let mut by_connection: HashMap<String, Vec<Value>> = HashMap::new();
        for (id, message) in &self.state.lock().unwrap().posts {
            by_connection.entry(id.clone()).or_default().push(message.clone());
        }
        by_connection
    }

    /// Entry ids delivered to one connection.
    pub fn entry_ids(&self, connection_id: &str) -> HashSet<String> {
        self.delivered()
            .get(connection_id)
            .map(|ms| ms.iter().map(|m| m["entry"]["id"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Connections closed with DeleteConnection, in order.
    pub fn closed(&self) -> Vec<String> {
        self.state.lock().unwrap().closed.clone()
    }

    /// Posts tried for one connection, answered or not.
    pub fn attempts(&self, connection_id: &str) -> usize {
        self.state.lock().unwrap().attempts.get(connection_id).copied().unwrap_or(0)
    }

    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap();
        s.posts.clear();
        s.attempts.clear();
    }

    /// The real SDK client, pointed here.
    pub fn pusher(&self) -> ApiGatewayPusher {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(&self.url)
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build();
        ApiGatewayPusher::new(aws_sdk_apigatewaymanagement::Client::from_conf(config))
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut socket).await else { return };
    let connection_id = request.path().rsplit('/').next().unwrap_or("").replace("%3D", "=");
    let body = &request.body;
    if request.method() == "DELETE" {
        state.lock().unwrap().closed.push(connection_id);
        respond(&mut socket, 204, &[], "").await;
        return;
    }
    let (status, error_type) = {
        let mut s = state.lock().unwrap();
        *s.attempts.entry(connection_id.clone()).or_default() += 1;
        s.posts_seen += 1;
        // A fixed scatter over the posts (a multiplicative hash of their order).
        let roll = s.posts_seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54;
        let flaky = roll % 1000 < s.flaky;
        match (s.answers.get(&connection_id).copied(), s.limit) {
            (None, _) if flaky && roll.is_multiple_of(2) => (429, Some("LimitExceededException")),
            (None, _) if flaky => (500, Some("InternalServerErrorException")),
            (Some(Answer::Gone), _) => (410, Some("GoneException")),
            (Some(Answer::Broken), _) => (500, Some("InternalServerErrorException")),
            (Some(Answer::TooLarge), _) => (413, Some("PayloadTooLargeException")),
            (None, Some(limit)) if body.len() > limit => (413, Some("PayloadTooLargeException")),
            (None, _) => {
                let message = serde_json::from_slice(body).unwrap_or(Value::Null);
                s.posts.push((connection_id.clone(), message));
                (200, None)
            }
        }
    };
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(error_type.map(|t| ("x-amzn-errortype", t)));
    respond(&mut socket, status, &headers, "{}").await;
}

/// The ids of a tenant's live connections, in id order.
pub async fn connection_ids(store: &dyn auditline::realtime::ConnectionStore, tenant: &str) -> Vec<String> {
    let tenant = super::tenant(tenant);
    let live = store.tenant_connections(&tenant, chrono::Utc::now()).await.expect("connections are read");
    live.into_iter().map(|c| c.connection_id).collect()
}

/// Connection records that take time to read in proportion to their number, as a paged Query does.
pub struct SlowToLoad {
    pub inner: MemoryConnections,
    pub per_thousand: Duration,
}

#[async_trait]
impl ConnectionStore for SlowToLoad {
    async fn put(&self, c: &WebSocketConnectionInfo) -> Result<(), BackendError> {
        self.inner.put(c).await
    }
    async fn remove(&self, id: &str) -> Result<(), BackendError> {
        self.inner.remove(id).await
    }
    async fn tenant_connections(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<WebSocketConnectionInfo>, BackendError> {
        let list = self.inner.tenant_connections(tenant, now).await?;
        tokio::time::sleep(self.per_thousand * (list.len() as u32).div_ceil(1000)).await;
        Ok(list)
    }
    async fn count(&self, t: &TenantId, p: Option<&str>, now: DateTime<Utc>) -> Result<ConnectionCounts, BackendError> {
        self.inner.count(t, p, now).await
    }
    async fn strike(&self, id: &str) -> Result<u32, BackendError> {
        self.inner.strike(id).await
    }
}

/// Every record the table's stream holds, as the DynamoDB-stream event Lambda would deliver.
pub async fn stream_event(client: &Client, table: &str) -> Value {
    let described = client.describe_table().table_name(table).send().await.unwrap();
    let arn = described.table().and_then(|t| t.latest_stream_arn()).expect("the table streams").to_owned();
    let endpoint = super::dynamodb_endpoint();
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new("l", "l", None, None, "t"))
            .endpoint_url(endpoint)
            .build(),
    );
    let stream = streams.describe_stream().stream_arn(&arn).send().await.unwrap();
    let mut records = Vec::new();
    for shard in stream.stream_description().map(|d| d.shards()).unwrap_or_default() {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let mut next = iterator.shard_iterator().map(str::to_owned);
        while let Some(it) = next.take() {
            let out = streams.get_records().shard_iterator(it).limit(1000).send().await.unwrap();
            records.extend(out.records().iter().cloned());
            if !out.records().is_empty() {
                next = out.next_shard_iterator().map(str::to_owned);
            }
        }
    }
    // The conversion the local gateway uses when it follows a stream.
    serde_json::to_value(auditline_local::source::records_to_event(&records, &arn)).unwrap()
}
