//! Raw strings → typed sections, one function per section, so that a command asks only for what it uses (the
//! offline export needs no `OPENCTI_*`). Defaults live here, next to the variable they belong to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto_stix::Tlp;
use uuid::Uuid;

use super::duration::{DurationError, parse_iso8601_duration};
use super::model::{ConnectorConfig, LogLevel, MaltrailConfig, MqConfig, OpenCtiConfig, SplitMode, TlsVerify};
use super::raw::RawSettings;
use super::values::{boolean, http_url, invalid, list, number, optional_bool, optional_number, parse_bool, required};
use super::{CONNECTOR_TYPE, ConfigError, DEFAULT_TRAILS_PATH};
use crate::convert::{ConvertOptions, Scores};
use crate::trails::Category;

/// Bounds of `CONNECTOR_PUBLISH_WINDOW` and `CONNECTOR_BATCH_SIZE`.
const MAX_WINDOW_OR_BATCH: usize = 100_000;

pub(super) fn opencti(raw: &RawSettings) -> Result<OpenCtiConfig, ConfigError> {
    let url = required(
        "OPENCTI_URL",
        raw.opencti_url.as_deref(),
        "the URL of the OpenCTI platform, e.g. http://opencti:8080",
    )?;
    let token = raw.opencti_token.clone().ok_or(ConfigError::Required {
        var: "OPENCTI_TOKEN",
        what: "the API token of the connector's OpenCTI user".into(),
    })?;
    Ok(OpenCtiConfig {
        url: http_url("OPENCTI_URL", url, "http://opencti:8080")?,
        token,
        ssl_verify: tls_verify("OPENCTI_SSL_VERIFY", raw.opencti_ssl_verify.as_deref())?,
        json_logging: json_logging(raw)?,
    })
}

pub(super) fn json_logging(raw: &RawSettings) -> Result<bool, ConfigError> {
    boolean("OPENCTI_JSON_LOGGING", raw.opencti_json_logging.as_deref(), false)
}

/// A boolean, or the path of a CA bundle, as pycti passes it to `requests`.
fn tls_verify(var: &'static str, value: Option<&str>) -> Result<TlsVerify, ConfigError> {
    let Some(text) = value else {
        return Ok(TlsVerify::Verify);
    };
    match parse_bool(text) {
        Some(true) => Ok(TlsVerify::Verify),
        Some(false) => Ok(TlsVerify::NoVerify),
        None if Path::new(text).is_file() => Ok(TlsVerify::CaFile(PathBuf::from(text))),
        None => {
            Err(invalid(var, text, "is neither a boolean (true or false) nor the path of an existing CA bundle file"))
        }
    }
}

pub(super) fn log_level(raw: &RawSettings) -> Result<LogLevel, ConfigError> {
    let Some(text) = raw.connector_log_level.as_deref() else {
        return Ok(LogLevel::Info);
    };
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        _ => Err(invalid("CONNECTOR_LOG_LEVEL", text, "is not a log level (expected debug, info, warn or error)")),
    }
}

pub(super) fn connector(raw: &RawSettings) -> Result<ConnectorConfig, ConfigError> {
    let id = required(
        "CONNECTOR_ID",
        raw.connector_id.as_deref(),
        "a UUID that identifies this connector to the platform, e.g. from `uuidgen`",
    )?;
    let id = Uuid::parse_str(id).map_err(|_| invalid("CONNECTOR_ID", id, "is not a UUID"))?;
    if let Some(kind) = raw.connector_type.as_deref() {
        if !kind.eq_ignore_ascii_case(CONNECTOR_TYPE) {
            return Err(invalid(
                "CONNECTOR_TYPE",
                kind,
                format_args!("is not supported: this connector is an external-import connector ({CONNECTOR_TYPE})"),
            ));
        }
    }
    let scope = match raw.connector_scope.as_deref() {
        None => vec!["maltrail".to_owned()],
        Some(text) => {
            let scope = list(text);
            if scope.is_empty() {
                return Err(invalid("CONNECTOR_SCOPE", text, "is not a comma-separated list of scopes"));
            }
            scope
        }
    };
    let send_to_queue = boolean("CONNECTOR_SEND_TO_QUEUE", raw.connector_send_to_queue.as_deref(), true)?;
    let send_to_directory = boolean("CONNECTOR_SEND_TO_DIRECTORY", raw.connector_send_to_directory.as_deref(), false)?;
    let directory_path = raw.connector_send_to_directory_path.as_deref().map(PathBuf::from);
    if send_to_directory && directory_path.is_none() {
        return Err(ConfigError::Required {
            var: "CONNECTOR_SEND_TO_DIRECTORY_PATH",
            what: "the folder bundles are written to, when CONNECTOR_SEND_TO_DIRECTORY is true".into(),
        });
    }
    if !send_to_queue && !send_to_directory {
        return Err(ConfigError::Conflict(
            "CONNECTOR_SEND_TO_QUEUE and CONNECTOR_SEND_TO_DIRECTORY are both false: the connector would send \
             nothing (enable at least one)"
                .into(),
        ));
    }
    Ok(ConnectorConfig {
        id,
        name: raw.connector_name.clone().unwrap_or_else(|| "Maltrail".to_owned()),
        scope,
        log_level: log_level(raw)?,
        duration_period: duration_period(raw)?,
        run_and_terminate: boolean("CONNECTOR_RUN_AND_TERMINATE", raw.connector_run_and_terminate.as_deref(), false)?,
        queue_threshold_mb: queue_threshold(raw.connector_queue_threshold.as_deref())?,
        send_to_queue,
        send_to_directory,
        directory_path,
        directory_retention_days: number(
            "CONNECTOR_SEND_TO_DIRECTORY_RETENTION",
            raw.connector_send_to_directory_retention.as_deref(),
            "a number of days",
            0,
            u32::MAX,
            7,
        )?,
        expose_metrics: boolean("CONNECTOR_EXPOSE_METRICS", raw.connector_expose_metrics.as_deref(), false)?,
        metrics_port: number(
            "CONNECTOR_METRICS_PORT",
            raw.connector_metrics_port.as_deref(),
            "a port number",
            1,
            u16::MAX,
            9095,
        )?,
        split: split_mode(raw.connector_split.as_deref())?,
        publish_window: number(
            "CONNECTOR_PUBLISH_WINDOW",
            raw.connector_publish_window.as_deref(),
            "a number of messages",
            1,
            MAX_WINDOW_OR_BATCH,
            1024,
        )?,
        batch_size: number(
            "CONNECTOR_BATCH_SIZE",
            raw.connector_batch_size.as_deref(),
            "a number of objects",
            1,
            MAX_WINDOW_OR_BATCH,
            500,
        )?,
    })
}

fn duration_period(raw: &RawSettings) -> Result<Duration, ConfigError> {
    const VAR: &str = "CONNECTOR_DURATION_PERIOD";
    let Some(text) = raw.connector_duration_period.as_deref() else {
        return Ok(Duration::from_secs(3_600));
    };
    parse_iso8601_duration(text).map_err(|error| match error {
        DurationError::Syntax => invalid(VAR, text, "is not an ISO-8601 duration (expected e.g. PT1H, P1D, PT30M)"),
        DurationError::Calendar => {
            invalid(VAR, text, "uses years or months, which have no fixed length (use weeks, days or hours, e.g. P30D)")
        }
        DurationError::TooLong => invalid(VAR, text, "is too long a duration"),
    })
}

fn queue_threshold(value: Option<&str>) -> Result<f64, ConfigError> {
    let Some(text) = value else {
        return Ok(500.0);
    };
    match text.parse::<f64>() {
        Ok(mb) if mb.is_finite() && mb > 0.0 => Ok(mb),
        _ => Err(invalid("CONNECTOR_QUEUE_THRESHOLD", text, "is not a positive number of megabytes (e.g. 500)")),
    }
}

fn split_mode(value: Option<&str>) -> Result<SplitMode, ConfigError> {
    let Some(text) = value else {
        return Ok(SplitMode::Client);
    };
    match text.to_ascii_lowercase().as_str() {
        "client" => Ok(SplitMode::Client),
        "platform" => Ok(SplitMode::Platform),
        _ => Err(invalid("CONNECTOR_SPLIT", text, "is not a split mode (expected client or platform)")),
    }
}

pub(super) fn mq(raw: &RawSettings) -> Result<MqConfig, ConfigError> {
    let path = |value: &Option<String>| value.as_deref().map(PathBuf::from);
    let cert = path(&raw.mq_cert);
    let key = path(&raw.mq_key);
    match (&cert, &key) {
        (Some(_), None) => {
            return Err(ConfigError::Required {
                var: "MQ_KEY",
                what: "the private key of the client certificate, since MQ_CERT is set".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Required {
                var: "MQ_CERT",
                what: "the client certificate of the private key, since MQ_KEY is set".into(),
            });
        }
        _ => {}
    }
    // pycti's name for the same switch, used only when ours is unset.
    let ssl_verify = match raw.mq_ssl_verify.as_deref() {
        Some(text) => boolean("MQ_SSL_VERIFY", Some(text), true)?,
        None => boolean("MQ_SSL_REJECT_UNAUTHORIZED", raw.mq_ssl_reject_unauthorized.as_deref(), true)?,
    };
    Ok(MqConfig {
        host: raw.mq_host.clone(),
        port: optional_number("MQ_PORT", raw.mq_port.as_deref(), "a port number", 1, u16::MAX)?,
        vhost: raw.mq_vhost.clone(),
        use_ssl: optional_bool("MQ_USE_SSL", raw.mq_use_ssl.as_deref())?,
        user: raw.mq_user.clone(),
        pass: raw.mq_pass.clone(),
        ca: path(&raw.mq_ca),
        cert,
        key,
        ssl_verify,
    })
}

pub(super) fn maltrail(raw: &RawSettings) -> Result<MaltrailConfig, ConfigError> {
    let api_base_url = match raw.maltrail_api_base_url.as_deref() {
        Some(text) => http_url("MALTRAIL_API_BASE_URL", text, "https://api.github.com")?,
        None => "https://api.github.com".to_owned(),
    };
    let repository = raw.maltrail_repository.as_deref().unwrap_or("stamparm/maltrail");
    if !is_repository(repository) {
        return Err(invalid(
            "MALTRAIL_REPOSITORY",
            repository,
            "is not a GitHub repository (expected owner/name, e.g. stamparm/maltrail)",
        ));
    }
    let git_ref = raw.maltrail_ref.as_deref().unwrap_or("master");
    if git_ref.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("MALTRAIL_REF", git_ref, "is not a git branch, tag or commit (e.g. master)"));
    }
    let path = raw.maltrail_path.as_deref().unwrap_or(DEFAULT_TRAILS_PATH).trim_matches('/');
    Ok(MaltrailConfig {
        api_base_url,
        api_key: raw.maltrail_api_key.clone(),
        repository: repository.to_owned(),
        git_ref: git_ref.to_owned(),
        path: path.to_owned(),
        directory: raw.maltrail_directory.as_deref().map(PathBuf::from),
    })
}

/// `owner/name`, each part made of the characters GitHub allows.
fn is_repository(text: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    text.split_once('/').is_some_and(|(owner, name)| part(owner) && part(name))
}

pub(super) fn convert(raw: &RawSettings, maltrail: &MaltrailConfig) -> Result<ConvertOptions, ConfigError> {
    let defaults = ConvertOptions::default();
    let categories = match raw.maltrail_categories.as_deref() {
        None => defaults.categories,
        Some(text) => categories(text)?,
    };
    let tlp = match raw.maltrail_tlp.as_deref() {
        None => defaults.tlp,
        Some(text) => text
            .parse::<Tlp>()
            .map_err(|error| ConfigError::Invalid { var: "MALTRAIL_TLP", message: error.to_string() })?,
    };
    let scores = Scores::default();
    let score = |var: &'static str, value: &Option<String>, default: u8| {
        number(var, value.as_deref(), "a score", 0, 100, default)
    };
    Ok(ConvertOptions {
        categories,
        create_observables: boolean(
            "MALTRAIL_CREATE_OBSERVABLES",
            raw.maltrail_create_observables.as_deref(),
            defaults.create_observables,
        )?,
        scores: Scores {
            malware: score("MALTRAIL_SCORE_MALWARE", &raw.maltrail_score_malware, scores.malware)?,
            malicious: score("MALTRAIL_SCORE_MALICIOUS", &raw.maltrail_score_malicious, scores.malicious)?,
            suspicious: score("MALTRAIL_SCORE_SUSPICIOUS", &raw.maltrail_score_suspicious, scores.suspicious)?,
            mass_scanner: score("MALTRAIL_SCORE_MASS_SCANNER", &raw.maltrail_score_mass_scanner, scores.mass_scanner)?,
        },
        tlp,
        file_link_base: maltrail.file_link_base(),
    })
}

/// A comma-separated list of category names, any case, duplicates dropped, order kept.
fn categories(text: &str) -> Result<Vec<Category>, ConfigError> {
    const VAR: &str = "MALTRAIL_CATEGORIES";
    let names = list(text);
    if names.is_empty() {
        return Err(invalid(
            VAR,
            text,
            "names no category (expected a comma-separated list of malware, malicious, suspicious, mass_scanner)",
        ));
    }
    let mut categories = Vec::with_capacity(names.len());
    for name in names {
        let category = Category::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
            invalid(VAR, &name, "is not a category (expected malware, malicious, suspicious or mass_scanner)")
        })?;
        if !categories.contains(&category) {
            categories.push(category);
        }
    }
    Ok(categories)
}
