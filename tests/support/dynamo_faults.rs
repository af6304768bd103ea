//! A stand-in DynamoDB endpoint that answers with scripted errors, for the failures a local
//! DynamoDB API cannot produce on demand (throttling, transaction conflicts, 5xx). The real SDK
//! client talks to it over HTTP, so the SDK's own error parsing and retries are part of the test.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

use super::wire::{read_request, respond};

/// One scripted answer: HTTP status and JSON body.
pub type Answer = (u16, String);

/// A DynamoDB error answer, e.g. `error("ProvisionedThroughputExceededException", 400, "")`.
pub fn error(code: &str, status: u16, extra: &str) -> Answer {
    (status, format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"scripted"{extra}}}"#))
}

/// A TransactWriteItems cancellation with these reason codes, one per item.
pub fn cancelled(codes: &[&str]) -> Answer {
    let reasons: Vec<String> = codes.iter().map(|c| format!(r#"{{"Code":"{c}"}}"#)).collect();
    error("TransactionCanceledException", 400, &format!(r#","CancellationReasons":[{}]"#, reasons.join(",")))
}

#[derive(Clone, Default)]
pub struct FaultyDynamo {
    pub url: String,
    scripts: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FaultyDynamo {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = FaultyDynamo { url: format!("http://{}", listener.local_addr().unwrap()), ..Default::default() };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(shared.clone().serve(socket));
            }
        });
        server
    }

    /// Answers for `operation` (e.g. "TransactWriteItems"), in order; afterwards it succeeds.
    pub fn script(&self, operation: &str, answers: Vec<Answer>) {
        self.scripts.lock().unwrap().insert(operation.to_owned(), answers.into());
    }

    /// How many requests of `operation` arrived.
    pub fn calls(&self, operation: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| *c == operation).count()
    }

    async fn serve(self, mut socket: TcpStream) {
        let Some(request) = read_request(&mut socket).await else { return };
        let target = request.header("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or("Other");
        let operation = target.to_owned();
        self.calls.lock().unwrap().push(operation.clone());
        let scripted = self.scripts.lock().unwrap().get_mut(&operation).and_then(VecDeque::pop_front);
        let (status, body) = scripted.unwrap_or_else(|| match operation.as_str() {
            "Query" => (200, r#"{"Items":[],"Count":0,"ScannedCount":0}"#.to_owned()),
            _ => (200, "{}".to_owned()),
        });
        respond(&mut socket, status, &[("content-type", "application/x-amz-json-1.0")], &body).await;
    }
}
