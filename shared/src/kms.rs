//! The KMS adapters of the checkpoint signer (an asymmetric `ECC_NIST_P256` key whose private half
//! never leaves KMS; its public key read once per cold start and fingerprinted as any other) and of
//! the published keys (`GET /audit/keys`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, MessageType, SigningAlgorithmSpec};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::backend::BackendError;
use crate::integrity::signing::{SignError, Signer, key_id, public_key_pem};
use crate::seal::{KeySource, PublishedKey};

/// KMS signs raw messages of at most this many bytes.
const MAX_RAW_MESSAGE: usize = 4096;

pub struct KmsSigner {
    client: Client,
    /// The KMS key's id or ARN.
    key: String,
    public_der: Vec<u8>,
    key_id: String,
}

impl KmsSigner {
    /// Reads the key's public half and checks it is a P-256 signing key.
    pub async fn new(client: Client, key: &str) -> Result<Self, SignError> {
        let out = client
            .get_public_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| SignError::Unavailable(format!("GetPublicKey: {}", DisplayErrorContext(&e))))?;
        if !is_p256(&out) {
            return Err(SignError::Key(format!("{key} is not an ECC_NIST_P256 key")));
        }
        let public_der =
            out.public_key().map(|b| b.as_ref().to_vec()).ok_or_else(|| SignError::Key("no public key".into()))?;
        Ok(KmsSigner { key_id: key_id(&public_der), public_der, client, key: key.to_owned() })
    }

    /// The signer of a deployed function: credentials and region from the Lambda environment.
    pub async fn from_environment(
        shared: &aws_config::SdkConfig,
        key: &str,
        endpoint_override: Option<&str>,
    ) -> Result<Self, SignError> {
        Self::new(client(shared, endpoint_override), key).await
    }
}

/// A KMS client of a deployed function: credentials and region from the Lambda environment, every
/// call bounded.
fn client(shared: &aws_config::SdkConfig, endpoint_override: Option<&str>) -> Client {
    let mut builder = aws_sdk_kms::config::Builder::from(shared)
        .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(5)).build());
    if let Some(endpoint) = endpoint_override {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// KMS reports `KeySpec` and the deprecated `CustomerMasterKeySpec`; some emulators only the latter.
#[allow(deprecated, reason = "read only as a fallback for emulators that omit KeySpec")]
fn is_p256(out: &GetPublicKeyOutput) -> bool {
    out.key_spec() == Some(&KeySpec::EccNistP256)
        || out.customer_master_key_spec() == Some(&aws_sdk_kms::types::CustomerMasterKeySpec::EccNistP256)
}

#[async_trait]
impl Signer for KmsSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// KMS hashes the message with SHA-256 and signs that (`MessageType::Raw`, up to 4 KB: a
    /// checkpoint's body is well under 1 KB). Raw is also the mode emulators agree on: moto signs a
    /// `Digest` message as if it were raw.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        if message.len() > MAX_RAW_MESSAGE {
            return Err(SignError::Key(format!("a {} byte message is over KMS's 4 KB", message.len())));
        }
        let out = self
            .client
            .sign()
            .key_id(&self.key)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| SignError::Unavailable(format!("Sign: {}", DisplayErrorContext(&e))))?;
        out.signature().map(|b| b.as_ref().to_vec()).ok_or_else(|| SignError::Unavailable("no signature".into()))
    }
}

/// `GET /audit/keys` on AWS: the seal's current KMS key and the retired ones (with the time each
/// was retired), read with `GetPublicKey` once per process. Never from a table: whoever can write
/// the tables cannot add a key here.
pub struct KmsKeys {
    client: Client,
    current: Option<String>,
    retired: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    cache: tokio::sync::OnceCell<Vec<PublishedKey>>,
}

impl KmsKeys {
    pub fn from_environment(
        shared: &aws_config::SdkConfig,
        current: Option<String>,
        retired: Vec<(String, chrono::DateTime<chrono::Utc>)>,
        endpoint_override: Option<&str>,
    ) -> Self {
        Self::new(client(shared, endpoint_override), current, retired)
    }

    pub fn new(client: Client, current: Option<String>, retired: Vec<(String, chrono::DateTime<chrono::Utc>)>) -> Self {
        KmsKeys { client, current, retired, cache: tokio::sync::OnceCell::new() }
    }

    async fn public_key(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        let out = self
            .client
            .get_public_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| BackendError::Unavailable(format!("KMS GetPublicKey: {}", DisplayErrorContext(&e))))?;
        if !is_p256(&out) {
            return Err(BackendError::Internal("a configured seal key is not ECC_NIST_P256".into()));
        }
        out.public_key().map(|b| b.as_ref().to_vec()).ok_or_else(|| BackendError::Internal("no public key".into()))
    }

    async fn load(&self) -> Result<Vec<PublishedKey>, BackendError> {
        let mut retired = self.retired.clone();
        retired.sort_by_key(|(_, until)| *until);
        let mut keys = Vec::new();
        let mut from = None;
        for (key, until) in &retired {
            let der = self.public_key(key).await?;
            keys.push(PublishedKey {
                key_id: key_id(&der),
                public_key_pem: public_key_pem(&der),
                valid_from: from,
                valid_until: Some(*until),
            });
            from = Some(*until);
        }
        if let Some(current) = &self.current {
            let der = self.public_key(current).await?;
            keys.push(PublishedKey {
                key_id: key_id(&der),
                public_key_pem: public_key_pem(&der),
                valid_from: from,
                valid_until: None,
            });
        }
        Ok(keys)
    }
}

#[async_trait]
impl KeySource for KmsKeys {
    async fn keys(&self) -> Result<Vec<PublishedKey>, BackendError> {
        self.cache.get_or_try_init(|| self.load()).await.cloned()
    }
}
