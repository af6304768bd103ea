//! Streams' secrets at rest: sealed before they are stored, opened only to deliver. The
//! [`SecretBox`] port has a local adapter here (AES-256-GCM under a key of the data directory, or
//! of the process for memory storage) and a KMS envelope adapter (`crate::kms::KmsSecretBox`). Each
//! sealed value is bound to its tenant and stream, so a sealed blob copied to another stream's
//! item does not open there.

use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

use super::destination::Secrets;
use crate::backend::BackendError;
use crate::domain::TenantId;

/// The stream a sealed value belongs to: the associated data of its encryption (and KMS's
/// encryption context).
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    pub tenant: &'a TenantId,
    pub stream: Uuid,
}

impl SecretContext<'_> {
    /// The bytes the local adapter binds a value to.
    pub fn associated_data(&self) -> Vec<u8> {
        format!("auditline-stream-secret/1\n{}\n{}", self.tenant.as_str(), self.stream).into_bytes()
    }
}

/// Seals and opens a stream's secrets.
#[async_trait]
pub trait SecretBox: Send + Sync {
    async fn seal_bytes(&self, context: SecretContext<'_>, plaintext: &[u8]) -> Result<String, BackendError>;
    async fn open_bytes(&self, context: SecretContext<'_>, sealed: &str) -> Result<Vec<u8>, BackendError>;
}

/// Seals a stream's secrets (as JSON).
pub async fn seal(
    boxed: &dyn SecretBox,
    context: SecretContext<'_>,
    secrets: &Secrets,
) -> Result<String, BackendError> {
    let json = serde_json::to_vec(secrets).map_err(|e| BackendError::Internal(format!("secrets to JSON: {e}")))?;
    boxed.seal_bytes(context, &json).await
}

/// Opens what [`seal`] sealed.
pub async fn open(boxed: &dyn SecretBox, context: SecretContext<'_>, sealed: &str) -> Result<Secrets, BackendError> {
    let json = boxed.open_bytes(context, sealed).await?;
    serde_json::from_slice(&json)
        .map_err(|_| BackendError::Internal("a stream's sealed secrets are not readable".into()))
}

const LOCAL_PREFIX: &str = "local1.";
const KEY_BYTES: usize = 32;

/// AES-256-GCM under one key: the data directory's (`streams.key`, created on first use, readable
/// by its owner only) or a fresh one per process (memory storage).
pub struct LocalSecretBox {
    key: LessSafeKey,
}

impl LocalSecretBox {
    /// A key that lives as long as the process.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).expect("the system's random source");
        Self::with_key(&key)
    }

    /// The key in `path`, created if missing.
    pub fn from_file(path: &Path) -> Result<Self, BackendError> {
        let unavailable =
            |what: &str, e: std::io::Error| BackendError::Internal(format!("{what} {}: {e}", path.display()));
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                getrandom::fill(&mut key).expect("the system's random source");
                write_private(path, &key).map_err(|e| unavailable("cannot write", e))?;
                key.to_vec()
            }
            Err(e) => return Err(unavailable("cannot read", e)),
        };
        let key: [u8; KEY_BYTES] = key
            .try_into()
            .map_err(|_| BackendError::Internal(format!("{} is not a {KEY_BYTES}-byte key", path.display())))?;
        Ok(Self::with_key(&key))
    }

    fn with_key(key: &[u8; KEY_BYTES]) -> Self {
        LocalSecretBox { key: aes_key(key).expect("a 32-byte AES key") }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[async_trait]
impl SecretBox for LocalSecretBox {
    async fn seal_bytes(&self, context: SecretContext<'_>, plaintext: &[u8]) -> Result<String, BackendError> {
        Ok(format!("{LOCAL_PREFIX}{}", STANDARD.encode(seal_with(&self.key, &context, plaintext)?)))
    }

    async fn open_bytes(&self, context: SecretContext<'_>, sealed: &str) -> Result<Vec<u8>, BackendError> {
        let bytes = sealed
            .strip_prefix(LOCAL_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| BackendError::Internal("a stream's sealed secrets are not of this key's form".into()))?;
        open_with(&self.key, &context, &bytes)
    }
}

/// AES-256-GCM under `key`, bound to `context`: a random nonce, then the ciphertext and tag.
pub fn seal_with(key: &LessSafeKey, context: &SecretContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, BackendError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the system's random source");
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(context.associated_data()),
        &mut sealed,
    )
    .map_err(|_| BackendError::Internal("sealing a secret failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_with`] sealed under the same key and context.
pub fn open_with(key: &LessSafeKey, context: &SecretContext<'_>, bytes: &[u8]) -> Result<Vec<u8>, BackendError> {
    let unreadable = || BackendError::Internal("a stream's sealed secrets do not open with this key".into());
    if bytes.len() < NONCE_LEN {
        return Err(unreadable());
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
    let mut buffer = rest.to_vec();
    let plain =
        key.open_in_place(nonce, Aad::from(context.associated_data()), &mut buffer).map_err(|_| unreadable())?;
    Ok(plain.to_vec())
}

/// An AES-256-GCM key from its 32 bytes.
pub fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, BackendError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| BackendError::Internal("a data key is not 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::destination::SigningSecret;

    #[tokio::test]
    async fn sealed_secrets_open_only_for_their_stream_and_never_show_in_the_clear() {
        let boxed = LocalSecretBox::ephemeral();
        let tenant = TenantId::parse("acme").unwrap();
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let secrets = Secrets {
            signing: vec![SigningSecret { secret: "whsec_c2VjcmV0".into(), retires_at: None }],
            token: Some("hec-token-value".into()),
            headers: vec![("x-auth".into(), "bearer value".into())],
        };
        let sealed = seal(&boxed, SecretContext { tenant: &tenant, stream: one }, &secrets).await.unwrap();
        assert!(!sealed.contains("hec-token") && !sealed.contains("whsec"), "nothing in the clear");
        let opened = open(&boxed, SecretContext { tenant: &tenant, stream: one }, &sealed).await.unwrap();
        assert!(opened == secrets);
        assert!(open(&boxed, SecretContext { tenant: &tenant, stream: two }, &sealed).await.is_err(), "another stream");
        let other = TenantId::parse("other").unwrap();
        assert!(open(&boxed, SecretContext { tenant: &other, stream: one }, &sealed).await.is_err(), "another tenant");
        assert!(
            open(&LocalSecretBox::ephemeral(), SecretContext { tenant: &tenant, stream: one }, &sealed).await.is_err()
        );
        assert_eq!(format!("{secrets:?}"), "Secrets(redacted)");
    }

    #[tokio::test]
    async fn the_key_file_is_created_once_and_private() {
        let dir = std::env::temp_dir().join(format!("auditline-secrets-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("streams.key");
        let tenant = TenantId::parse("acme").unwrap();
        let context = SecretContext { tenant: &tenant, stream: Uuid::now_v7() };
        let sealed = LocalSecretBox::from_file(&path).unwrap().seal_bytes(context, b"value").await.unwrap();
        let reopened = LocalSecretBox::from_file(&path).unwrap().open_bytes(context, &sealed).await.unwrap();
        assert_eq!(reopened, b"value");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
