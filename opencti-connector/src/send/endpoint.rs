//! Where the platform's RabbitMQ is: the connection the registration answer gives, each field overridable by the
//! `MQ_*` settings (the platform often answers with a host name valid only inside its own network), and TLS: a CA,
//! a client certificate and its key (PEM files or inline PEM, the key possibly encrypted), as pycti reads them.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Connection, ConnectionProperties};

use super::unverified_tls::{self, ClientIdentity};
use crate::settings::{MqSettings, PemSource, Secret};

/// Seconds between AMQP heartbeats: a dead broker connection is noticed within two of them.
const HEARTBEAT_SECONDS: u16 = 20;

/// A RabbitMQ endpoint with credentials and TLS options.
#[derive(Debug, Clone)]
pub struct AmqpEndpoint {
    pub host: String,
    pub port: u16,
    pub vhost: String,
    pub use_ssl: bool,
    pub user: String,
    pub pass: Secret,
    /// The CA(s) that signed the broker's certificate.
    pub ca: Option<PemSource>,
    /// Client certificate and key, for brokers that authenticate clients by certificate...
    pub cert: Option<PemSource>,
    pub key: Option<PemSource>,
    /// ...and the key's passphrase when it is encrypted.
    pub passphrase: Option<Secret>,
    pub ssl_verify: bool,
}

/// Why a connection could not even be attempted, or failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot read {what} {path}: {source}")]
    ReadTls { what: &'static str, path: String, source: std::io::Error },
    #[error("cannot open the client key (MQ_USE_SSL_KEY): {0}")]
    ClientKey(String),
    #[error("cannot set up TLS without verification (MQ_USE_SSL_REJECT_UNAUTHORIZED=false): {0}")]
    UnverifiedTls(rustls::Error),
    #[error("cannot connect to RabbitMQ at {endpoint}: {source}")]
    Connect { endpoint: String, source: lapin::Error },
}

impl AmqpEndpoint {
    /// The connection the platform returned at registration.
    pub fn new(host: &str, port: u16, vhost: &str, use_ssl: bool, user: &str, pass: &str) -> Self {
        Self {
            host: host.to_owned(),
            port,
            vhost: vhost.to_owned(),
            use_ssl,
            user: user.to_owned(),
            pass: Secret::new(pass),
            ca: None,
            cert: None,
            key: None,
            passphrase: None,
            ssl_verify: true,
        }
    }

    /// This endpoint with every `MQ_*` setting that is set applied over it.
    pub(crate) fn with_overrides(mut self, mq: &MqSettings) -> Self {
        if let Some(host) = &mq.host {
            self.host.clone_from(host);
        }
        if let Some(port) = mq.port {
            self.port = port;
        }
        if let Some(vhost) = &mq.vhost {
            self.vhost.clone_from(vhost);
        }
        if let Some(use_ssl) = mq.use_ssl {
            self.use_ssl = use_ssl;
        }
        if let Some(user) = &mq.user {
            self.user.clone_from(user);
        }
        if let Some(pass) = &mq.pass {
            self.pass = pass.clone();
        }
        self.ca = mq.ca.clone().or(self.ca);
        self.cert = mq.cert.clone().or(self.cert);
        self.key = mq.key.clone().or(self.key);
        self.passphrase = mq.passphrase.clone().or(self.passphrase);
        self.ssl_verify = mq.ssl_verify;
        self
    }

    /// `amqp[s]://user@host:port/vhost`, without the password, for logs and errors.
    pub fn describe(&self) -> String {
        let scheme = if self.use_ssl { "amqps" } else { "amqp" };
        format!("{scheme}://{}@{}:{}/{}", self.user, self.host, self.port, self.vhost)
    }

    fn uri_with_heartbeat(&self, heartbeat: u16) -> AMQPUri {
        AMQPUri {
            scheme: if self.use_ssl { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: self.user.clone(), password: self.pass.expose().to_owned() },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString { heartbeat: Some(heartbeat), ..AMQPQueryString::default() },
        }
    }

    /// lapin's TLS settings (verifying the broker's certificate against the system's roots or `MQ_CA`).
    fn tls(&self) -> Result<OwnedTLSConfig, EndpointError> {
        if !self.use_ssl {
            return Ok(OwnedTLSConfig::default());
        }
        let cert_chain = match &self.ca {
            Some(ca) => {
                Some(String::from_utf8_lossy(&read_tls("the CA certificate (MQ_USE_SSL_CA)", ca)?).into_owned())
            }
            None => None,
        };
        let identity = self
            .client_identity()?
            .map(|identity| OwnedIdentity::PKCS8 { pem: identity.cert_pem, key: identity.key_pem });
        Ok(OwnedTLSConfig { identity, cert_chain })
    }

    /// The client certificate and key (`MQ_USE_SSL_CERT`, `MQ_USE_SSL_KEY`), when both are set; an encrypted key
    /// is opened with `MQ_USE_SSL_PASSPHRASE`.
    fn client_identity(&self) -> Result<Option<ClientIdentity>, EndpointError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(ClientIdentity {
                cert_pem: read_tls("the client certificate (MQ_USE_SSL_CERT)", cert)?,
                key_pem: plain_key(&read_tls("the client key (MQ_USE_SSL_KEY)", key)?, self.passphrase.as_ref())?,
            })),
            _ => Ok(None),
        }
    }

    /// Opens a connection named `name` (shown in RabbitMQ's management UI).
    pub async fn connect(&self, name: &str) -> Result<Connection, EndpointError> {
        self.connect_with_heartbeat(name, HEARTBEAT_SECONDS).await
    }

    /// Opens a connection whose heartbeats come every `heartbeat` seconds: a dead peer is noticed within two.
    pub async fn connect_with_heartbeat(&self, name: &str, heartbeat: u16) -> Result<Connection, EndpointError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connect_error = |source| EndpointError::Connect { endpoint: self.describe(), source };
        if self.use_ssl && !self.ssl_verify {
            let connector = unverified_tls::connector(self.client_identity()?).map_err(EndpointError::UnverifiedTls)?;
            return unverified_tls::connect(self.uri_with_heartbeat(heartbeat), properties, connector)
                .await
                .map_err(connect_error);
        }
        let tls = self.tls()?;
        let runtime = lapin::runtime::default_runtime().map_err(connect_error)?;
        Connection::connect_uri_with_config(self.uri_with_heartbeat(heartbeat), properties, tls, runtime)
            .await
            .map_err(connect_error)
    }
}

fn read_tls(what: &'static str, source: &PemSource) -> Result<Vec<u8>, EndpointError> {
    source.read().map_err(|error| EndpointError::ReadTls { what, path: source.describe(), source: error })
}

/// The PEM of an unencrypted PKCS#8 key: `key_pem` as it is, or decrypted with `passphrase` when it is an
/// `ENCRYPTED PRIVATE KEY` (PKCS#8 with PBES2, what `openssl pkcs8 -topk8` and `openssl genpkey -aes256` write).
fn plain_key(key_pem: &[u8], passphrase: Option<&Secret>) -> Result<Vec<u8>, EndpointError> {
    let text = String::from_utf8_lossy(key_pem);
    let encrypted = text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----");
    let legacy = text.contains("Proc-Type: 4,ENCRYPTED");
    match (encrypted, legacy, passphrase) {
        (false, false, _) => Ok(key_pem.to_vec()),
        (_, true, _) => Err(EndpointError::ClientKey(
            "the key is encrypted the legacy OpenSSL way (Proc-Type: 4,ENCRYPTED): convert it to PKCS#8 with              `openssl pkcs8 -topk8 -in key.pem -out key-pkcs8.pem` (and a passphrase, or -nocrypt)"
                .into(),
        )),
        (true, false, None) => Err(EndpointError::ClientKey(
            "the key is encrypted: give its passphrase with MQ_USE_SSL_PASSPHRASE".into(),
        )),
        (true, false, Some(passphrase)) => {
            use pkcs8::der::pem::LineEnding;
            let (label, document) = pkcs8::SecretDocument::from_pem(&text)
                .map_err(|error| EndpointError::ClientKey(format!("not a PEM key: {error}")))?;
            if label != "ENCRYPTED PRIVATE KEY" {
                return Err(EndpointError::ClientKey(format!("expected an ENCRYPTED PRIVATE KEY, found {label}")));
            }
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
                .map_err(|error| EndpointError::ClientKey(format!("not an encrypted PKCS#8 key: {error}")))?;
            let plain = info.decrypt(passphrase.expose()).map_err(|error| {
                EndpointError::ClientKey(format!("cannot decrypt it with MQ_USE_SSL_PASSPHRASE: {error}"))
            })?;
            let pem = plain
                .to_pem("PRIVATE KEY", LineEnding::LF)
                .map_err(|error| EndpointError::ClientKey(error.to_string()))?;
            Ok(pem.as_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_is_set() {
        let registered = AmqpEndpoint::new("rabbitmq", 5672, "/", false, "opencti", "s3cret");
        let mq = MqSettings {
            host: Some("127.0.0.1".into()),
            port: None,
            vhost: None,
            use_ssl: None,
            user: None,
            pass: Some(Secret::new("other")),
            ca: None,
            cert: None,
            key: None,
            passphrase: None,
            ssl_verify: true,
        };
        let endpoint = registered.with_overrides(&mq);
        assert_eq!(endpoint.host, "127.0.0.1");
        assert_eq!(endpoint.port, 5672);
        assert_eq!(endpoint.user, "opencti");
        assert_eq!(endpoint.pass.expose(), "other");
        assert_eq!(endpoint.describe(), "amqp://opencti@127.0.0.1:5672//");
        assert!(!format!("{endpoint:?}").contains("other"), "the password stays out of Debug");
    }

    #[test]
    fn tls_options_are_checked() {
        let mut endpoint = AmqpEndpoint::new("h", 5671, "/", true, "u", "p");
        endpoint.ca = Some(PemSource::File("/nonexistent/ca.pem".into()));
        let error = endpoint.tls().unwrap_err().to_string();
        assert!(error.contains("MQ_USE_SSL_CA") && error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
