//! The AWS SDK as deployed functions use it: its configuration loaded once per process, and one
//! HTTP client — one connection pool — shared by every service client.
//!
//! The client trusts Amazon Trust Services' roots (every AWS endpoint's certificate chains to one
//! of them), embedded, instead of the platform's store: reading and parsing ~150 system roots
//! was most of a function's init beyond the runtime's own. `AWS_CA_BUNDLE` (a PEM file, the
//! variable the AWS CLI and other SDKs honour) adds CAs: a TLS-inspecting proxy's, or a test CA.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;
use tokio::sync::OnceCell;

/// Amazon Root CA 1–4 and the Starfield Services root that cross-signs them.
const AMAZON_ROOTS: &str = include_str!("sdk/amazon-roots.pem");

/// The variable naming extra trusted CAs.
pub const CA_BUNDLE_VARIABLE: &str = "AWS_CA_BUNDLE";

#[derive(Debug, Error)]
pub enum SdkSetupError {
    #[error("{CA_BUNDLE_VARIABLE}: {0}")]
    CaBundle(String),
}

static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();

/// The shared configuration: region and credentials from the environment (as on Lambda), the
/// shared HTTP client. Loaded on first use; later calls return the same.
pub async fn config() -> Result<&'static SdkConfig, SdkSetupError> {
    CONFIG
        .get_or_try_init(|| async {
            let bundle = match std::env::var_os(CA_BUNDLE_VARIABLE) {
                Some(path) => Some(std::fs::read(&path).map_err(|e| SdkSetupError::CaBundle(e.to_string()))?),
                None => None,
            };
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(tls_context(bundle.as_deref())?)
                .build_https();
            Ok(aws_config::defaults(BehaviorVersion::latest()).http_client(http).load().await)
        })
        .await
}

/// Amazon's roots, and the bundle's certificates if given — each checked here, so that a bad
/// bundle is a clear init error rather than a panic at the first connection.
fn tls_context(bundle: Option<&[u8]>) -> Result<TlsContext, SdkSetupError> {
    let mut trust = TrustStore::empty().with_pem_certificate(AMAZON_ROOTS);
    if let Some(pem) = bundle {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| SdkSetupError::CaBundle("not a file of PEM certificates".into()))?;
        if certificates.is_empty() {
            return Err(SdkSetupError::CaBundle("no certificate in the file".into()));
        }
        trust = trust.with_pem_certificate(pem);
    }
    TlsContext::builder().with_trust_store(trust).build().map_err(|e| SdkSetupError::CaBundle(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_roots_are_amazons_five() {
        let roots: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_ROOTS.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(roots.len(), 5);
        assert!(tls_context(None).is_ok());
    }

    #[test]
    fn a_bundle_without_certificates_is_refused_by_name() {
        for bad in [&b"not a certificate"[..], b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"] {
            let error = tls_context(Some(bad)).unwrap_err().to_string();
            assert!(error.starts_with("AWS_CA_BUNDLE: "), "{error}");
        }
    }
}
