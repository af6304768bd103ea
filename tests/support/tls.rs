//! TLS on loopback, as the functions meet it on AWS: a test CA made at run time (with the
//! `openssl` command line), and a terminator that accepts TLS for `localhost`, keeps the connection
//! open across requests as AWS endpoints do, and passes each request to a local server (moto, the
//! management API stand-in). The functions trust the CA through `AWS_CA_BUNDLE`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::wire::{Request, read_reply, read_request};

/// A CA and a `localhost` certificate it signed, as PEM files in a fresh directory.
pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate: the value for `SSL_CERT_FILE`.
    pub ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line (Debian: apt-get install openssl)");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl TestCa {
    pub fn create() -> TestCa {
        let dir = std::env::temp_dir().join(crate::unique_name("test-ca"));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=auditline test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&dir, &ca);
        let mut csr = vec!["req", "-subj", "/CN=localhost"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(&dir, &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCa { ca_file: dir.join("ca.pem"), cert_file: dir.join("server.pem"), key_file: dir.join("server.key"), dir }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&self.cert_file).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(&self.key_file).unwrap();
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts TLS on loopback and forwards each request to `upstream` in plain text.
pub struct TlsTerminator {
    /// `https://localhost:PORT`.
    pub url: String,
    /// TLS handshakes completed so far.
    pub handshakes: Arc<AtomicU64>,
}

impl TlsTerminator {
    pub async fn start(ca: &TestCa, upstream: &str) -> TlsTerminator {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, upstream, counted) = (acceptor.clone(), upstream.clone(), counted.clone());
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(socket).await else { return };
                    counted.fetch_add(1, Ordering::SeqCst);
                    // Keep the client's connection open across requests, as AWS endpoints do (so
                    // a function pays one handshake per connection, not per call); the servers
                    // behind (moto, the stand-ins) close after each reply, so each request gets a
                    // fresh upstream connection.
                    while let Some(request) = read_request(&mut tls).await {
                        let Some(reply) = forward(&upstream, &request).await else { return };
                        let (reply, reusable) = keep_alive(reply);
                        if tls.write_all(&reply).await.is_err() || tls.flush().await.is_err() || !reusable {
                            return;
                        }
                    }
                });
            }
        });
        TlsTerminator { url, handshakes }
    }

    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// Sends one request upstream on its own connection and reads the whole reply.
async fn forward(upstream: &str, request: &Request) -> Option<Vec<u8>> {
    let mut plain = TcpStream::connect(upstream).await.ok()?;
    let _ = plain.set_nodelay(true);
    let mut head = request.head_without("connection");
    head.push_str("connection: close\r\n\r\n");
    plain.write_all(head.as_bytes()).await.ok()?;
    plain.write_all(&request.body).await.ok()?;
    read_reply(&mut plain).await
}

/// The reply with its `connection: close` dropped, and whether the client can send another request
/// on the connection: only if the reply's end is marked (a length or chunks), not by the close.
fn keep_alive(reply: Vec<u8>) -> (Vec<u8>, bool) {
    let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else { return (reply, false) };
    let head = String::from_utf8_lossy(&reply[..end]).into_owned();
    let mut kept = String::new();
    let mut framed = false;
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split_once(':').map(|(n, _)| n.trim().to_ascii_lowercase());
        framed |= matches!(name.as_deref(), Some("content-length" | "transfer-encoding"));
        if i == 0 || name.as_deref() != Some("connection") {
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    if !framed {
        return (reply, false);
    }
    let mut out = kept.into_bytes();
    out.extend_from_slice(&reply[end + 2..]);
    (out, true)
}
