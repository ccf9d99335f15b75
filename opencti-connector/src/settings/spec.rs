//! Settings described once: each setting's variable, meaning, default and value type. The loader reads a setting
//! through its description, and the README tables, `config.yml.sample` and the catalog's JSON Schema are generated
//! from the same descriptions, so what the code reads and what the documents list cannot drift apart.

use serde_json::{Map, Value, json};

/// A type a setting can hold: how its text is read, and how it appears in the generated documents.
pub trait SettingValue: Sized {
    /// The JSON Schema keywords of the value, as OpenCTI's connector catalog wants them: always a `type`, never
    /// `anyOf`/`oneOf`, no object.
    fn schema() -> Map<String, Value>;

    /// Reads the value from its text (trimmed, never empty). The error completes "`<text>` …", e.g. "is not a
    /// boolean (expected true or false)"; `noun` names what a number counts ("a number of days").
    fn parse(text: &str, noun: &str) -> Result<Self, String>;

    /// A number written as such in `config.yml` (`duration_period: 3600`): read as its text unless the type gives
    /// numbers a meaning of their own (seconds, for a duration, as pycti reads it).
    fn parse_yaml_number(text: &str, noun: &str) -> Result<Self, String> {
        Self::parse(text, noun)
    }

    /// The value as JSON: a documented default or example.
    fn to_json(&self) -> Value;

    /// A token or password: hidden in the generated documents' examples and in logs.
    const SECRET: bool = false;
}

/// What a setting falls back to when it is not set.
pub enum Fallback<T: 'static> {
    /// The setting must be set.
    Required,
    /// No value: the setting is optional, and its absence means something (documented in its description).
    None,
    /// This value.
    Value(fn() -> T),
}

/// One setting: its variable (`CONNECTOR_DURATION_PERIOD`, which is also `connector.duration_period` in
/// `config.yml`), what it means, its fallback, and the older or other names it is also read from.
pub struct Setting<T: 'static> {
    pub var: &'static str,
    pub description: &'static str,
    pub fallback: Fallback<T>,
    /// Other names of the same setting (pycti's, or this project's earlier ones). Setting two of them to different
    /// values is an error.
    pub aliases: &'static [&'static str],
    /// What a number counts, for error messages ("a number of days"); empty for other types.
    pub noun: &'static str,
    /// A valid value to show in `config.yml.sample` and to use in tests when there is no default.
    pub example: Option<&'static str>,
    /// Listed in the connector catalog's schema. `CONNECTOR_ID` is not: the platform's connector manager sets it.
    pub in_catalog: bool,
}

impl<T: SettingValue> Setting<T> {
    /// A setting with only a variable, a description and a fallback.
    pub const fn new(var: &'static str, description: &'static str, fallback: Fallback<T>) -> Self {
        Self { var, description, fallback, aliases: &[], noun: "", example: None, in_catalog: true }
    }

    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    pub const fn noun(mut self, noun: &'static str) -> Self {
        self.noun = noun;
        self
    }

    pub const fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    pub const fn not_in_catalog(mut self) -> Self {
        self.in_catalog = false;
        self
    }

    /// The setting as the generated documents show it.
    pub fn doc(&self) -> SettingDoc {
        SettingDoc {
            var: self.var,
            description: self.description,
            schema: T::schema(),
            default: match &self.fallback {
                Fallback::Value(value) => Some(value().to_json()),
                Fallback::Required | Fallback::None => None,
            },
            required: matches!(self.fallback, Fallback::Required),
            secret: T::SECRET,
            aliases: self.aliases,
            example: self.example,
            in_catalog: self.in_catalog,
        }
    }
}

/// A setting as documented: what the generated files are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingDoc {
    pub var: &'static str,
    pub description: &'static str,
    /// JSON Schema keywords of the value (`type`, `format`, `enum`, …).
    pub schema: Map<String, Value>,
    pub default: Option<Value>,
    pub required: bool,
    pub secret: bool,
    pub aliases: &'static [&'static str],
    pub example: Option<&'static str>,
    pub in_catalog: bool,
}

impl SettingDoc {
    /// The same setting with another default (a connector's name, scope or period).
    pub(crate) fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }

    /// The key in its `config.yml` section: the variable without the section's prefix, lower case.
    pub fn key(&self, section: &str) -> String {
        let var = self.var.to_ascii_lowercase();
        var.strip_prefix(section).and_then(|rest| rest.strip_prefix('_')).map_or(var.clone(), str::to_owned)
    }

    /// A valid value as text: the example, else the default.
    pub fn sample_text(&self) -> Option<String> {
        self.example.map(str::to_owned).or_else(|| self.default.as_ref().map(json_text))
    }
}

/// One `config.yml` section (`opencti`, `connector`, `mq`, or a connector's own) and its settings, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionDoc {
    pub name: &'static str,
    /// What the section is about, one line.
    pub title: &'static str,
    pub settings: Vec<SettingDoc>,
}

/// A JSON value as an operator writes it in a variable: strings bare, lists comma-separated.
pub fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(json_text).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `{"type": kind}`.
pub fn schema_of(kind: &str) -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".into(), json!(kind));
    schema
}

/// `{"type": "string", "enum": values}`.
pub fn enum_schema(values: &[&str]) -> Map<String, Value> {
    let mut schema = schema_of("string");
    schema.insert("enum".into(), json!(values));
    schema
}
