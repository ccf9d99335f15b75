//! Settings: environment variables, with `config.yml` as a fallback, → validated, typed sections.
//!
//! The names are the ones pycti connectors use (`OPENCTI_*`, `CONNECTOR_*`, `MQ_*`, pycti's own forms included),
//! so existing deployments and compose files carry over; a connector adds a section of its own (e.g. `MALTRAIL_*`)
//! with the same machinery. Every setting is described once ([`Setting`]): the loader reads it through that
//! description, and [`render`] turns the descriptions into the README tables, `config.yml.sample` and the connector
//! catalog's JSON Schema. Loading has two steps: [`Vars`] merges the sources into text (the environment wins over
//! the file), then each section parses only its own settings, so a command that never talks to the platform needs
//! no `OPENCTI_*` variable. Every error names the variable and the form it expects.

mod duration;
mod platform;
pub mod render;
mod spec;
mod values;
mod vars;

use std::borrow::Cow;
use std::io;
use std::path::PathBuf;

pub use duration::{DurationError, parse_duration, pycti_period};
pub use platform::{
    ConnectorDefaults, ConnectorSettings, MqSettings, OpenCtiSettings, Role, Settings, SplitMode, platform_docs,
};
pub use spec::{Fallback, SectionDoc, Setting, SettingDoc, SettingValue, enum_schema, json_text, schema_of};
pub use values::{
    Count, HttpUrl, List, LogLevel, Megabytes, PemSource, Period, Port, Secret, TlsVerify, iso8601, list,
};
pub use vars::Vars;

/// The file read when no path is given, if it exists in the working directory.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "config.yml";

/// The sections of the platform's settings, which are also the variables' prefixes.
pub const PLATFORM_SECTIONS: [&str; 3] = ["opencti", "connector", "mq"];

/// A setting that is missing or malformed, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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
    /// The environment could not be read into text (not expected: every value is a string).
    #[error("configuration: {0}")]
    Environment(String),
}

impl SettingsError {
    /// The variable the error is about, when there is one.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            Self::Required { var, .. } | Self::Invalid { var, .. } => Some(var),
            _ => None,
        }
    }
}
