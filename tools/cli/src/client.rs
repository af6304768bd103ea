//! The HTTP API as the command line uses it: a base URL, one credential, GETs with a time limit,
//! and error answers reported with the API's own message.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::bundle::BoxError;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a page may weigh: a thousand entries of the largest size the API accepts, and then some.
const MAX_PAGE_BYTES: usize = 512 << 20;

/// Where the API is, and the credential to call it with.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com
    #[arg(long, env = "AUDITLINE_URL")]
    pub url: String,
    /// A JWT with audit:read (better from the environment than the command line).
    #[arg(long, env = "AUDITLINE_TOKEN", hide_env_values = true, conflicts_with = "api_key")]
    pub token: Option<String>,
    /// An API key with audit:read.
    #[arg(long, env = "AUDITLINE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A successful answer.
pub struct Answer {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub struct Api {
    base: String,
    credential: (&'static str, String),
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Api {
    pub fn new(connection: &Connection) -> Result<Self, BoxError> {
        let credential = match (&connection.token, &connection.api_key) {
            (Some(token), _) => ("authorization", format!("Bearer {token}")),
            (None, Some(key)) => ("x-api-key", key.clone()),
            (None, None) => return Err("give --token or --api-key (or AUDITLINE_TOKEN, AUDITLINE_API_KEY)".into()),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let base = connection.url.trim_end_matches('/').to_owned();
        base.parse::<http::Uri>().map_err(|e| format!("--url {base}: {e}"))?;
        Ok(Api { base, credential, client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// GETs `path?query`; an error answer is reported with the API's message.
    pub async fn get_raw(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, BoxError> {
        let (parts, body) = self.request(path, query).await?;
        if !parts.status.is_success() {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let message = value["error"]["message"].as_str().unwrap_or("no message");
            return Err(format!("GET {path}: {}: {message}", parts.status).into());
        }
        Ok(Answer { headers: parts.headers, body })
    }

    async fn send(&self, path: &str, query: &[(&str, String)]) -> Result<(u16, Bytes), BoxError> {
        let (parts, body) = self.request(path, query).await?;
        Ok((parts.status.as_u16(), body))
    }

    async fn request(&self, path: &str, query: &[(&str, String)]) -> Result<(http::response::Parts, Bytes), BoxError> {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, query.join("&"))
        };
        let request = http::Request::get(&url).header(self.credential.0, &self.credential.1).body(Empty::new())?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("GET {path}: no answer in {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body =
            Limited::new(body, MAX_PAGE_BYTES).collect().await.map_err(|e| format!("GET {path}: {e}"))?.to_bytes();
        Ok((parts, body))
    }

    /// GETs `path?query`: the status and the JSON body, whatever the status (`Null` if none).
    pub async fn get_status(&self, path: &str, query: &[(&str, String)]) -> Result<(u16, Value), BoxError> {
        let (status, body) = self.send(path, query).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// GETs `path?query` and decodes the JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, BoxError> {
        let answer = self.get_raw(path, query).await?;
        Ok(serde_json::from_slice(&answer.body).map_err(|e| format!("GET {path}: not JSON ({e})"))?)
    }
}

/// GETs a URL with no credential (a witness's monitoring call): the status and the text.
pub async fn get_text(url: &str) -> Result<(u16, String), BoxError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = http::Request::get(url).body(Empty::new())?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("GET {url}: no answer in {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, 64 * 1024).collect().await.map_err(|e| format!("GET {url}: {e}"))?.to_bytes();
    Ok((parts.status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a query value (dates carry `:` and `+`): everything but RFC 3986's unreserved.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
