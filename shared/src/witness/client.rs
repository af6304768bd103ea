//! The seal's side of `add-checkpoint` over HTTP(S): one POST, bounded in time and in what is read
//! back. Its TLS trust (the platform's roots) is loaded on first use, so functions that never
//! submit pay nothing for it at init.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use super::request_body;
use crate::backend::BackendError;
use crate::integrity::Hash;
use crate::integrity::note::CosignerKey;
use crate::seal::witness::{WitnessAnswer, WitnessClient};

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub struct HttpWitness {
    /// The submission prefix; requests go to `<url>/add-checkpoint`.
    url: String,
    key: CosignerKey,
    client: OnceCell<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
}

impl HttpWitness {
    pub fn new(url: &str, key: CosignerKey) -> Self {
        HttpWitness { url: url.trim_end_matches('/').to_owned(), key, client: OnceCell::new() }
    }

    async fn client(&self) -> Result<&Client<HttpsConnector<HttpConnector>, Full<Bytes>>, BackendError> {
        self.client
            .get_or_try_init(|| async {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| BackendError::Internal(format!("no TLS root certificates: {e}")))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(Client::builder(TokioExecutor::new()).build(connector))
            })
            .await
    }
}

#[async_trait]
impl WitnessClient for HttpWitness {
    fn name(&self) -> &str {
        &self.url
    }

    fn key(&self) -> &CosignerKey {
        &self.key
    }

    async fn add_checkpoint(&self, old: u64, proof: &[Hash], note: &str) -> Result<WitnessAnswer, BackendError> {
        let client = self.client().await?;
        let request = http::Request::post(format!("{}/add-checkpoint", self.url))
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(request_body(old, proof, note))))
            .map_err(|e| BackendError::Internal(format!("a witness request: {e}")))?;
        let unavailable = |what: String| BackendError::Unavailable(what);
        let response = tokio::time::timeout(TIMEOUT, client.request(request))
            .await
            .map_err(|_| unavailable(format!("no answer in {TIMEOUT:?}")))?
            .map_err(|e| unavailable(format!("{e}")))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(TIMEOUT, Limited::new(body, MAX_ANSWER_BYTES).collect())
            .await
            .map_err(|_| unavailable("the answer did not arrive in time".into()))?
            .map_err(|e| unavailable(format!("the answer could not be read: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        match parts.status.as_u16() {
            200 => Ok(WitnessAnswer::Cosigned(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())),
            409 => {
                text.trim().parse().map(WitnessAnswer::Conflict).map_err(|_| unavailable("a 409 without a size".into()))
            }
            status @ (429 | 500..) => Err(unavailable(format!("HTTP {status}"))),
            status => Ok(WitnessAnswer::Refused {
                status,
                // The witness's own one-line reason, bounded.
                reason: text.lines().next().unwrap_or_default().chars().take(200).collect(),
            }),
        }
    }
}
