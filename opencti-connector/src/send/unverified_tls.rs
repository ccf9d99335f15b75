//! TLS to the broker without checking its certificate: `MQ_USE_SSL_REJECT_UNAUTHORIZED=false` (pycti's name; also
//! `MQ_SSL_VERIFY=false`), for brokers behind a self-signed certificate nobody handed us the CA of.
//!
//! lapin's own TLS path always verifies, so this module builds the rustls client itself and gives lapin the
//! finished stream. The handshake's signatures are still checked (a peer must hold the key of the certificate it
//! shows); only the question "who signed that certificate, and for which name" is skipped, exactly as Python's
//! `CERT_NONE` with `check_hostname=False` does for pycti. The channel stays encrypted; it is not authenticated.

use std::sync::Arc;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// A client certificate and its key, both PEM, for brokers that authenticate clients by certificate.
pub(crate) struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A TLS client that accepts any server certificate, optionally presenting a client certificate.
pub fn connector(identity: Option<ClientIdentity>) -> Result<RustlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate { provider }));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| rustls::Error::General(format!("client certificate: {error}")))?;
            let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)
                .map_err(|error| rustls::Error::General(format!("client key: {error}")))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(RustlsConnector::from(config))
}

/// Opens an AMQP connection over TLS made by `connector` (see [`connector`]).
pub async fn connect(
    uri: AMQPUri,
    properties: ConnectionProperties,
    connector: RustlsConnector,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri,
        runtime,
        async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host.clone();
            let addresses = runtime.to_socket_addrs((host.clone(), uri.authority.port));
            let plain = AsyncTcpStream::connect(&runtime, addresses).await?;
            Ok(plain.into_rustls(&connector, &host).await?)
        },
        properties,
    )
    .await
}

/// Accepts every certificate chain, and checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
