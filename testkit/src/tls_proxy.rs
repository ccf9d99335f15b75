//! A TLS front for a plain local server (the real RabbitMQ, the fake OpenCTI): a test certificate authority, a
//! server certificate for `localhost` signed by it, and a proxy that terminates TLS and forwards the bytes, as the
//! TLS listener of a real broker or platform would. Optionally it demands a client certificate signed by the same
//! authority.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// PEM files of a test certificate authority and of certificates it signed, in a temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The client key encrypted (PKCS#8, PBES2 with PBKDF2-SHA256 and AES-256-CBC) with [`TestPki::PASSPHRASE`].
    pub client_key_encrypted: PathBuf,
}

impl TestPki {
    /// The passphrase of [`TestPki::client_key_encrypted`].
    pub const PASSPHRASE: &'static str = "correct horse battery staple";

    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "maltrail-connector test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");

        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(names).expect("parameters").signed_by(&key, &ca).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["maltrail-connector".into()]);
        let encrypted_key = encrypt_pkcs8(&client_key, Self::PASSPHRASE);

        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write PEM");
            path
        };
        Self {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            client_key_encrypted: write("client-encrypted.key", &encrypted_key),
            dir,
        }
    }
}

/// `key_pem` (an unencrypted PKCS#8 PEM key) as an `ENCRYPTED PRIVATE KEY`, as `openssl pkcs8 -topk8 -v2 aes256`
/// writes it.
fn encrypt_pkcs8(key_pem: &str, passphrase: &str) -> String {
    use pkcs8::der::pem::LineEnding;
    let (_, document) = pkcs8::SecretDocument::from_pem(key_pem).expect("a PEM key");
    let info = pkcs8::PrivateKeyInfo::try_from(document.as_bytes()).expect("a PKCS#8 key");
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"test salt bytes!", &[7; 16])
        .expect("PBES2 parameters");
    let encrypted = info.encrypt_with_params(params, passphrase).expect("encrypt the key");
    encrypted.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).expect("PEM").to_string()
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// The proxy; stops listening (and drops its connections) when dropped.
pub struct TlsProxy {
    pub port: u16,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// The local RabbitMQ behind TLS.
    pub async fn rabbitmq(pki: &TestPki, require_client_cert: bool) -> Self {
        Self::start(pki, ([127, 0, 0, 1], 5672).into(), require_client_cert).await
    }

    /// Listens on a free loopback port and forwards to `upstream`; `require_client_cert` makes it refuse clients
    /// without a certificate signed by the test authority.
    pub async fn start(pki: &TestPki, upstream: SocketAddr, require_client_cert: bool) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let read = |path: &PathBuf| std::fs::read(path).expect("read PEM");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&pki.server_cert))
            .collect::<Result<_, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_slice(&read(&pki.server_key)).expect("server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(&pki.ca)) {
                roots.add(cert.expect("CA certificate")).expect("CA root");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(acceptor.clone(), client, upstream));
            }
        });
        Self { port, task }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client: TLS handshake (a failed one just closes the socket, as a server does), then bytes both ways.
async fn forward(acceptor: TlsAcceptor, client: TcpStream, upstream: SocketAddr) {
    let Ok(mut tls) = acceptor.accept(client).await else { return };
    let Ok(mut upstream) = TcpStream::connect(upstream).await else { return };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
}
