//! The sources merged into raw strings: `config.yml` flattened to variable names, overlaid by the environment.
//!
//! Everything becomes a string first so that a setting behaves the same whichever source it comes from, and the
//! typed parsing (with its error messages naming the variable) happens in one place.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

use super::ConfigError;
use super::model::Secret;

/// The `config.yml` sections, which are also the variables' prefixes.
const SECTIONS: [&str; 4] = ["opencti", "connector", "mq", "maltrail"];

/// Every setting as found, trimmed, empty ones left out. envy fills each field from the variable of the same name
/// uppercased (`opencti_url` ← `OPENCTI_URL`); other variables are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct RawSettings {
    pub opencti_url: Option<String>,
    pub opencti_token: Option<Secret>,
    pub opencti_ssl_verify: Option<String>,
    pub opencti_json_logging: Option<String>,

    pub connector_id: Option<String>,
    pub connector_type: Option<String>,
    pub connector_name: Option<String>,
    pub connector_scope: Option<String>,
    pub connector_log_level: Option<String>,
    pub connector_duration_period: Option<String>,
    pub connector_run_and_terminate: Option<String>,
    pub connector_queue_threshold: Option<String>,
    pub connector_send_to_queue: Option<String>,
    pub connector_send_to_directory: Option<String>,
    pub connector_send_to_directory_path: Option<String>,
    pub connector_send_to_directory_retention: Option<String>,
    pub connector_expose_metrics: Option<String>,
    pub connector_metrics_port: Option<String>,
    pub connector_split: Option<String>,
    pub connector_publish_window: Option<String>,
    pub connector_batch_size: Option<String>,

    pub mq_host: Option<String>,
    pub mq_port: Option<String>,
    pub mq_vhost: Option<String>,
    pub mq_use_ssl: Option<String>,
    pub mq_user: Option<String>,
    pub mq_pass: Option<Secret>,
    pub mq_ca: Option<String>,
    pub mq_cert: Option<String>,
    pub mq_key: Option<String>,
    pub mq_ssl_verify: Option<String>,
    pub mq_ssl_reject_unauthorized: Option<String>,

    pub maltrail_api_base_url: Option<String>,
    pub maltrail_api_key: Option<Secret>,
    pub maltrail_repository: Option<String>,
    pub maltrail_ref: Option<String>,
    pub maltrail_path: Option<String>,
    pub maltrail_directory: Option<String>,
    pub maltrail_categories: Option<String>,
    pub maltrail_create_observables: Option<String>,
    pub maltrail_score_malware: Option<String>,
    pub maltrail_score_malicious: Option<String>,
    pub maltrail_score_suspicious: Option<String>,
    pub maltrail_score_mass_scanner: Option<String>,
    pub maltrail_tlp: Option<String>,
}

/// Merges the YAML (if any) and the environment, the environment winning. An empty (or blank) value counts as
/// unset, in either source, so `OPENCTI_TOKEN=` in a compose file does not hide the file's token.
pub(super) fn merge(
    env: impl IntoIterator<Item = (String, String)>,
    yaml: Option<(&str, &Path)>,
) -> Result<RawSettings, ConfigError> {
    let mut vars = match yaml {
        Some((text, file)) => flatten_yaml(text, file)?,
        None => BTreeMap::new(),
    };
    for (name, value) in env {
        // Variables are case-sensitive, as for pycti: `opencti_url` is not `OPENCTI_URL`. (envy lowercases names,
        // so letting both through would make one field appear twice.)
        if is_setting_name(&name) && !value.trim().is_empty() {
            vars.insert(name, value);
        }
    }
    let vars = vars.into_iter().filter_map(|(name, value)| {
        let value = value.trim();
        (!value.is_empty()).then(|| (name, value.to_owned()))
    });
    envy::from_iter(vars).map_err(|error| ConfigError::Environment(error.to_string()))
}

fn is_setting_name(name: &str) -> bool {
    !name.bytes().any(|b| b.is_ascii_lowercase())
        && SECTIONS.iter().any(|section| {
            name.get(..section.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(section))
                && name.get(section.len()..).is_some_and(|rest| rest.starts_with('_'))
        })
}

/// `connector: {duration_period: PT1H}` → `CONNECTOR_DURATION_PERIOD` = `PT1H`. Scalars become their text, a list
/// of scalars is joined with commas, `null` is unset; sections other than ours are ignored.
fn flatten_yaml(text: &str, file: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let error = |message: String| ConfigError::Yaml { path: file.to_path_buf(), message };
    let root: Value = serde_norway::from_str(text).map_err(|e| error(e.to_string()))?;
    let mut vars = BTreeMap::new();
    let sections = match root {
        Value::Null => return Ok(vars),
        Value::Mapping(sections) => sections,
        _ => {
            return Err(error("expected a mapping of sections (opencti:, connector:, mq:, maltrail:)".into()));
        }
    };
    for (section, settings) in sections {
        let Some(section) = scalar(&section).map(|s| s.to_ascii_lowercase()) else {
            continue;
        };
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let settings = match settings {
            Value::Null => continue,
            Value::Mapping(settings) => settings,
            _ => return Err(error(format!("`{section}` must be a mapping of settings"))),
        };
        for (key, value) in settings {
            let Some(key) = scalar(&key) else {
                continue;
            };
            let Some(value) = setting_value(&value) else {
                return Err(error(format!("{section}.{key}: expected a value or a list of values")));
            };
            if let Some(value) = value {
                vars.insert(format!("{section}_{key}").to_ascii_uppercase(), value);
            }
        }
    }
    Ok(vars)
}

/// The text of a scalar; `None` for null, lists and mappings.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Tagged(tagged) => scalar(&tagged.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// `Some(None)` for null (unset), `Some(Some(text))` for a scalar or a list of scalars, `None` for anything else.
fn setting_value(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::Sequence(items) => {
            let items: Option<Vec<String>> = items.iter().map(scalar).collect();
            items.map(|items| Some(items.join(",")))
        }
        Value::Tagged(tagged) => setting_value(&tagged.value),
        other => scalar(other).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        flatten_yaml(text, Path::new("config.yml"))
    }

    #[test]
    fn flattens_sections_scalars_and_lists() {
        let vars = flatten(
            "opencti:\n  url: http://x\n  json_logging: true\nconnector:\n  duration_period: PT1H\n  \
             queue_threshold: 12.5\n  metrics_port: 9000\n  scope: [maltrail, other]\n  name: ~\n\
             maltrail:\n  categories:\n    - malware\n    - mass_scanner\nother:\n  key: value\nmq:\n",
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("OPENCTI_URL", "http://x"),
            ("OPENCTI_JSON_LOGGING", "true"),
            ("CONNECTOR_DURATION_PERIOD", "PT1H"),
            ("CONNECTOR_QUEUE_THRESHOLD", "12.5"),
            ("CONNECTOR_METRICS_PORT", "9000"),
            ("CONNECTOR_SCOPE", "maltrail,other"),
            ("MALTRAIL_CATEGORIES", "malware,mass_scanner"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn empty_file_is_no_settings() {
        assert!(flatten("").unwrap().is_empty());
        assert!(flatten("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_file() {
        for text in ["opencti: [1", "- a\n- b\n", "connector: 3\n", "connector:\n  scope: {a: b}\n"] {
            let message = flatten(text).unwrap_err().to_string();
            assert!(message.starts_with("config file config.yml: "), "{text:?}: {message}");
        }
        let message = flatten("connector:\n  scope: {a: b}\n").unwrap_err().to_string();
        assert!(message.contains("connector.scope"), "{message}");
    }

    #[test]
    fn only_upper_case_setting_names_are_taken_from_the_environment() {
        assert!(is_setting_name("OPENCTI_URL"));
        assert!(is_setting_name("MALTRAIL_REF"));
        assert!(!is_setting_name("opencti_url"));
        assert!(!is_setting_name("PATH"));
        assert!(!is_setting_name("MQ"));
        assert!(!is_setting_name("MQX_HOST"));
    }
}
