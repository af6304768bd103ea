//! The KMS adapters of the checkpoint signer (an asymmetric `ECC_NIST_P256` key whose private half
//! never leaves KMS; its public key read once per cold start and fingerprinted as any other) and of
//! the published keys (`GET /audit/keys`); and the envelope encryption of log streams' secrets.

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
use crate::streams::secrets::{SecretBox, SecretContext, aes_key, open_with, seal_with};

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

/// The KMS envelope adapter of streams' secrets: each sealing asks KMS for a data key
/// (`GenerateDataKey`, AES-256, under the streams key), bound to its tenant and stream by the
/// encryption context, and keeps only the data key's encrypted blob beside the ciphertext.
/// Opening asks KMS to decrypt the blob (with the same context: a blob copied to another stream
/// does not open), and keeps data keys in memory for a few minutes, so deliveries do not call KMS
/// each time.
pub struct KmsSecretBox {
    client: Client,
    key: String,
    opened: std::sync::Mutex<std::collections::HashMap<Vec<u8>, OpenedKey>>,
}

/// A data key as KMS decrypted it, and when.
type OpenedKey = (std::time::Instant, Vec<u8>);

const KMS_SEALED_PREFIX: &str = "kms1.";
/// How long a decrypted data key is kept.
const DATA_KEY_CACHE: Duration = Duration::from_secs(300);

impl KmsSecretBox {
    pub fn new(client: Client, key: &str) -> Self {
        KmsSecretBox { client, key: key.to_owned(), opened: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    pub fn from_environment(shared: &aws_config::SdkConfig, key: &str, endpoint_override: Option<&str>) -> Self {
        Self::new(client(shared, endpoint_override), key)
    }

    fn context(context: &SecretContext<'_>) -> std::collections::HashMap<String, String> {
        std::collections::HashMap::from([
            ("auditline:tenant".to_owned(), context.tenant.as_str().to_owned()),
            ("auditline:stream".to_owned(), context.stream.to_string()),
        ])
    }
}

fn kms_error(operation: &str, e: &impl std::error::Error) -> BackendError {
    BackendError::Unavailable(format!("KMS {operation}: {}", DisplayErrorContext(e)))
}

#[async_trait]
impl SecretBox for KmsSecretBox {
    async fn seal_bytes(&self, context: SecretContext<'_>, plaintext: &[u8]) -> Result<String, BackendError> {
        use base64::Engine;
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(Self::context(&context)))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", &e))?;
        let (Some(key), Some(blob)) = (out.plaintext(), out.ciphertext_blob()) else {
            return Err(BackendError::Internal("KMS GenerateDataKey answered no key".into()));
        };
        let sealed = seal_with(&aes_key(key.as_ref())?, &context, plaintext)?;
        let blob = blob.as_ref();
        let length =
            u16::try_from(blob.len()).map_err(|_| BackendError::Internal("a data key blob over 64 KiB".into()))?;
        let mut out = length.to_be_bytes().to_vec();
        out.extend_from_slice(blob);
        out.extend_from_slice(&sealed);
        Ok(format!("{KMS_SEALED_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    async fn open_bytes(&self, context: SecretContext<'_>, sealed: &str) -> Result<Vec<u8>, BackendError> {
        use base64::Engine;
        let unreadable = || BackendError::Internal("a stream's sealed secrets are not of the KMS form".into());
        let bytes = sealed
            .strip_prefix(KMS_SEALED_PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(unreadable)?;
        let length = usize::from(u16::from_be_bytes([
            *bytes.first().ok_or_else(unreadable)?,
            *bytes.get(1).ok_or_else(unreadable)?,
        ]));
        let blob = bytes.get(2..2 + length).ok_or_else(unreadable)?;
        let rest = &bytes[2 + length..];
        // The cache is keyed by the blob *and* the context: the same blob under another context
        // must go to KMS (and be refused there).
        let mut cache_key = blob.to_vec();
        cache_key.extend_from_slice(&context.associated_data());
        let cached = {
            let opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
            opened.get(&cache_key).filter(|(at, _)| at.elapsed() < DATA_KEY_CACHE).map(|(_, k)| k.clone())
        };
        let data_key = match cached {
            Some(key) => key,
            None => {
                let out = self
                    .client
                    .decrypt()
                    .key_id(&self.key)
                    .ciphertext_blob(Blob::new(blob))
                    .set_encryption_context(Some(Self::context(&context)))
                    .send()
                    .await
                    .map_err(|e| kms_error("Decrypt", &e))?;
                let key = out.plaintext().ok_or_else(unreadable)?.as_ref().to_vec();
                let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
                opened.retain(|_, (at, _)| at.elapsed() < DATA_KEY_CACHE);
                opened.insert(cache_key, (std::time::Instant::now(), key.clone()));
                key
            }
        };
        open_with(&aes_key(&data_key)?, &context, rest)
    }
}
