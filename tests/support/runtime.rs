//! A Lambda Runtime API emulator on loopback, to run the functions' real binaries: they poll it for
//! events exactly as they poll Lambda, and post their responses (or errors) back to it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

use super::wire::{read_request, respond};

/// Fresh tables on the local DynamoDB API, and the environment every function gets with them (as
/// the SAM template sets it), plus `extra`.
pub async fn function_environment(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    use auditline::store::dynamo::tables::{
        API_KEYS, ARCHIVE_KEYS, CHECKPOINTS, CONNECTIONS, COUNTERS, ENTRIES, IDEMPOTENCY, PROOFS, STREAMS,
    };
    let (client, _) = super::local_client();
    let mut env = vec![
        ("DYNAMODB_ENDPOINT", super::dynamodb_endpoint()),
        ("AUDIT_ENTRIES_TABLE", super::fresh_table(&client, &ENTRIES, "entries").await),
        ("AUDIT_COUNTERS_TABLE", super::fresh_table(&client, &COUNTERS, "counters").await),
        ("API_KEYS_TABLE", super::fresh_table(&client, &API_KEYS, "keys").await),
        ("IDEMPOTENCY_TABLE", super::fresh_table(&client, &IDEMPOTENCY, "idempotency").await),
        ("CONNECTIONS_TABLE", super::fresh_table(&client, &CONNECTIONS, "connections").await),
        ("CHECKPOINTS_TABLE", super::fresh_table(&client, &CHECKPOINTS, "checkpoints").await),
        ("PROOFS_TABLE", super::fresh_table(&client, &PROOFS, "proofs").await),
        ("ARCHIVE_KEYS_TABLE", super::fresh_table(&client, &ARCHIVE_KEYS, "archive-keys").await),
        ("STREAMS_TABLE", super::fresh_table(&client, &STREAMS, "streams").await),
        ("JWT_SECRET", super::auth::SECRET.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// The binary every function runs (its handler says which function).
pub const LAMBDA_BINARY: &str = "auditline-lambda";

/// What an invocation came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, String)>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<Value>,
    first_poll: Option<Instant>,
    next_id: u64,
}

#[derive(Clone)]
pub struct RuntimeApi {
    /// `host:port`, the value of AWS_LAMBDA_RUNTIME_API.
    pub address: String,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
}

/// A function process under the emulator.
pub struct Function {
    pub api: RuntimeApi,
    pub child: Child,
    pub started: Instant,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = RuntimeApi {
            address: listener.local_addr().unwrap().to_string(),
            state: Arc::default(),
            queued: Arc::new(Notify::new()),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(socket));
            }
        });
        api
    }

    /// Starts the function `name` (the functions' one binary with `name` as its handler).
    pub fn spawn_function(&self, name: &str, env: &[(&str, String)]) -> Function {
        self.spawn(&super::binary(LAMBDA_BINARY), name, env)
    }

    /// Starts `binary` as the function `name` against this emulator with `env` (plus Lambda's own
    /// variables, `_HANDLER` among them).
    pub fn spawn(&self, binary: &Path, name: &str, env: &[(&str, String)]) -> Function {
        let mut command = Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("_HANDLER", name)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let started = Instant::now();
        let child = command.spawn().unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        Function { api: self.clone(), child, started }
    }

    /// Invokes the function with `event` and waits for what it answers.
    pub async fn invoke(&self, event: &Value, wait: Duration) -> Option<Outcome> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.state.lock().unwrap();
            s.next_id += 1;
            let id = format!("request-{}", s.next_id);
            s.waiting.insert(id.clone(), tx);
            s.queue.push_back((id, event.to_string()));
        }
        self.queued.notify_waiters();
        self.queued.notify_one();
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// The error a function reported while starting, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.state.lock().unwrap().init_error.clone()
    }

    /// When the function first asked for an event: it had finished initialising.
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.lock().unwrap().first_poll
    }

    /// Waits until the function polls for its first event.
    pub async fn ready(&self, wait: Duration) -> Option<Instant> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(t) = self.first_poll() {
                return Some(t);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }

    async fn serve(self, mut socket: TcpStream) {
        let Some(request) = read_request(&mut socket).await else { return };
        let (method, path) = (request.method().to_owned(), request.path().to_owned());
        let body = request.body;
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            self.state.lock().unwrap().first_poll.get_or_insert_with(Instant::now);
            let (id, event) = loop {
                let notified = self.queued.notified();
                if let Some(next) = self.state.lock().unwrap().queue.pop_front() {
                    break next;
                }
                notified.await;
            };
            let deadline = (chrono::Utc::now().timestamp_millis() + 30_000).to_string();
            let headers = [
                ("content-type", "application/json"),
                ("lambda-runtime-aws-request-id", id.as_str()),
                ("lambda-runtime-deadline-ms", deadline.as_str()),
                ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:local"),
                ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000"),
            ];
            respond(&mut socket, 200, &headers, &event).await;
            return;
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let parts: Vec<&str> = path.split('/').collect();
        if path.ends_with("/runtime/init/error") {
            self.state.lock().unwrap().init_error = Some(value);
        } else if parts.len() >= 6 && parts[3] == "invocation" {
            let outcome = if parts[5] == "response" { Outcome::Response(value) } else { Outcome::Error(value) };
            if let Some(waiter) = self.state.lock().unwrap().waiting.remove(parts[4]) {
                let _ = waiter.send(outcome);
            }
        }
        respond(&mut socket, 202, &[("content-type", "application/json")], "{}").await;
    }
}

/// How long a test waits for a function to start or answer.
pub const FUNCTION_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The function `name` of the one binary, started against a fresh Runtime API emulator and polling.
pub async fn started_function(name: &str, env: &[(&str, String)]) -> Function {
    let api = RuntimeApi::start().await;
    let f = api.spawn_function(name, env);
    assert!(api.ready(FUNCTION_WAIT).await.is_some(), "{name} starts and polls for events");
    f
}

/// Invokes `f` with `event`; its response (an error fails the test).
pub async fn invoke(f: &Function, event: &Value) -> Value {
    match f.api.invoke(event, FUNCTION_WAIT).await {
        Some(Outcome::Response(v)) => v,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The JSON body of an API Gateway proxy response.
pub fn response_body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}
