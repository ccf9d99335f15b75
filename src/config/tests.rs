//! Loading and validation, with the variables passed explicitly (never the process environment).

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto_stix::Tlp;
use uuid::Uuid;

use super::*;
use crate::convert::Scores;
use crate::trails::Category;

const ID: &str = "0f6c3d2e-5a9b-4c1d-8e7f-123456789abc";

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The three required variables plus `extra`.
fn minimal(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars =
        env(&[("OPENCTI_URL", "http://opencti:8080/"), ("OPENCTI_TOKEN", "token-value"), ("CONNECTOR_ID", ID)]);
    vars.extend(env(extra));
    vars
}

fn config(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(minimal(extra), None)?.connector()
}

/// The error message of a config with `extra` set.
fn error(extra: &[(&str, &str)]) -> String {
    config(extra).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let config = config(&[]).unwrap();
    assert_eq!(config.opencti.url, "http://opencti:8080");
    assert_eq!(config.opencti.token.expose(), "token-value");
    assert_eq!(config.opencti.ssl_verify, TlsVerify::Verify);
    assert!(!config.opencti.json_logging);

    let c = &config.connector;
    assert_eq!(c.id, Uuid::parse_str(ID).unwrap());
    assert_eq!(c.name, "Maltrail");
    assert_eq!(c.scope, ["maltrail"]);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.duration_period, Duration::from_secs(3_600));
    assert!(!c.run_and_terminate);
    assert!(!c.runs_once());
    assert_eq!(c.queue_threshold_mb, 500.0);
    assert!(c.send_to_queue);
    assert!(!c.send_to_directory);
    assert_eq!(c.directory_path, None);
    assert_eq!(c.directory_retention_days, 7);
    assert!(!c.expose_metrics);
    assert_eq!(c.metrics_port, 9095);
    assert_eq!(c.split, SplitMode::Client);
    assert_eq!(c.publish_window, 1024);
    assert_eq!(c.batch_size, 500);

    let mq = &config.mq;
    assert_eq!(
        (&mq.host, mq.port, &mq.vhost, mq.use_ssl, &mq.user, &mq.pass),
        (&None, None, &None, None, &None, &None)
    );
    assert_eq!((&mq.ca, &mq.cert, &mq.key), (&None, &None, &None));
    assert!(mq.ssl_verify);

    let m = &config.maltrail;
    assert_eq!(m.api_base_url, "https://api.github.com");
    assert_eq!(m.api_key, None);
    assert_eq!(m.repository, "stamparm/maltrail");
    assert_eq!(m.git_ref, "master");
    assert_eq!(m.path, "trails/static");
    assert_eq!(m.directory, None);

    assert_eq!(config.convert, ConvertOptions::default());
}

#[test]
fn every_setting_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let config = config(&[
        ("OPENCTI_SSL_VERIFY", "FALSE"),
        ("OPENCTI_JSON_LOGGING", "yes"),
        ("CONNECTOR_TYPE", "external_import"),
        ("CONNECTOR_NAME", "Trails"),
        ("CONNECTOR_SCOPE", " maltrail , trails ,"),
        ("CONNECTOR_LOG_LEVEL", "WARNING"),
        ("CONNECTOR_DURATION_PERIOD", "P1DT12H"),
        ("CONNECTOR_RUN_AND_TERMINATE", "on"),
        ("CONNECTOR_QUEUE_THRESHOLD", "12.5"),
        ("CONNECTOR_SEND_TO_QUEUE", "0"),
        ("CONNECTOR_SEND_TO_DIRECTORY", "1"),
        ("CONNECTOR_SEND_TO_DIRECTORY_PATH", &out),
        ("CONNECTOR_SEND_TO_DIRECTORY_RETENTION", "0"),
        ("CONNECTOR_EXPOSE_METRICS", "true"),
        ("CONNECTOR_METRICS_PORT", "9100"),
        ("CONNECTOR_SPLIT", "Platform"),
        ("CONNECTOR_PUBLISH_WINDOW", "64"),
        ("CONNECTOR_BATCH_SIZE", "1000"),
        ("MQ_HOST", "rabbitmq"),
        ("MQ_PORT", "5671"),
        ("MQ_VHOST", "/"),
        ("MQ_USE_SSL", "true"),
        ("MQ_USER", "guest"),
        ("MQ_PASS", "mq-password"),
        ("MQ_CA", "/ca.pem"),
        ("MQ_CERT", "/cert.pem"),
        ("MQ_KEY", "/key.pem"),
        ("MQ_SSL_VERIFY", "false"),
        ("MALTRAIL_API_BASE_URL", "https://ghe.example.com/api/v3/"),
        ("MALTRAIL_API_KEY", "api-key-value"),
        ("MALTRAIL_REPOSITORY", "me/maltrail-fork"),
        ("MALTRAIL_REF", "v0.80"),
        ("MALTRAIL_PATH", "/trails/static/"),
        ("MALTRAIL_DIRECTORY", "/srv/maltrail/trails/static"),
        ("MALTRAIL_CATEGORIES", "Mass_Scanner, malware, malware"),
        ("MALTRAIL_CREATE_OBSERVABLES", "off"),
        ("MALTRAIL_SCORE_MALWARE", "100"),
        ("MALTRAIL_SCORE_MALICIOUS", "0"),
        ("MALTRAIL_SCORE_SUSPICIOUS", "50"),
        ("MALTRAIL_SCORE_MASS_SCANNER", "5"),
        ("MALTRAIL_TLP", "TLP:AMBER+STRICT"),
    ])
    .unwrap();
    assert_eq!(config.opencti.ssl_verify, TlsVerify::NoVerify);
    assert!(config.opencti.json_logging);
    let c = &config.connector;
    assert_eq!(c.name, "Trails");
    assert_eq!(c.scope, ["maltrail", "trails"]);
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(c.duration_period, Duration::from_secs(129_600));
    assert!(c.run_and_terminate && c.runs_once());
    assert_eq!(c.queue_threshold_mb, 12.5);
    assert!(!c.send_to_queue && c.send_to_directory);
    assert_eq!(c.directory_path.as_deref(), Some(dir.path()));
    assert_eq!(c.directory_retention_days, 0);
    assert!(c.expose_metrics);
    assert_eq!(c.metrics_port, 9100);
    assert_eq!(c.split, SplitMode::Platform);
    assert_eq!((c.publish_window, c.batch_size), (64, 1000));

    let mq = &config.mq;
    assert_eq!(mq.host.as_deref(), Some("rabbitmq"));
    assert_eq!(mq.port, Some(5671));
    assert_eq!(mq.vhost.as_deref(), Some("/"));
    assert_eq!(mq.use_ssl, Some(true));
    assert_eq!(mq.user.as_deref(), Some("guest"));
    assert_eq!(mq.pass.as_ref().map(Secret::expose), Some("mq-password"));
    assert_eq!(mq.ca.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(mq.cert.as_deref(), Some(Path::new("/cert.pem")));
    assert_eq!(mq.key.as_deref(), Some(Path::new("/key.pem")));
    assert!(!mq.ssl_verify);

    let m = &config.maltrail;
    assert_eq!(m.api_base_url, "https://ghe.example.com/api/v3");
    assert_eq!(m.api_key.as_ref().map(Secret::expose), Some("api-key-value"));
    assert_eq!(m.repository, "me/maltrail-fork");
    assert_eq!(m.git_ref, "v0.80");
    assert_eq!(m.path, "trails/static");
    assert_eq!(m.directory, Some(PathBuf::from("/srv/maltrail/trails/static")));

    assert_eq!(
        config.convert,
        ConvertOptions {
            categories: vec![Category::MassScanner, Category::Malware],
            create_observables: false,
            scores: Scores { malware: 100, malicious: 0, suspicious: 50, mass_scanner: 5 },
            tlp: Tlp::AmberStrict,
            file_link_base: "https://ghe.example.com/me/maltrail-fork/blob/v0.80/trails/static".into(),
        }
    );
}

#[test]
fn environment_overrides_yaml() {
    let yaml = "opencti:\n  url: http://from-yaml:8080\n  token: yaml-token\nconnector:\n  id: 11111111-2222-4333-8444-555555555555\n  duration_period: P1D\n  name: FromYaml\n  send_to_queue: false\n  send_to_directory: true\n  send_to_directory_path: /yaml\nmaltrail:\n  ref: yaml-ref\n";
    let settings = load(
        env(&[
            ("CONNECTOR_DURATION_PERIOD", "PT30M"),
            ("CONNECTOR_SEND_TO_QUEUE", "true"),
            ("MALTRAIL_REF", "env-ref"),
            // Empty counts as unset: the file's value stays.
            ("CONNECTOR_NAME", ""),
            ("OPENCTI_TOKEN", "  "),
            // Names are case-sensitive, and unrelated variables are ignored.
            ("opencti_url", "http://lower:1"),
            ("PATH", "/usr/bin"),
        ]),
        Some(yaml),
    )
    .unwrap();
    let config = settings.connector().unwrap();
    assert_eq!(config.opencti.url, "http://from-yaml:8080");
    assert_eq!(config.opencti.token.expose(), "yaml-token");
    assert_eq!(config.connector.id.to_string(), "11111111-2222-4333-8444-555555555555");
    assert_eq!(config.connector.duration_period, Duration::from_secs(1_800));
    assert_eq!(config.connector.name, "FromYaml");
    assert!(config.connector.send_to_queue && config.connector.send_to_directory);
    assert_eq!(config.connector.directory_path, Some(PathBuf::from("/yaml")));
    assert_eq!(config.maltrail.git_ref, "env-ref");
}

#[test]
fn yaml_lists_and_scalars() {
    let yaml = "connector:\n  scope: [maltrail, trails]\n  queue_threshold: 250\n  metrics_port: 9200\n  expose_metrics: true\nmaltrail:\n  categories:\n    - malicious\n    - mass_scanner\n  score_malware: 90\n  create_observables: false\n";
    let config = load(minimal(&[]), Some(yaml)).unwrap().connector().unwrap();
    assert_eq!(config.connector.scope, ["maltrail", "trails"]);
    assert_eq!(config.connector.queue_threshold_mb, 250.0);
    assert_eq!(config.connector.metrics_port, 9200);
    assert!(config.connector.expose_metrics);
    assert_eq!(config.convert.categories, [Category::Malicious, Category::MassScanner]);
    assert_eq!(config.convert.scores.malware, 90);
    assert!(!config.convert.create_observables);
}

#[test]
fn yaml_errors_name_the_file() {
    let message = load(minimal(&[]), Some("connector: [unclosed")).unwrap_err().to_string();
    assert!(message.starts_with("config file config.yml: "), "{message}");
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yml");
    let error = from_process(Some(&path)).unwrap_err();
    assert!(matches!(error, ConfigError::ReadFile { .. }), "{error}");
    assert!(error.to_string().contains("absent.yml"), "{error}");
}

#[test]
fn required_variables() {
    let without = |name: &str| {
        let vars: Vec<_> = minimal(&[]).into_iter().filter(|(k, _)| k != name).collect();
        load(vars, None).unwrap().connector().unwrap_err().to_string()
    };
    assert_eq!(
        without("OPENCTI_URL"),
        "OPENCTI_URL is required (the URL of the OpenCTI platform, e.g. http://opencti:8080)"
    );
    assert!(without("OPENCTI_TOKEN").starts_with("OPENCTI_TOKEN is required ("));
    assert!(without("CONNECTOR_ID").starts_with("CONNECTOR_ID is required ("));
}

#[test]
fn invalid_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("OPENCTI_URL", "opencti:8080", "OPENCTI_URL: `opencti:8080` is not an http:// or https:// URL"),
        ("OPENCTI_SSL_VERIFY", "/no/such/ca.pem", "OPENCTI_SSL_VERIFY: `/no/such/ca.pem` is neither a boolean"),
        ("OPENCTI_JSON_LOGGING", "maybe", "OPENCTI_JSON_LOGGING: `maybe` is not a boolean"),
        ("CONNECTOR_ID", "abc", "CONNECTOR_ID: `abc` is not a UUID"),
        (
            "CONNECTOR_TYPE",
            "INTERNAL_ENRICHMENT",
            "CONNECTOR_TYPE: `INTERNAL_ENRICHMENT` is not supported: this connector is an external-import connector",
        ),
        ("CONNECTOR_SCOPE", ",", "CONNECTOR_SCOPE: `,` is not a comma-separated list"),
        (
            "CONNECTOR_LOG_LEVEL",
            "verbose",
            "CONNECTOR_LOG_LEVEL: `verbose` is not a log level (expected debug, info, warn or error)",
        ),
        (
            "CONNECTOR_DURATION_PERIOD",
            "1h",
            "CONNECTOR_DURATION_PERIOD: `1h` is not an ISO-8601 duration (expected e.g. PT1H, P1D, PT30M)",
        ),
        ("CONNECTOR_DURATION_PERIOD", "P1M", "CONNECTOR_DURATION_PERIOD: `P1M` uses years or months"),
        ("CONNECTOR_RUN_AND_TERMINATE", "ture", "CONNECTOR_RUN_AND_TERMINATE: `ture` is not a boolean"),
        ("CONNECTOR_QUEUE_THRESHOLD", "0", "CONNECTOR_QUEUE_THRESHOLD: `0` is not a positive number"),
        ("CONNECTOR_QUEUE_THRESHOLD", "lots", "CONNECTOR_QUEUE_THRESHOLD: `lots` is not a positive number"),
        ("CONNECTOR_SEND_TO_QUEUE", "2", "CONNECTOR_SEND_TO_QUEUE: `2` is not a boolean"),
        (
            "CONNECTOR_SEND_TO_DIRECTORY_RETENTION",
            "-1",
            "CONNECTOR_SEND_TO_DIRECTORY_RETENTION: `-1` is not a number of days",
        ),
        (
            "CONNECTOR_METRICS_PORT",
            "70000",
            "CONNECTOR_METRICS_PORT: `70000` is not a port number (a whole number from 1 to 65535)",
        ),
        ("CONNECTOR_SPLIT", "server", "CONNECTOR_SPLIT: `server` is not a split mode (expected client or platform)"),
        (
            "CONNECTOR_PUBLISH_WINDOW",
            "0",
            "CONNECTOR_PUBLISH_WINDOW: `0` is not a number of messages (a whole number from 1 to 100000)",
        ),
        ("CONNECTOR_BATCH_SIZE", "100001", "CONNECTOR_BATCH_SIZE: `100001` is not a number of objects"),
        ("MQ_PORT", "amqp", "MQ_PORT: `amqp` is not a port number"),
        ("MQ_USE_SSL", "tls", "MQ_USE_SSL: `tls` is not a boolean"),
        ("MQ_SSL_VERIFY", "strict", "MQ_SSL_VERIFY: `strict` is not a boolean"),
        ("MQ_SSL_REJECT_UNAUTHORIZED", "strict", "MQ_SSL_REJECT_UNAUTHORIZED: `strict` is not a boolean"),
        (
            "MALTRAIL_API_BASE_URL",
            "api.github.com",
            "MALTRAIL_API_BASE_URL: `api.github.com` is not an http:// or https:// URL",
        ),
        (
            "MALTRAIL_REPOSITORY",
            "maltrail",
            "MALTRAIL_REPOSITORY: `maltrail` is not a GitHub repository (expected owner/name",
        ),
        ("MALTRAIL_REPOSITORY", "a/b/c", "MALTRAIL_REPOSITORY: `a/b/c` is not a GitHub repository"),
        ("MALTRAIL_REF", "my branch", "MALTRAIL_REF: `my branch` is not a git branch"),
        (
            "MALTRAIL_CATEGORIES",
            "malware,botnet",
            "MALTRAIL_CATEGORIES: `botnet` is not a category (expected malware, malicious, suspicious or mass_scanner)",
        ),
        ("MALTRAIL_CATEGORIES", " , ", "MALTRAIL_CATEGORIES: `,` names no category"),
        ("MALTRAIL_CREATE_OBSERVABLES", "sometimes", "MALTRAIL_CREATE_OBSERVABLES: `sometimes` is not a boolean"),
        (
            "MALTRAIL_SCORE_MALWARE",
            "101",
            "MALTRAIL_SCORE_MALWARE: `101` is not a score (a whole number from 0 to 100)",
        ),
        ("MALTRAIL_SCORE_MALICIOUS", "high", "MALTRAIL_SCORE_MALICIOUS: `high` is not a score"),
        ("MALTRAIL_SCORE_SUSPICIOUS", "-5", "MALTRAIL_SCORE_SUSPICIOUS: `-5` is not a score"),
        ("MALTRAIL_SCORE_MASS_SCANNER", "50.5", "MALTRAIL_SCORE_MASS_SCANNER: `50.5` is not a score"),
        ("MALTRAIL_TLP", "purple", "MALTRAIL_TLP: `purple` is not a TLP level"),
    ];
    for &(var, value, expected) in cases {
        let message = error(&[(var, value)]);
        assert!(message.starts_with(expected), "{var}={value:?}: {message}");
        let error = config(&[(var, value)]).unwrap_err();
        assert_eq!(error.variable(), Some(var), "{var}={value:?}");
    }
}

#[test]
fn cross_field_checks() {
    assert!(
        error(&[("CONNECTOR_SEND_TO_DIRECTORY", "true")]).starts_with("CONNECTOR_SEND_TO_DIRECTORY_PATH is required (")
    );
    let message = error(&[("CONNECTOR_SEND_TO_QUEUE", "false")]);
    assert!(message.starts_with("CONNECTOR_SEND_TO_QUEUE and CONNECTOR_SEND_TO_DIRECTORY are both false"), "{message}");
    assert!(error(&[("MQ_CERT", "/cert.pem")]).starts_with("MQ_KEY is required ("));
    assert!(error(&[("MQ_KEY", "/key.pem")]).starts_with("MQ_CERT is required ("));
}

#[test]
fn zero_period_runs_once() {
    for period in ["PT0S", "P0D"] {
        let config = config(&[("CONNECTOR_DURATION_PERIOD", period)]).unwrap();
        assert!(config.connector.duration_period.is_zero());
        assert!(!config.connector.run_and_terminate);
        assert!(config.connector.runs_once(), "{period}");
    }
}

#[test]
fn ssl_verify_takes_a_ca_bundle() {
    let ca = tempfile::NamedTempFile::new().unwrap();
    let path = ca.path().display().to_string();
    let with_ca = config(&[("OPENCTI_SSL_VERIFY", &path)]).unwrap();
    assert_eq!(with_ca.opencti.ssl_verify, TlsVerify::CaFile(ca.path().to_path_buf()));
    let verify = config(&[("OPENCTI_SSL_VERIFY", "True")]).unwrap();
    assert_eq!(verify.opencti.ssl_verify, TlsVerify::Verify);
}

#[test]
fn mq_ssl_reject_unauthorized_is_the_fallback() {
    assert!(!config(&[("MQ_SSL_REJECT_UNAUTHORIZED", "false")]).unwrap().mq.ssl_verify);
    let both = config(&[("MQ_SSL_REJECT_UNAUTHORIZED", "false"), ("MQ_SSL_VERIFY", "true")]).unwrap();
    assert!(both.mq.ssl_verify);
}

#[test]
fn web_url() {
    let maltrail = |url: &str| load(env(&[("MALTRAIL_API_BASE_URL", url)]), None).unwrap().maltrail().unwrap();
    assert_eq!(maltrail("https://api.github.com/").web_url(), "https://github.com");
    assert_eq!(maltrail("https://ghe.corp.example/api/v3").web_url(), "https://ghe.corp.example");
    assert_eq!(maltrail("http://127.0.0.1:8081").web_url(), "http://127.0.0.1:8081");
    assert_eq!(
        maltrail("https://api.github.com").file_link_base(),
        "https://github.com/stamparm/maltrail/blob/master/trails/static"
    );
}

#[test]
fn convert_options_need_no_opencti_variable() {
    let settings = load(env(&[("MALTRAIL_TLP", "green"), ("MALTRAIL_API_KEY", "")]), None).unwrap();
    let options = settings.convert_options().unwrap();
    assert_eq!(options.tlp, Tlp::Green);
    assert_eq!(options.categories, ConvertOptions::default().categories);
    assert_eq!(options.file_link_base, ConvertOptions::default().file_link_base);
    assert_eq!(settings.maltrail().unwrap().api_key, None);
    // The service itself does need them.
    assert!(settings.connector().is_err());
}

#[test]
fn logging_settings_alone() {
    let settings = load(env(&[("CONNECTOR_LOG_LEVEL", "Debug"), ("OPENCTI_JSON_LOGGING", "1")]), None).unwrap();
    assert_eq!(settings.log_level().unwrap(), LogLevel::Debug);
    assert!(settings.json_logging().unwrap());
}

#[test]
fn debug_output_hides_secrets() {
    let secrets = ["token-value", "mq-password", "api-key-value"];
    let vars = minimal(&[("MQ_PASS", secrets[1]), ("MALTRAIL_API_KEY", secrets[2])]);
    let settings = load(vars, None).unwrap();
    let config = settings.connector().unwrap();
    let debug = format!("{config:?} {config:#?} {settings:?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(debug.contains("***"));
    assert_eq!(config.opencti.token.to_string(), "***");
    assert_eq!(config.mq.pass.as_ref().map(Secret::expose), Some(secrets[1]));
}
