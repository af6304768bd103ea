//! How a delivery leaves: the [`HttpSender`] and [`EventBus`] ports, and [`SafeHttp`], the HTTP
//! adapter every HTTP kind uses. It connects only to addresses [`super::outbound`] allows — the
//! name is resolved and checked as the connection is made, so a name re-pointed at a private
//! address after the stream was created is refused too — follows no redirect, reads at most
//! [`MAX_ANSWER_BYTES`] of an answer, and bounds the connection and the whole request in time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::outbound::{Loopback, OutboundError, check_addresses, check_url};
use crate::domain::TenantId;

/// What is read of a receiver's answer: enough for its error message.
pub const MAX_ANSWER_BYTES: usize = 1024;

/// One HTTP POST of a delivery. Its headers carry the stream's secrets (the HEC token, the
/// Datadog key, custom headers): `Debug` shows their names only.
#[derive(Clone, PartialEq)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(name, _)| (name.as_str(), "…")).collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// A receiver's answer: its status, the headers a retry needs, the start of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SendError {
    /// The destination may not be reached (see [`super::outbound`]): not retried into.
    #[error(transparent)]
    Refused(#[from] OutboundError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait HttpSender: Send + Sync {
    async fn send(&self, request: HttpRequest) -> Result<HttpAnswer, SendError>;
}

/// One EventBridge event.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    pub source: String,
    pub detail_type: String,
    /// JSON text.
    pub detail: String,
    pub time: DateTime<Utc>,
}

/// A put that EventBridge refused for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusFailure {
    pub code: String,
    pub message: String,
}

/// Where a stream's events go, and as whom: the tenant's bus, put to with the credentials of a role
/// the tenant made for it, assumed with the external id that names the tenant. A role whose trust
/// policy requires that id is of no use to another tenant of the deployment (the confused deputy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BusTarget {
    pub bus_arn: String,
    pub role_arn: String,
    pub external_id: String,
    /// Shown in the tenant's CloudTrail: which stream put.
    pub session_name: String,
}

impl BusTarget {
    pub fn new(tenant: &TenantId, stream: Uuid, bus_arn: &str, role_arn: &str) -> Self {
        BusTarget {
            bus_arn: bus_arn.to_owned(),
            role_arn: role_arn.to_owned(),
            external_id: external_id(tenant),
            session_name: format!("auditline-stream-{}", stream.simple()),
        }
    }
}

/// The external id a tenant's role must require (`sts:ExternalId`): fixed by the tenant's id, which
/// its credentials prove, so no tenant can have the deployment assume another tenant's role.
pub fn external_id(tenant: &TenantId) -> String {
    format!("auditline:{tenant}")
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// `PutEvents` of up to 10 events to the target's bus, as its role; per event, `None` if it
    /// was put.
    async fn put_events(&self, target: &BusTarget, events: &[BusEvent]) -> Result<Vec<Option<BusFailure>>, SendError>;
}

/// Timeouts of [`SafeHttp`].
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub connect: Duration,
    /// The whole request, answer included.
    pub request: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { connect: Duration::from_secs(5), request: Duration::from_secs(10) }
    }
}

type SafeClient = Client<HttpsConnector<HttpConnector<CheckedResolver>>, Full<Bytes>>;

/// The HTTP adapter of deliveries.
pub struct SafeHttp {
    loopback: Loopback,
    limits: HttpLimits,
    client: OnceCell<SafeClient>,
}

impl SafeHttp {
    pub fn new(loopback: Loopback, limits: HttpLimits) -> Self {
        SafeHttp { loopback, limits, client: OnceCell::new() }
    }

    async fn client(&self) -> Result<&SafeClient, SendError> {
        self.client
            .get_or_try_init(|| async {
                let mut http = HttpConnector::new_with_resolver(CheckedResolver { loopback: self.loopback });
                http.enforce_http(false);
                http.set_connect_timeout(Some(self.limits.connect));
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| SendError::Failed(format!("no TLS root certificates: {e}")))?
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector))
            })
            .await
    }
}

#[async_trait]
impl HttpSender for SafeHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpAnswer, SendError> {
        // The form and any literal address, before anything is sent; names as they are resolved.
        let url = check_url(&request.url, self.loopback)?;
        let client = self.client().await?;
        let mut builder = http::Request::post(url.as_str())
            .header("user-agent", concat!("auditline-streams/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| SendError::Failed(format!("the request could not be built: {e}")))?;
        let limit = self.limits.request;
        let exchange = async {
            let response = client.request(built).await.map_err(|e| connection_error(&e))?;
            let (parts, mut body) = response.into_parts();
            // At most MAX_ANSWER_BYTES, then the rest is dropped with the connection.
            let mut read = Vec::new();
            while read.len() < MAX_ANSWER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            read.extend_from_slice(&data);
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            read.truncate(MAX_ANSWER_BYTES);
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            Ok(HttpAnswer {
                status: parts.status.as_u16(),
                retry_after: header("retry-after"),
                location: header("location"),
                body: String::from_utf8_lossy(&read).into_owned(),
            })
        };
        tokio::time::timeout(limit, exchange).await.map_err(|_| SendError::Timeout(limit))?
    }
}

/// A connection's error as one line, with the refusal of a forbidden address named as such.
fn connection_error(e: &hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ForbiddenAddress>() {
            return SendError::Refused(refused.0.clone());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(refused) = io.get_ref().and_then(|inner| inner.downcast_ref::<ForbiddenAddress>())
        {
            return SendError::Refused(refused.0.clone());
        }
        source = cause.source();
    }
    let mut text = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    SendError::Failed(text)
}

#[derive(Debug, Error)]
#[error("{0}")]
struct ForbiddenAddress(OutboundError);

/// Resolves a host and refuses it if any address is one deliveries may not reach: the check
/// happens on the very addresses the connection is then made to.
#[derive(Clone, Copy)]
struct CheckedResolver {
    loopback: Loopback,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let loopback = self.loopback;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            check_addresses(&addresses, loopback).map_err(|e| std::io::Error::other(ForbiddenAddress(e)))?;
            Ok(addresses.into_iter())
        })
    }
}
