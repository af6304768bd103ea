//! A fault-injecting proxy between the gateway and a DynamoDB API: each request is passed through,
//! or, on a chosen share of requests, answered with throttling, a 500 or a 503, dropped before it
//! reaches the backend, dropped after the backend did it (the reply lost: the ambiguous case), or
//! delayed. Pass-through with every share at zero: the same requests, to show what is the backend's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::wire::{read_reply, read_request, respond};

/// Shares of requests, in per mille, that meet each fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultMix {
    pub throttle: u32,
    pub server_error: u32,
    pub unavailable: u32,
    pub drop_before: u32,
    pub drop_after: u32,
    /// Added to every request that passes.
    pub latency: Duration,
}

impl FaultMix {
    /// The mix the soak runs with "faults on": 2 % of each kind, 2 ms added.
    pub fn standard() -> Self {
        FaultMix {
            throttle: 20,
            server_error: 20,
            unavailable: 20,
            drop_before: 20,
            drop_after: 20,
            latency: Duration::from_millis(2),
        }
    }
}

/// Requests seen, and faults injected, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicUsize,
    pub throttled: AtomicUsize,
    pub server_errors: AtomicUsize,
    pub unavailable: AtomicUsize,
    pub dropped_before: AtomicUsize,
    pub dropped_after: AtomicUsize,
    /// 5xx answers of the backend itself (passed on).
    pub backend_errors: AtomicUsize,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<FaultCounts>,
    /// Operations (`PutItem`) whose next replies are to be lost after the backend did them.
    lose: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A small deterministic generator (xorshift): runs with the same seed meet the same faults.
fn next(state: &AtomicU64) -> u64 {
    let mut x = state.load(Ordering::Relaxed);
    loop {
        let mut y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
        match state.compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return y,
            Err(actual) => x = actual,
        }
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str, mix: FaultMix, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            counts: Arc::default(),
            lose: Arc::default(),
        };
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let counts = proxy.counts.clone();
        let lose = proxy.lose.clone();
        let random = Arc::new(AtomicU64::new(seed.max(1)));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (upstream, counts, random, lose) = (upstream.clone(), counts.clone(), random.clone(), lose.clone());
                tokio::spawn(async move { serve(socket, &upstream, mix, &counts, &random, &lose).await });
            }
        });
        proxy
    }

    /// The next reply to `operation` is lost after the backend did the request.
    pub fn lose_next_reply(&self, operation: &str) {
        self.lose.lock().unwrap().push(operation.to_owned());
    }
}

fn dynamodb_error(code: &str) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected by the soak's fault proxy"}}"#)
}

async fn serve(
    mut socket: TcpStream,
    upstream: &str,
    mix: FaultMix,
    counts: &FaultCounts,
    random: &AtomicU64,
    lose: &std::sync::Mutex<Vec<String>>,
) {
    // One request per connection (the SDK opens another for the next one).
    let Some(request) = read_request(&mut socket).await else { return };
    let operation = request.header("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or("").to_owned();
    let scripted_loss = {
        let mut pending = lose.lock().unwrap();
        pending.iter().position(|o| *o == operation).map(|i| pending.remove(i)).is_some()
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let roll = (next(random) % 1000) as u32;
    let mut bound = 0;
    let mut hit = |share: u32| {
        bound += share;
        roll < bound
    };
    let json = [("content-type", "application/x-amz-json-1.0")];
    if hit(mix.throttle) {
        counts.throttled.fetch_add(1, Ordering::Relaxed);
        return respond(&mut socket, 400, &json, &dynamodb_error("ThrottlingException")).await;
    }
    if hit(mix.server_error) {
        counts.server_errors.fetch_add(1, Ordering::Relaxed);
        return respond(&mut socket, 500, &json, &dynamodb_error("InternalServerError")).await;
    }
    if hit(mix.unavailable) {
        counts.unavailable.fetch_add(1, Ordering::Relaxed);
        return respond(&mut socket, 503, &json, &dynamodb_error("ServiceUnavailable")).await;
    }
    if hit(mix.drop_before) {
        counts.dropped_before.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let drop_after = hit(mix.drop_after) || scripted_loss;
    if !mix.latency.is_zero() {
        tokio::time::sleep(mix.latency).await;
    }
    let Ok(mut backend) = TcpStream::connect(upstream).await else { return };
    let mut head = request.head_without("connection");
    head.push_str("connection: close\r\n\r\n");
    if backend.write_all(head.as_bytes()).await.is_err() || backend.write_all(&request.body).await.is_err() {
        return;
    }
    let Some(reply) = read_reply(&mut backend).await else { return };
    if reply.starts_with(b"HTTP/1.1 5") || reply.starts_with(b"HTTP/1.0 5") {
        counts.backend_errors.fetch_add(1, Ordering::Relaxed);
    }
    if drop_after {
        // The backend did it; the client never hears.
        counts.dropped_after.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let _ = socket.write_all(&reply).await;
}
