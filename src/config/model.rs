//! The typed configuration the service runs with: one struct per section, the enums of its settings, and
//! [`Secret`], which keeps tokens and passwords out of logs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::convert::ConvertOptions;

/// A token or password. Debug and Display print `***`, so a logged `Config` never leaks it; [`Secret::expose`]
/// is the one way to read it, which makes every use easy to find.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything the service needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub opencti: OpenCtiConfig,
    pub connector: ConnectorConfig,
    pub mq: MqConfig,
    pub maltrail: MaltrailConfig,
    pub convert: ConvertOptions,
}

/// The platform: `OPENCTI_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCtiConfig {
    /// `http(s)://host[:port][/prefix]`, without a trailing `/`.
    pub url: String,
    pub token: Secret,
    pub ssl_verify: TlsVerify,
    /// Log lines as JSON objects (for log collectors) rather than text.
    pub json_logging: bool,
}

/// How the platform's TLS certificate is checked (`OPENCTI_SSL_VERIFY`, which pycti hands to `requests` as
/// `verify`: a boolean or a CA bundle path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the system's roots.
    Verify,
    /// Not at all (self-signed lab platforms).
    NoVerify,
    /// Against the CA certificates of this PEM file.
    CaFile(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The name `tracing_subscriber::EnvFilter` understands.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    pub const fn level(self) -> tracing::Level {
        match self {
            Self::Debug => tracing::Level::DEBUG,
            Self::Info => tracing::Level::INFO,
            Self::Warn => tracing::Level::WARN,
            Self::Error => tracing::Level::ERROR,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who splits a bundle into the pieces the workers import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitMode {
    /// The connector, as pycti does: one message per object with its dependencies (`no_split: false`).
    Client,
    /// The platform's workers: the connector sends bundles of `batch_size` objects with `no_split: true`.
    Platform,
}

impl SplitMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Platform => "platform",
        }
    }
}

impl fmt::Display for SplitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connector itself: `CONNECTOR_*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    pub id: Uuid,
    pub name: String,
    pub scope: Vec<String>,
    pub log_level: LogLevel,
    /// Time between the start of two runs; zero means run once (see [`ConnectorConfig::runs_once`]).
    pub duration_period: Duration,
    pub run_and_terminate: bool,
    /// A run is skipped while the connector's push queue holds more than this many megabytes.
    pub queue_threshold_mb: f64,
    pub send_to_queue: bool,
    pub send_to_directory: bool,
    /// Where bundles are written when `send_to_directory` is on (then always set).
    pub directory_path: Option<PathBuf>,
    /// Bundle files older than this many days are removed; 0 keeps them forever.
    pub directory_retention_days: u32,
    pub expose_metrics: bool,
    pub metrics_port: u16,
    pub split: SplitMode,
    /// Most publishes awaiting their broker confirm at once.
    pub publish_window: usize,
    /// Objects per bundle in [`SplitMode::Platform`].
    pub batch_size: usize,
}

impl ConnectorConfig {
    /// Whether the service runs once and exits: asked for, or a zero period (as pycti treats `PT0S`).
    pub fn runs_once(&self) -> bool {
        self.run_and_terminate || self.duration_period.is_zero()
    }
}

/// Overrides of the RabbitMQ connection the platform returns at registration (`MQ_*`): the platform often returns
/// a host name only valid inside its own network. `None` keeps the platform's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub vhost: Option<String>,
    pub use_ssl: Option<bool>,
    pub user: Option<String>,
    pub pass: Option<Secret>,
    /// CA bundle (PEM) to check the broker's certificate with.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM); always set together with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// Check the broker's certificate (default on); off, TLS still encrypts but accepts any certificate.
    pub ssl_verify: bool,
}

/// Where the trails come from: `MALTRAIL_*` (the source, not the conversion knobs, which are in
/// [`ConvertOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaltrailConfig {
    /// GitHub's REST API (`https://api.github.com`, or `https://host/api/v3` for GitHub Enterprise), without a
    /// trailing `/`.
    pub api_base_url: String,
    /// Raises GitHub's rate limit from 60 to 5,000 requests an hour.
    pub api_key: Option<Secret>,
    /// `owner/name`.
    pub repository: String,
    /// Branch, tag or commit.
    pub git_ref: String,
    /// The trails folder in the repository, without leading or trailing `/`.
    pub path: String,
    /// Read the trails folder of a local checkout instead of GitHub.
    pub directory: Option<PathBuf>,
}

impl MaltrailConfig {
    /// Where the repository's files are browsed: `https://github.com` for `https://api.github.com`, `https://host`
    /// for GitHub Enterprise's `https://host/api/v3`, else the API base itself (a test server).
    pub fn web_url(&self) -> String {
        let base = self.api_base_url.as_str();
        if let Some((scheme, host)) = base.split_once("://") {
            if host.eq_ignore_ascii_case("api.github.com") {
                return format!("{scheme}://github.com");
            }
        }
        base.strip_suffix("/api/v3").unwrap_or(base).to_owned()
    }

    /// Where a trail file is browsed, for the indicators' external references:
    /// `{web_url}/{repository}/blob/{git_ref}/{path}`.
    pub fn file_link_base(&self) -> String {
        let mut link = format!("{}/{}/blob/{}", self.web_url(), self.repository, self.git_ref);
        if !self.path.is_empty() {
            link.push('/');
            link.push_str(&self.path);
        }
        link
    }
}
