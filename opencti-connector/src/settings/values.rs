//! The types settings hold, each read from text with an error that says what was expected, and each described as
//! the catalog's JSON Schema shows it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::duration::{DurationError, pycti_period};
use super::spec::{SettingValue, enum_schema, schema_of};

/// `true/false/yes/no/1/0/on/off`, any case, surrounding spaces ignored (pycti's `yes/true/True` and
/// `no/false/False` included).
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

impl SettingValue for bool {
    fn schema() -> Map<String, Value> {
        schema_of("boolean")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        parse_bool(text).ok_or_else(|| "is not a boolean (expected true or false)".to_owned())
    }

    fn to_json(&self) -> Value {
        json!(self)
    }
}

impl SettingValue for String {
    fn schema() -> Map<String, Value> {
        schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }

    fn to_json(&self) -> Value {
        json!(self)
    }
}

impl SettingValue for PathBuf {
    fn schema() -> Map<String, Value> {
        schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }

    fn to_json(&self) -> Value {
        json!(self.display().to_string())
    }
}

impl SettingValue for Uuid {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("string");
        schema.insert("format".into(), json!("uuid"));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        Uuid::parse_str(text).map_err(|_| "is not a UUID (e.g. from `uuidgen`)".to_owned())
    }

    fn to_json(&self) -> Value {
        json!(self.to_string())
    }
}

/// A token or password. Debug and Display print `***`, so a logged setting never leaks it; [`Secret::expose`] is
/// the one way to read it, which makes every use easy to find.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
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

impl SettingValue for Secret {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("string");
        schema.insert("format".into(), json!("password"));
        schema.insert("writeOnly".into(), json!(true));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }

    fn to_json(&self) -> Value {
        Value::Null
    }

    const SECRET: bool = true;
}

/// An `http://` or `https://` URL with a host, kept without its trailing `/`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// A URL the code trusts (a default), taken as written.
    pub fn trusted(url: &'static str) -> Self {
        HttpUrl(url.trim_end_matches('/').to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SettingValue for HttpUrl {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("string");
        schema.insert("format".into(), json!("uri"));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
        let has_host = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !has_host || text.chars().any(char::is_whitespace) {
            return Err("is not an http:// or https:// URL".to_owned());
        }
        Ok(HttpUrl(text.trim_end_matches('/').to_owned()))
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// A whole number in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Count<MIN, MAX> {
    pub fn get(self) -> u64 {
        self.0
    }

    /// As a `usize` (the bound fits on every platform this runs on; saturates otherwise).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> SettingValue for Count<MIN, MAX> {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("integer");
        schema.insert("minimum".into(), json!(MIN));
        schema.insert("maximum".into(), json!(MAX));
        schema
    }

    fn parse(text: &str, noun: &str) -> Result<Self, String> {
        match text.parse::<u64>() {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Count(n)),
            _ => Err(format!("is not {noun} (a whole number from {MIN} to {MAX})")),
        }
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// A TCP port.
pub type Port = Count<1, 65535>;

impl Port {
    pub fn port(self) -> u16 {
        u16::try_from(self.0).unwrap_or(u16::MAX)
    }
}

/// A positive number of megabytes (`CONNECTOR_QUEUE_THRESHOLD`, which pycti compares with the queue's size / 10^6).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Megabytes(pub f64);

impl SettingValue for Megabytes {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("number");
        schema.insert("exclusiveMinimum".into(), json!(0));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        match text.parse::<f64>() {
            Ok(mb) if mb.is_finite() && mb > 0.0 => Ok(Megabytes(mb)),
            _ => Err("is not a positive number of megabytes (e.g. 500)".to_owned()),
        }
    }

    fn to_json(&self) -> Value {
        if self.0.fract() == 0.0 && self.0 < 1e15 { json!(self.0 as u64) } else { json!(self.0) }
    }
}

/// A period, read as pycti reads `CONNECTOR_DURATION_PERIOD`: pydantic's `timedelta` forms (ISO 8601 with years
/// as 365 days and months as 30, `HH:MM:SS`, `1 day, 01:00:00`), truncated to whole seconds, `0` for zero; in
/// `config.yml` a plain number is seconds. Two of pycti's accidents are refused rather than copied: a boolean
/// (pycti takes `true` as a one-second period) and a negative period (pycti would run back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub Duration);

impl Period {
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// `PT1H30M`: an ISO 8601 rendering of whole seconds.
pub fn iso8601(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return "PT0S".into();
    }
    let (days, rest) = (total / 86_400, total % 86_400);
    let (hours, minutes, seconds) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let mut text = String::from("P");
    if days > 0 {
        text.push_str(&format!("{days}D"));
    }
    if rest > 0 {
        text.push('T');
        for (value, unit) in [(hours, 'H'), (minutes, 'M'), (seconds, 'S')] {
            if value > 0 {
                text.push_str(&format!("{value}{unit}"));
            }
        }
    }
    text
}

impl SettingValue for Period {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("string");
        schema.insert("format".into(), json!("duration"));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        if parse_bool(text).is_some() && text != "0" {
            return Err("is a boolean, not a duration (pycti would take `true` as a one-second period): use e.g. \
                        PT1H, or 0 to run once"
                .to_owned());
        }
        match pycti_period(text) {
            Ok(period) => Ok(Period(period)),
            Err(DurationError::Syntax) => {
                Err("is not a duration (expected ISO 8601 such as PT1H, P1D, PT30M, or HH:MM:SS; 0 runs once)"
                    .to_owned())
            }
            Err(DurationError::Negative) => Err("is a negative duration".to_owned()),
            Err(DurationError::TooLong) => Err("is too long a duration".to_owned()),
        }
    }

    fn parse_yaml_number(text: &str, noun: &str) -> Result<Self, String> {
        match text.parse::<f64>() {
            // pydantic takes a number as seconds, and pycti truncates to whole seconds.
            Ok(seconds) if (0.0..1e15).contains(&seconds) => Ok(Period(Duration::from_secs(seconds as u64))),
            _ => Self::parse(text, noun),
        }
    }

    fn to_json(&self) -> Value {
        json!(iso8601(self.0))
    }
}

/// A comma-separated list (or a YAML list): items trimmed, empty items dropped, at least one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct List(pub Vec<String>);

impl SettingValue for List {
    fn schema() -> Map<String, Value> {
        let mut schema = schema_of("array");
        schema.insert("items".into(), json!({"type": "string"}));
        schema
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        let items = list(text);
        if items.is_empty() {
            return Err("is not a comma-separated list".to_owned());
        }
        Ok(List(items))
    }

    fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// A comma-separated list: items trimmed, empty items dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `CONNECTOR_LOG_LEVEL`.
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
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SettingValue for LogLevel {
    fn schema() -> Map<String, Value> {
        enum_schema(&["debug", "info", "warn", "warning", "error"])
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err("is not a log level (expected debug, info, warn or error)".to_owned()),
        }
    }

    fn to_json(&self) -> Value {
        json!(self.as_str())
    }
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

impl SettingValue for TlsVerify {
    fn schema() -> Map<String, Value> {
        schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        match parse_bool(text) {
            Some(true) => Ok(Self::Verify),
            Some(false) => Ok(Self::NoVerify),
            None if Path::new(text).is_file() => Ok(Self::CaFile(PathBuf::from(text))),
            None => Err("is neither a boolean (true or false) nor the path of an existing CA bundle file".to_owned()),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Verify => json!("true"),
            Self::NoVerify => json!("false"),
            Self::CaFile(path) => json!(path.display().to_string()),
        }
    }
}

/// PEM data given as a file path or inline (`-----BEGIN …`), as pycti reads `MQ_USE_SSL_CA`, `_CERT` and `_KEY`.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    Inline(String),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "File({})", path.display()),
            // A private key may be inline: never print it.
            Self::Inline(_) => f.write_str("Inline(***)"),
        }
    }
}

impl PemSource {
    /// The PEM bytes; `what` names the setting in the error.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::File(path) => std::fs::read(path),
            Self::Inline(pem) => Ok(pem.clone().into_bytes()),
        }
    }

    /// Where the PEM comes from, for messages (never the inline text itself).
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Inline(_) => "(inline PEM)".to_owned(),
        }
    }
}

impl SettingValue for PemSource {
    fn schema() -> Map<String, Value> {
        schema_of("string")
    }

    fn parse(text: &str, _noun: &str) -> Result<Self, String> {
        if text.starts_with("-----BEGIN") {
            // A variable set from a file with newlines escaped keeps them as `\n`.
            Ok(Self::Inline(text.replace("\\n", "\n")))
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }

    fn to_json(&self) -> Value {
        json!(self.describe())
    }
}

/// Implements [`SettingValue`] for a `Copy` enum read from a fixed set of names.
#[macro_export]
macro_rules! named_setting_value {
    ($type:ty, $expected:literal, { $($name:literal => $value:expr),+ $(,)? }, $as_str:expr) => {
        impl $crate::settings::SettingValue for $type {
            fn schema() -> ::serde_json::Map<String, ::serde_json::Value> {
                $crate::settings::enum_schema(&[$($name),+])
            }

            fn parse(text: &str, _noun: &str) -> Result<Self, String> {
                match text.to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    _ => Err(concat!("is not ", $expected).to_owned()),
                }
            }

            fn to_json(&self) -> ::serde_json::Value {
                let as_str: fn(&Self) -> &'static str = $as_str;
                ::serde_json::json!(as_str(self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for text in ["true", "TRUE", " yes ", "1", "On", "True"] {
            assert_eq!(parse_bool(text), Some(true), "{text}");
        }
        for text in ["false", "False", "no", "0", "OFF "] {
            assert_eq!(parse_bool(text), Some(false), "{text}");
        }
        for text in ["", "ture", "2", "y", "enabled"] {
            assert_eq!(parse_bool(text), None, "{text}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(HttpUrl::parse("http://opencti:8080/", "").unwrap().as_str(), "http://opencti:8080");
        assert_eq!(HttpUrl::parse("HTTPS://a.b/prefix//", "").unwrap().as_str(), "HTTPS://a.b/prefix");
        for bad in ["opencti:8080", "ftp://x", "http://", "https:///x", "http://a b"] {
            assert!(HttpUrl::parse(bad, "").is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(list(" a, b ,,c,"), ["a", "b", "c"]);
        assert!(List::parse(" , ", "").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(Port::parse("80", "a port number").unwrap().port(), 80);
        let error = Port::parse("70000", "a port number").unwrap_err();
        assert_eq!(error, "is not a port number (a whole number from 1 to 65535)");
        assert!(Port::parse("0", "a port number").is_err());
        assert!(Port::parse("-1", "a port number").is_err());
    }

    #[test]
    fn periods() {
        let period = |text: &str| Period::parse(text, "").map(Period::as_duration);
        assert_eq!(period("PT1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(period("P1M"), Ok(Duration::from_secs(30 * 86_400)), "pydantic's months are 30 days");
        assert_eq!(period("0"), Ok(Duration::ZERO), "pycti's run-once value");
        assert_eq!(period("01:30:00"), Ok(Duration::from_secs(5400)));
        assert_eq!(period("PT1.9S"), Ok(Duration::from_secs(1)), "pycti truncates to whole seconds");
        assert!(period("3600").is_err(), "a bare number is not a duration, as in pycti");
        assert!(period("true").unwrap_err().contains("boolean"));
        assert!(period("-P1D").unwrap_err().contains("negative"));
        assert_eq!(Period::parse_yaml_number("3600", "").map(Period::as_duration), Ok(Duration::from_secs(3600)));
        assert_eq!(iso8601(Duration::from_secs(93_784)), "P1DT2H3M4S");
        assert_eq!(iso8601(Duration::from_secs(3600)), "PT1H");
        assert_eq!(iso8601(Duration::ZERO), "PT0S");
    }

    #[test]
    fn pem_sources_hide_inline_keys() {
        let inline = PemSource::parse("-----BEGIN PRIVATE KEY-----\\nsecret\\n-----END PRIVATE KEY-----", "").unwrap();
        assert_eq!(inline.read().unwrap(), b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----");
        assert!(!format!("{inline:?}").contains("secret"));
        assert_eq!(PemSource::parse("/ca.pem", "").unwrap(), PemSource::File("/ca.pem".into()));
    }
}
