//! A log-stream receiver on loopback, as a tenant's SIEM endpoint would be: it records what it
//! accepts and can be told to misbehave — answer 500 to a share of requests, answer slowly, answer
//! 429 with `Retry-After`, redirect, take a delivery and cut the answer, or be down altogether.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::wire::{read_request, respond};

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    /// 500 to this share (per mille) of requests, spread evenly.
    FailShare(u64),
    /// Takes this long, then accepts.
    Slow(Duration),
    /// 429 with `Retry-After: <seconds>` to the next `times` requests, then accepts.
    TooMany {
        retry_after_seconds: u64,
        times: usize,
    },
    /// Records the delivery, then closes without answering, to this share (per mille).
    CutAfterAccept(u64),
    /// 302 to this location.
    Redirect(String),
}

/// One request the receiver accepted (answered 2xx, or recorded before a cut answer).
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The items of a JSON-array or JSON-lines body.
    pub fn items(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&self.body);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => items,
            _ => text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect(),
        }
    }
}

struct State {
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    /// Every request's arrival, answered or not.
    arrivals: Mutex<Vec<Instant>>,
    requests: AtomicU64,
    too_many_left: AtomicUsize,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Headers the receiver keeps (what the tests look at).
const KEPT: [&str; 7] = [
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "dd-api-key",
    "x-receiver-token",
];

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let state = Arc::new(State {
            behaviour: Mutex::new(Behaviour::Accept),
            received: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            too_many_left: AtomicUsize::new(0),
        });
        let receiver = Receiver { port, state, task: Mutex::new(None) };
        receiver.serve(listener);
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn set(&self, behaviour: Behaviour) {
        if let Behaviour::TooMany { times, .. } = &behaviour {
            self.state.too_many_left.store(*times, Ordering::SeqCst);
        }
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Stops listening: connections are refused until [`restart`](Self::restart).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the receiver's port {} cannot be bound again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    // Keep-alive clients send several requests on one connection; each is answered
                    // and the connection closed, so the next one comes on a new connection.
                    let Some(request) = read_request(&mut socket).await else { return };
                    let n = state.requests.fetch_add(1, Ordering::SeqCst);
                    state.arrivals.lock().unwrap().push(Instant::now());
                    let headers: Vec<(String, String)> = KEPT
                        .iter()
                        .filter_map(|name| request.header(name).map(|v| ((*name).to_owned(), v.to_owned())))
                        .collect();
                    let received = Received { at: Instant::now(), headers, body: request.body.clone() };
                    let behaviour = state.behaviour.lock().unwrap().clone();
                    // Spread a share evenly over the requests: request n fails when the share's
                    // running total crosses a whole request.
                    let hit = |per_mille: u64| (n + 1) * per_mille / 1000 != n * per_mille / 1000;
                    match behaviour {
                        Behaviour::Accept => {}
                        Behaviour::FailShare(share) if hit(share) => {
                            respond(&mut socket, 500, &[], "{\"error\":\"scripted\"}").await;
                            return;
                        }
                        Behaviour::FailShare(_) => {}
                        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
                        Behaviour::TooMany { retry_after_seconds, .. } => {
                            let left = state
                                .too_many_left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                            if left.is_ok() {
                                let after = retry_after_seconds.to_string();
                                respond(&mut socket, 429, &[("retry-after", after.as_str())], "slow down").await;
                                return;
                            }
                        }
                        Behaviour::CutAfterAccept(share) if hit(share) => {
                            state.received.lock().unwrap().push(received);
                            return;
                        }
                        Behaviour::CutAfterAccept(_) => {}
                        Behaviour::Redirect(location) => {
                            respond(&mut socket, 302, &[("location", location.as_str())], "").await;
                            return;
                        }
                    }
                    state.received.lock().unwrap().push(received);
                    respond(&mut socket, 200, &[("content-type", "application/json")], "{\"ok\":true}").await;
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
