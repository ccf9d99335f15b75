//! Configuration: environment variables, with `config.yml` as a fallback, → validated, typed settings.
//!
//! The names are the ones pycti connectors use (`OPENCTI_*`, `CONNECTOR_*`, `MQ_*`), so existing deployments and
//! compose files carry over; `MALTRAIL_*` are ours. Loading has two steps: [`load`] merges the sources into raw
//! strings (the environment wins over the file), then [`Settings`] parses only the part a command asks for, so the
//! offline export runs without any `OPENCTI_*` variable. Every error names the variable and the form it expects.

mod duration;
mod model;
mod parse;
mod raw;
mod values;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

pub use duration::{DurationError, parse_iso8601_duration};
pub use model::{
    Config, ConnectorConfig, LogLevel, MaltrailConfig, MqConfig, OpenCtiConfig, Secret, SplitMode, TlsVerify,
};

use crate::convert::ConvertOptions;
use raw::RawSettings;

/// The only `CONNECTOR_TYPE` this connector accepts, and the one it registers with.
pub const CONNECTOR_TYPE: &str = "EXTERNAL_IMPORT";
/// Where Maltrail keeps its static trails (`MALTRAIL_PATH`'s default).
pub const DEFAULT_TRAILS_PATH: &str = "trails/static";

/// The file read when no path is given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.yml";

/// A setting that is missing or malformed, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required ({what})")]
    Required { var: &'static str, what: Cow<'static, str> },
    /// `message` starts with the offending value in backquotes.
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    /// Settings that are each valid but do not go together.
    #[error("{0}")]
    Conflict(String),
    #[error("cannot read the config file {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("config file {}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    /// The environment could not be deserialized (not expected: every field is an optional string).
    #[error("configuration: {0}")]
    Environment(String),
}

impl ConfigError {
    /// The variable the error is about, when there is one.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            Self::Required { var, .. } | Self::Invalid { var, .. } => Some(var),
            _ => None,
        }
    }
}

/// The merged raw settings; each accessor parses and checks the part it returns. Debug hides the secrets.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    raw: RawSettings,
}

impl Settings {
    /// Everything the service needs; requires `OPENCTI_URL`, `OPENCTI_TOKEN` and `CONNECTOR_ID`.
    pub fn connector(&self) -> Result<Config, ConfigError> {
        let maltrail = parse::maltrail(&self.raw)?;
        Ok(Config {
            opencti: parse::opencti(&self.raw)?,
            connector: parse::connector(&self.raw)?,
            mq: parse::mq(&self.raw)?,
            convert: parse::convert(&self.raw, &maltrail)?,
            maltrail,
        })
    }

    /// The conversion knobs only (`MALTRAIL_*`), for commands that never talk to the platform.
    pub fn convert_options(&self) -> Result<ConvertOptions, ConfigError> {
        parse::convert(&self.raw, &self.maltrail()?)
    }

    /// Where the trails come from (`MALTRAIL_*`), for commands that never talk to the platform.
    pub fn maltrail(&self) -> Result<MaltrailConfig, ConfigError> {
        parse::maltrail(&self.raw)
    }

    /// `CONNECTOR_LOG_LEVEL` alone, so logging can start before the rest is checked (and report it).
    pub fn log_level(&self) -> Result<LogLevel, ConfigError> {
        parse::log_level(&self.raw)
    }

    /// `OPENCTI_JSON_LOGGING` alone, for the same reason.
    pub fn json_logging(&self) -> Result<bool, ConfigError> {
        parse::json_logging(&self.raw)
    }
}

/// Merges the given variables over the given `config.yml` text (variables win). Only variables named like
/// settings (`OPENCTI_*`, `CONNECTOR_*`, `MQ_*`, `MALTRAIL_*`, upper case) are looked at; empty values count as
/// unset. YAML errors name the file `config.yml`.
pub fn load(env: impl IntoIterator<Item = (String, String)>, yaml: Option<&str>) -> Result<Settings, ConfigError> {
    let file = Path::new(DEFAULT_CONFIG_FILE);
    Ok(Settings { raw: raw::merge(env, yaml.map(|text| (text, file)))? })
}

/// The process environment over a config file: `config_file` if given (it must exist), else `config.yml` in the
/// working directory if there is one. Variables that are not valid UTF-8 are skipped (no setting has such a name).
pub fn from_process(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let path = match config_file {
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
    };
    let text = match &path {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.clone(), source })?)
        }
        None => None,
    };
    let env =
        std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)));
    let yaml = text.as_deref().zip(path.as_deref());
    Ok(Settings { raw: raw::merge(env, yaml)? })
}
