//! Real clients over real sockets: HTTP (hyper) and WebSocket (tokio-tungstenite).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// One HTTP request on a fresh connection; the body is decoded as JSON (null when empty).
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> HttpReply {
    HttpClient::new().request(method, url, headers, body).await
}

/// A client that keeps connections open between requests.
#[derive(Clone)]
pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        HttpClient(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> HttpReply {
        self.try_request(method, url, headers, body).await.expect("HTTP request")
    }

    /// As [`Self::request`], with a failure of the connection as an error instead of a panic.
    pub async fn try_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<HttpReply, String> {
        let client = &self.0;
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let response = client.request(request.body(Full::new(payload)).unwrap()).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(HttpReply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) },
        })
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket with extra headers; the handshake's HTTP status on refusal (0 when the
/// connection itself failed, e.g. nothing listens while a gateway restarts).
pub async fn try_websocket(url: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// Opens a WebSocket with extra headers; the handshake's HTTP status on refusal.
pub async fn websocket(url: &str, headers: &[(&str, &str)]) -> Result<(Socket, http::HeaderMap), u16> {
    let mut request = url.into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => Ok((socket, response.headers().clone())),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// Every JSON text message that arrives within `wait` (stops early after `expect` messages).
pub async fn receive(socket: &mut Socket, expect: usize, wait: Duration) -> Vec<Value> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while messages.len() < expect {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => messages.push(serde_json::from_str(&text).expect("JSON message")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    messages
}
