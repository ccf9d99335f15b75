//! The platform's settings every connector shares: `OPENCTI_*` (the platform), `CONNECTOR_*` (the connector's
//! identity, schedule and outputs) and `MQ_*` (overrides of the broker connection the platform hands out).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::spec::{Fallback, SectionDoc, Setting, SettingValue, enum_schema};
use super::values::{Count, HttpUrl, List, LogLevel, Megabytes, PemSource, Period, Port, Secret, TlsVerify};
use super::{SettingsError, Vars};

/// What a connector brings to the shared settings: its defaults for the settings whose value depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorDefaults {
    /// `CONNECTOR_NAME`: the name the platform shows.
    pub name: &'static str,
    /// `CONNECTOR_SCOPE`.
    pub scope: &'static [&'static str],
    /// `CONNECTOR_DURATION_PERIOD`.
    pub duration_period: Duration,
}

/// `OPENCTI_*`: the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCtiSettings {
    /// `http(s)://host[:port][/prefix]`, without a trailing `/`.
    pub url: HttpUrl,
    pub token: Secret,
    pub ssl_verify: TlsVerify,
    /// Log lines as JSON objects (for log collectors) rather than text.
    pub json_logging: bool,
}

const OPENCTI_URL: Setting<HttpUrl> =
    Setting::new("OPENCTI_URL", "URL of the OpenCTI platform, e.g. `http://opencti:8080`.", Fallback::Required)
        .example("http://opencti:8080");
const OPENCTI_TOKEN: Setting<Secret> =
    Setting::new("OPENCTI_TOKEN", "The API token of the connector's OpenCTI user.", Fallback::Required)
        .example("ChangeMe");
const OPENCTI_SSL_VERIFY: Setting<TlsVerify> = Setting::new(
    "OPENCTI_SSL_VERIFY",
    "Verify the platform's TLS certificate: `true`, `false`, or the path of a PEM CA bundle.",
    Fallback::Value(|| TlsVerify::Verify),
);
const OPENCTI_JSON_LOGGING: Setting<bool> =
    Setting::new("OPENCTI_JSON_LOGGING", "Log lines as JSON objects instead of text.", Fallback::Value(|| false));

impl OpenCtiSettings {
    pub fn read(vars: &Vars) -> Result<Self, SettingsError> {
        Ok(Self {
            url: vars.get(&OPENCTI_URL)?,
            token: vars.get(&OPENCTI_TOKEN)?,
            ssl_verify: vars.get(&OPENCTI_SSL_VERIFY)?,
            json_logging: Self::json_logging(vars)?,
        })
    }

    /// `OPENCTI_JSON_LOGGING` alone, so logging can start before the rest is checked (and report it).
    pub fn json_logging(vars: &Vars) -> Result<bool, SettingsError> {
        vars.get(&OPENCTI_JSON_LOGGING)
    }

    pub fn docs() -> SectionDoc {
        SectionDoc {
            name: "opencti",
            title: "The OpenCTI platform",
            settings: vec![
                OPENCTI_URL.doc(),
                OPENCTI_TOKEN.doc(),
                OPENCTI_SSL_VERIFY.doc(),
                OPENCTI_JSON_LOGGING.doc(),
            ],
        }
    }
}

/// Who splits a bundle into the pieces the platform's workers import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// The connector, as pycti does: one message per object (`no_split: false`).
    Client,
    /// The platform's workers: the connector sends multi-object bundles, which the worker splits.
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

crate::named_setting_value!(SplitMode, "a split mode (expected client or platform)", {
    "client" => SplitMode::Client,
    "platform" => SplitMode::Platform,
}, |mode| mode.as_str());

/// What a process does among the replicas of one connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Plans runs when it holds the leadership, and works on jobs: one process does everything.
    All,
    /// Competes for the leadership and plans runs; does no job itself.
    Scheduler,
    /// Works on jobs only.
    Worker,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Scheduler => "scheduler",
            Self::Worker => "worker",
        }
    }

    /// Whether the process competes for the leadership (and then registers runs, pings the state, plans).
    pub const fn plans(self) -> bool {
        matches!(self, Self::All | Self::Scheduler)
    }

    /// Whether the process works on jobs.
    pub const fn works(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

crate::named_setting_value!(Role, "a role (expected all, scheduler or worker)", {
    "all" => Role::All,
    "scheduler" => Role::Scheduler,
    "worker" => Role::Worker,
}, |role| role.as_str());

/// The only connector type this runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExternalImport;

impl SettingValue for ExternalImport {
    fn schema() -> serde_json::Map<String, Value> {
        let mut schema = enum_schema(&["EXTERNAL_IMPORT"]);
        schema.remove("enum");
        schema.insert("const".into(), json!("EXTERNAL_IMPORT"));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("EXTERNAL_IMPORT") {
            Ok(ExternalImport)
        } else {
            Err("is not supported: this connector is an external-import connector (EXTERNAL_IMPORT)".into())
        }
    }

    fn to_json(&self) -> Value {
        json!("EXTERNAL_IMPORT")
    }
}

/// `CONNECTOR_*`: the connector's identity, schedule and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSettings {
    pub id: Uuid,
    pub name: String,
    pub scope: Vec<String>,
    pub log_level: LogLevel,
    /// Time between two runs; zero means run once (see [`ConnectorSettings::runs_once`]).
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
    /// Prefix of the pycti metric names (`<namespace>_<subsystem>_runs_total`), empty by default as in pycti.
    pub metrics_namespace: String,
    pub metrics_subsystem: String,
    pub split: SplitMode,
    /// Most objects in one multi-object bundle ([`SplitMode::Platform`]).
    pub batch_size: usize,
    /// Most bytes of one multi-object bundle.
    pub batch_bytes: usize,
    /// Most publishes awaiting their broker confirm at once...
    pub publish_window: usize,
    /// ...and most bytes of them.
    pub publish_window_bytes: usize,
    pub role: Role,
}

impl ConnectorSettings {
    /// Whether the connector runs once and exits: asked for, or a zero period (as pycti treats `0` and `PT0S`).
    pub(crate) fn runs_once(&self) -> bool {
        self.run_and_terminate || self.duration_period.is_zero()
    }
}

/// Largest `CONNECTOR_PUBLISH_WINDOW` and `CONNECTOR_BATCH_SIZE`.
const MAX_WINDOW_OR_BATCH: u64 = 100_000;
const MIB: u64 = 1024 * 1024;

const CONNECTOR_ID: Setting<Uuid> = Setting::new(
    "CONNECTOR_ID",
    "A UUID that identifies this connector to the platform, e.g. from `uuidgen`; keep it.",
    Fallback::Required,
)
.example("00000000-0000-4000-8000-000000000000")
.not_in_catalog();
const CONNECTOR_TYPE: Setting<ExternalImport> =
    Setting::new("CONNECTOR_TYPE", "The connector's type: only `EXTERNAL_IMPORT`.", Fallback::Value(|| ExternalImport));
const CONNECTOR_NAME: Setting<String> =
    Setting::new("CONNECTOR_NAME", "The name shown in the platform.", Fallback::None);
const CONNECTOR_SCOPE: Setting<List> =
    Setting::new("CONNECTOR_SCOPE", "Scopes, comma-separated (a list in `config.yml`).", Fallback::None);
const CONNECTOR_LOG_LEVEL: Setting<LogLevel> = Setting::new(
    "CONNECTOR_LOG_LEVEL",
    "`debug`, `info`, `warn` or `error`; `RUST_LOG` overrides it for debugging.",
    Fallback::Value(|| LogLevel::Info),
);
const CONNECTOR_DURATION_PERIOD: Setting<Period> = Setting::new(
    "CONNECTOR_DURATION_PERIOD",
    "Time between two runs, as pycti reads it: ISO 8601 (`PT1H`, `P1D`, `P1M` = 30 days) or `HH:MM:SS`; `0` runs \
     once.",
    Fallback::None,
);
const CONNECTOR_RUN_AND_TERMINATE: Setting<bool> = Setting::new(
    "CONNECTOR_RUN_AND_TERMINATE",
    "One run, a final ping, then exit: status 0, or 1 when the run failed.",
    Fallback::Value(|| false),
);
const CONNECTOR_QUEUE_THRESHOLD: Setting<Megabytes> = Setting::new(
    "CONNECTOR_QUEUE_THRESHOLD",
    "Megabytes: a run is skipped while the connector's push queue holds more.",
    Fallback::Value(|| Megabytes(500.0)),
);
const CONNECTOR_SEND_TO_QUEUE: Setting<bool> =
    Setting::new("CONNECTOR_SEND_TO_QUEUE", "Publish to the platform's RabbitMQ push queue.", Fallback::Value(|| true));
const CONNECTOR_SEND_TO_DIRECTORY: Setting<bool> = Setting::new(
    "CONNECTOR_SEND_TO_DIRECTORY",
    "Also (or instead) write each bundle as a pycti `DIRECTORY_BUNDLE` file.",
    Fallback::Value(|| false),
);
const CONNECTOR_SEND_TO_DIRECTORY_PATH: Setting<PathBuf> = Setting::new(
    "CONNECTOR_SEND_TO_DIRECTORY_PATH",
    "The folder bundle files are written to, when `CONNECTOR_SEND_TO_DIRECTORY` is true.",
    Fallback::None,
);
const CONNECTOR_SEND_TO_DIRECTORY_RETENTION: Setting<Count<0, { u32::MAX as u64 }>> = Setting::new(
    "CONNECTOR_SEND_TO_DIRECTORY_RETENTION",
    "Days before bundle files are removed; `0` keeps them.",
    Fallback::Value(|| Count(7)),
)
.noun("a number of days");
const CONNECTOR_EXPOSE_METRICS: Setting<bool> = Setting::new(
    "CONNECTOR_EXPOSE_METRICS",
    "Serve Prometheus metrics (pycti's names and the connector's) and `/health` on `CONNECTOR_METRICS_PORT`.",
    Fallback::Value(|| false),
);
const CONNECTOR_METRICS_PORT: Setting<Port> =
    Setting::new("CONNECTOR_METRICS_PORT", "Port of the metrics endpoint.", Fallback::Value(|| Count(9095)))
        .noun("a port number");
const CONNECTOR_METRICS_NAMESPACE: Setting<String> = Setting::new(
    "CONNECTOR_METRICS_NAMESPACE",
    "Prefix of pycti's metric names, as in pycti (`<namespace>_<subsystem>_runs_total`).",
    Fallback::Value(String::new),
);
const CONNECTOR_METRICS_SUBSYSTEM: Setting<String> = Setting::new(
    "CONNECTOR_METRICS_SUBSYSTEM",
    "Second prefix of pycti's metric names, as in pycti.",
    Fallback::Value(String::new),
);
const CONNECTOR_SPLIT: Setting<SplitMode> = Setting::new(
    "CONNECTOR_SPLIT",
    "`client`: one object per message, as pycti; `platform`: multi-object bundles the platform's workers split.",
    Fallback::Value(|| SplitMode::Client),
);
const CONNECTOR_BATCH_SIZE: Setting<Count<1, MAX_WINDOW_OR_BATCH>> = Setting::new(
    "CONNECTOR_BATCH_SIZE",
    "Most objects in one multi-object bundle (`platform` mode).",
    Fallback::Value(|| Count(50_000)),
)
.noun("a number of objects");
const CONNECTOR_BATCH_BYTES: Setting<Count<{ 64 * 1024 }, { 64 * MIB }>> = Setting::new(
    "CONNECTOR_BATCH_BYTES",
    "Most bytes of one multi-object bundle (`platform` mode); base64 in the message adds a third, and RabbitMQ 4 \
     refuses messages over 16 MiB by default.",
    Fallback::Value(|| Count(8 * MIB)),
)
.noun("a number of bytes");
const CONNECTOR_PUBLISH_WINDOW: Setting<Count<1, MAX_WINDOW_OR_BATCH>> = Setting::new(
    "CONNECTOR_PUBLISH_WINDOW",
    "Most messages published and not yet confirmed by RabbitMQ.",
    Fallback::Value(|| Count(1024)),
)
.noun("a number of messages");
const CONNECTOR_PUBLISH_WINDOW_BYTES: Setting<Count<{ 64 * 1024 }, { 1024 * MIB }>> = Setting::new(
    "CONNECTOR_PUBLISH_WINDOW_BYTES",
    "Most bytes of messages published and not yet confirmed: with the message window, what bounds the memory \
     publishing takes.",
    Fallback::Value(|| Count(24 * MIB)),
)
.noun("a number of bytes");
const CONNECTOR_ROLE: Setting<Role> = Setting::new(
    "CONNECTOR_ROLE",
    "`all`: plan and work in one process; `scheduler`: plan only (one replica leads, others stand by); `worker`: \
     work on the jobs of the replica that leads.",
    Fallback::Value(|| Role::All),
);

impl ConnectorSettings {
    pub fn read(vars: &Vars, defaults: &ConnectorDefaults) -> Result<Self, SettingsError> {
        vars.get(&CONNECTOR_TYPE)?;
        let send_to_queue = vars.get(&CONNECTOR_SEND_TO_QUEUE)?;
        let send_to_directory = vars.get(&CONNECTOR_SEND_TO_DIRECTORY)?;
        let directory_path = vars.optional(&CONNECTOR_SEND_TO_DIRECTORY_PATH)?;
        if send_to_directory && directory_path.is_none() {
            return Err(SettingsError::Required {
                var: CONNECTOR_SEND_TO_DIRECTORY_PATH.var,
                what: "the folder bundles are written to, when CONNECTOR_SEND_TO_DIRECTORY is true".into(),
            });
        }
        if !send_to_queue && !send_to_directory {
            return Err(SettingsError::Conflict(
                "CONNECTOR_SEND_TO_QUEUE and CONNECTOR_SEND_TO_DIRECTORY are both false: the connector would send \
                 nothing (enable at least one)"
                    .into(),
            ));
        }
        Ok(Self {
            id: vars.get(&CONNECTOR_ID)?,
            name: vars.optional(&CONNECTOR_NAME)?.unwrap_or_else(|| defaults.name.to_owned()),
            scope: match vars.optional(&CONNECTOR_SCOPE)? {
                Some(List(scope)) => scope,
                None => defaults.scope.iter().map(|s| (*s).to_owned()).collect(),
            },
            log_level: Self::log_level(vars)?,
            duration_period: vars
                .optional(&CONNECTOR_DURATION_PERIOD)?
                .map_or(defaults.duration_period, Period::as_duration),
            run_and_terminate: vars.get(&CONNECTOR_RUN_AND_TERMINATE)?,
            queue_threshold_mb: vars.get(&CONNECTOR_QUEUE_THRESHOLD)?.0,
            send_to_queue,
            send_to_directory,
            directory_path,
            directory_retention_days: u32::try_from(vars.get(&CONNECTOR_SEND_TO_DIRECTORY_RETENTION)?.get())
                .unwrap_or(u32::MAX),
            expose_metrics: vars.get(&CONNECTOR_EXPOSE_METRICS)?,
            metrics_port: vars.get(&CONNECTOR_METRICS_PORT)?.port(),
            metrics_namespace: vars.get(&CONNECTOR_METRICS_NAMESPACE)?,
            metrics_subsystem: vars.get(&CONNECTOR_METRICS_SUBSYSTEM)?,
            split: vars.get(&CONNECTOR_SPLIT)?,
            batch_size: vars.get(&CONNECTOR_BATCH_SIZE)?.as_usize(),
            batch_bytes: vars.get(&CONNECTOR_BATCH_BYTES)?.as_usize(),
            publish_window: vars.get(&CONNECTOR_PUBLISH_WINDOW)?.as_usize(),
            publish_window_bytes: vars.get(&CONNECTOR_PUBLISH_WINDOW_BYTES)?.as_usize(),
            role: vars.get(&CONNECTOR_ROLE)?,
        })
    }

    /// `CONNECTOR_LOG_LEVEL` alone, so logging can start before the rest is checked (and report it).
    pub fn log_level(vars: &Vars) -> Result<LogLevel, SettingsError> {
        vars.get(&CONNECTOR_LOG_LEVEL)
    }

    /// `CONNECTOR_METRICS_PORT` alone (the health check reads it).
    pub fn metrics_port(vars: &Vars) -> Result<u16, SettingsError> {
        Ok(vars.get(&CONNECTOR_METRICS_PORT)?.port())
    }

    pub fn docs(defaults: &ConnectorDefaults) -> SectionDoc {
        SectionDoc {
            name: "connector",
            title: "The connector: identity, schedule, outputs, roles",
            settings: vec![
                CONNECTOR_ID.doc(),
                CONNECTOR_TYPE.doc(),
                CONNECTOR_NAME.doc().with_default(json!(defaults.name)),
                CONNECTOR_SCOPE.doc().with_default(json!(defaults.scope)),
                CONNECTOR_LOG_LEVEL.doc(),
                CONNECTOR_DURATION_PERIOD.doc().with_default(Period(defaults.duration_period).to_json()),
                CONNECTOR_RUN_AND_TERMINATE.doc(),
                CONNECTOR_QUEUE_THRESHOLD.doc(),
                CONNECTOR_SEND_TO_QUEUE.doc(),
                CONNECTOR_SEND_TO_DIRECTORY.doc(),
                CONNECTOR_SEND_TO_DIRECTORY_PATH.doc(),
                CONNECTOR_SEND_TO_DIRECTORY_RETENTION.doc(),
                CONNECTOR_EXPOSE_METRICS.doc(),
                CONNECTOR_METRICS_PORT.doc(),
                CONNECTOR_METRICS_NAMESPACE.doc(),
                CONNECTOR_METRICS_SUBSYSTEM.doc(),
                CONNECTOR_SPLIT.doc(),
                CONNECTOR_BATCH_SIZE.doc(),
                CONNECTOR_BATCH_BYTES.doc(),
                CONNECTOR_PUBLISH_WINDOW.doc(),
                CONNECTOR_PUBLISH_WINDOW_BYTES.doc(),
                CONNECTOR_ROLE.doc(),
            ],
        }
    }
}

/// Overrides of the RabbitMQ connection the platform returns at registration (`MQ_*`): the platform often returns
/// a host name only valid inside its own network. `None` keeps the platform's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub vhost: Option<String>,
    pub use_ssl: Option<bool>,
    pub user: Option<String>,
    pub pass: Option<Secret>,
    /// CA certificate(s) to check the broker's certificate with.
    pub ca: Option<PemSource>,
    /// Client certificate; always set together with `key`.
    pub cert: Option<PemSource>,
    /// The client certificate's private key, encrypted when `passphrase` is set.
    pub key: Option<PemSource>,
    pub passphrase: Option<Secret>,
    /// Check the broker's certificate (default on); off, TLS still encrypts but accepts any certificate.
    pub ssl_verify: bool,
}

const MQ_HOST: Setting<String> = Setting::new(
    "MQ_HOST",
    "Broker host, e.g. `rabbitmq` when the platform answers with a name only valid in its own network.",
    Fallback::None,
);
const MQ_PORT: Setting<Port> =
    Setting::new("MQ_PORT", "Broker port (5672, or 5671 with TLS).", Fallback::None).noun("a port number");
const MQ_VHOST: Setting<String> = Setting::new("MQ_VHOST", "Virtual host.", Fallback::None);
const MQ_USE_SSL: Setting<bool> = Setting::new("MQ_USE_SSL", "Connect with TLS (`amqps`).", Fallback::None);
const MQ_USER: Setting<String> = Setting::new("MQ_USER", "User name.", Fallback::None);
const MQ_PASS: Setting<Secret> = Setting::new("MQ_PASS", "Password.", Fallback::None);
const MQ_USE_SSL_CA: Setting<PemSource> = Setting::new(
    "MQ_USE_SSL_CA",
    "CA certificate(s) of the broker, as a PEM file path or inline PEM (pycti's name; `MQ_CA` also works).",
    Fallback::None,
)
.aliases(&["MQ_CA"]);
const MQ_USE_SSL_CERT: Setting<PemSource> = Setting::new(
    "MQ_USE_SSL_CERT",
    "Client certificate (PEM path or inline), with `MQ_USE_SSL_KEY` (pycti's name; `MQ_CERT` also works).",
    Fallback::None,
)
.aliases(&["MQ_CERT"]);
const MQ_USE_SSL_KEY: Setting<PemSource> = Setting::new(
    "MQ_USE_SSL_KEY",
    "The client certificate's private key (PEM path or inline; PKCS#8, encrypted with `MQ_USE_SSL_PASSPHRASE`) \
     (pycti's name; `MQ_KEY` also works).",
    Fallback::None,
)
.aliases(&["MQ_KEY"]);
const MQ_USE_SSL_PASSPHRASE: Setting<Secret> = Setting::new(
    "MQ_USE_SSL_PASSPHRASE",
    "Passphrase of an encrypted client key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`).",
    Fallback::None,
);
const MQ_USE_SSL_REJECT_UNAUTHORIZED: Setting<bool> = Setting::new(
    "MQ_USE_SSL_REJECT_UNAUTHORIZED",
    "Verify the broker's certificate (system roots, or `MQ_USE_SSL_CA`); `false` keeps TLS but accepts any \
     certificate. pycti's name, but on by default here (pycti's default is off); `MQ_SSL_VERIFY` also works.",
    Fallback::Value(|| true),
)
.aliases(&["MQ_SSL_VERIFY", "MQ_SSL_REJECT_UNAUTHORIZED"]);

impl MqSettings {
    pub fn read(vars: &Vars) -> Result<Self, SettingsError> {
        let cert = vars.optional(&MQ_USE_SSL_CERT)?;
        let key = vars.optional(&MQ_USE_SSL_KEY)?;
        match (&cert, &key) {
            (Some(_), None) => {
                return Err(SettingsError::Required {
                    var: MQ_USE_SSL_KEY.var,
                    what: "the private key of the client certificate, since MQ_USE_SSL_CERT is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(SettingsError::Required {
                    var: MQ_USE_SSL_CERT.var,
                    what: "the client certificate of the private key, since MQ_USE_SSL_KEY is set".into(),
                });
            }
            _ => {}
        }
        let passphrase = vars.optional(&MQ_USE_SSL_PASSPHRASE)?;
        if passphrase.is_some() && key.is_none() {
            return Err(SettingsError::Conflict(
                "MQ_USE_SSL_PASSPHRASE is set but MQ_USE_SSL_KEY is not: the passphrase opens the client key".into(),
            ));
        }
        Ok(Self {
            host: vars.optional(&MQ_HOST)?,
            port: vars.optional(&MQ_PORT)?.map(Port::port),
            vhost: vars.optional(&MQ_VHOST)?,
            use_ssl: vars.optional(&MQ_USE_SSL)?,
            user: vars.optional(&MQ_USER)?,
            pass: vars.optional(&MQ_PASS)?,
            ca: vars.optional(&MQ_USE_SSL_CA)?,
            cert,
            key,
            passphrase,
            ssl_verify: vars.get(&MQ_USE_SSL_REJECT_UNAUTHORIZED)?,
        })
    }

    pub fn docs() -> SectionDoc {
        SectionDoc {
            name: "mq",
            title: "RabbitMQ: overrides of the connection the platform hands out at registration",
            settings: vec![
                MQ_HOST.doc(),
                MQ_PORT.doc(),
                MQ_VHOST.doc(),
                MQ_USE_SSL.doc(),
                MQ_USER.doc(),
                MQ_PASS.doc(),
                MQ_USE_SSL_CA.doc(),
                MQ_USE_SSL_CERT.doc(),
                MQ_USE_SSL_KEY.doc(),
                MQ_USE_SSL_PASSPHRASE.doc(),
                MQ_USE_SSL_REJECT_UNAUTHORIZED.doc(),
            ],
        }
    }
}

/// The three platform sections, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub opencti: OpenCtiSettings,
    pub connector: ConnectorSettings,
    pub mq: MqSettings,
}

impl Settings {
    /// Reads the three sections; requires `OPENCTI_URL`, `OPENCTI_TOKEN` and `CONNECTOR_ID`.
    pub fn read(vars: &Vars, defaults: &ConnectorDefaults) -> Result<Self, SettingsError> {
        Ok(Self {
            opencti: OpenCtiSettings::read(vars)?,
            connector: ConnectorSettings::read(vars, defaults)?,
            mq: MqSettings::read(vars)?,
        })
    }
}

/// The documentation of the three platform sections.
pub fn platform_docs(defaults: &ConnectorDefaults) -> Vec<SectionDoc> {
    vec![OpenCtiSettings::docs(), ConnectorSettings::docs(defaults), MqSettings::docs()]
}
