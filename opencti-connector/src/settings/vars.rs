//! The raw settings: environment variables over `config.yml`, as text, looked up through a setting's description
//! (its name and aliases), parsed into its type, with errors that name the variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_norway::Value;

use super::SettingsError;
use super::spec::{Fallback, Setting, SettingValue};

/// One raw value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Raw {
    text: String,
    /// A number written as such in `config.yml` (not quoted), which some types read differently.
    yaml_number: bool,
}

/// The merged raw settings, keyed by variable name. Debug shows names only: values may be secrets.
#[derive(Default)]
pub struct Vars {
    values: BTreeMap<String, Raw>,
    /// Variables looked up so far (a setting's name and aliases), for the check that every setting the code
    /// reads is documented.
    looked_up: Mutex<BTreeSet<&'static str>>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vars").field("set", &self.values.keys().collect::<Vec<_>>()).finish()
    }
}

impl Vars {
    /// Merges the variables over the `config.yml` text (variables win). Only variables of the given sections
    /// (`OPENCTI_*`, `CONNECTOR_*`, …, upper case, as pycti reads them) are taken; an empty or blank value counts
    /// as unset, in either source, so that `OPENCTI_TOKEN=` in a compose file does not hide the file's token.
    pub fn merge(
        env: impl IntoIterator<Item = (String, String)>,
        yaml: Option<(&str, &Path)>,
        sections: &[&str],
    ) -> Result<Self, SettingsError> {
        let mut values = match yaml {
            Some((text, file)) => flatten_yaml(text, file, sections)?,
            None => BTreeMap::new(),
        };
        // Variables are case-sensitive, as for pycti: `opencti_url` is not `OPENCTI_URL`. envy reads the rest into
        // a map keyed by lower-case names, which are upper-cased back.
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, value)| is_setting_name(name, sections) && !value.trim().is_empty())
            .collect();
        let env: BTreeMap<String, String> =
            envy::from_iter(env).map_err(|error| SettingsError::Environment(error.to_string()))?;
        for (name, text) in env {
            values.insert(name.to_ascii_uppercase(), Raw { text, yaml_number: false });
        }
        values.retain(|_, raw| {
            raw.text = raw.text.trim().to_owned();
            !raw.text.is_empty()
        });
        Ok(Self { values, looked_up: Mutex::new(BTreeSet::new()) })
    }

    /// The environment of this process over a config file: `config_file` if given (it must exist), else
    /// `config.yml` in the working directory if there is one. Variables that are not valid UTF-8 are skipped (no
    /// setting has such a name).
    pub fn from_process(config_file: Option<&Path>, sections: &[&str]) -> Result<Self, SettingsError> {
        let path = match config_file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(super::DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
        };
        let text = match &path {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| SettingsError::ReadFile { path: path.clone(), source })?,
            ),
            None => None,
        };
        let env =
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)));
        Self::merge(env, text.as_deref().zip(path.as_deref()), sections)
    }

    /// A setting with a fallback value, or a required one.
    pub fn get<T: SettingValue>(&self, setting: &Setting<T>) -> Result<T, SettingsError> {
        match (self.optional(setting)?, &setting.fallback) {
            (Some(value), _) => Ok(value),
            (None, Fallback::Value(default)) => Ok(default()),
            (None, Fallback::Required | Fallback::None) => {
                Err(SettingsError::Required { var: setting.var, what: what_it_is(setting.description).into() })
            }
        }
    }

    /// A setting's value when it is set (its fallback is not applied).
    pub fn optional<T: SettingValue>(&self, setting: &Setting<T>) -> Result<Option<T>, SettingsError> {
        let Some((var, raw)) = self.lookup(setting)? else { return Ok(None) };
        let parsed = if raw.yaml_number {
            T::parse_yaml_number(&raw.text, setting.noun)
        } else {
            T::parse(&raw.text, setting.noun)
        };
        let shown = if T::SECRET { "***" } else { raw.text.as_str() };
        parsed.map(Some).map_err(|problem| SettingsError::Invalid { var, message: format!("`{shown}` {problem}") })
    }
    /// The raw value under the setting's name or one of its aliases; two names set to different values are an
    /// error (which one is meant?).
    fn lookup<T>(&self, setting: &Setting<T>) -> Result<Option<(&'static str, &Raw)>, SettingsError> {
        let names = std::iter::once(setting.var).chain(setting.aliases.iter().copied());
        let mut found: Option<(&'static str, &Raw)> = None;
        let mut looked_up = self.looked_up.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in names {
            looked_up.insert(name);
            let Some(raw) = self.values.get(name) else { continue };
            match found {
                Some((first, seen)) if seen.text != raw.text => {
                    return Err(SettingsError::Conflict(format!(
                        "{first} and {name} are two names of one setting, set to different values: keep one"
                    )));
                }
                Some(_) => {}
                None => found = Some((name, raw)),
            }
        }
        Ok(found)
    }

    /// The variables looked up so far, in order.
    pub fn looked_up(&self) -> BTreeSet<&'static str> {
        self.looked_up.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The names of every variable that is set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// A description as the end of "X is required (…)": first letter lower case, no final full stop.
fn what_it_is(description: &str) -> String {
    let text = description.trim_end_matches('.');
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // "URL of …" stays as it is; "The token …" becomes "the token …".
        (Some(first), Some(second)) if second.is_lowercase() => {
            first.to_lowercase().chain(text[first.len_utf8()..].chars()).collect()
        }
        _ => text.to_owned(),
    }
}

/// `OPENCTI_URL` for the sections `opencti`, …: upper case, a known section's prefix, then `_`.
fn is_setting_name(name: &str, sections: &[&str]) -> bool {
    !name.bytes().any(|b| b.is_ascii_lowercase())
        && sections.iter().any(|section| {
            name.get(..section.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(section))
                && name.get(section.len()..).is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
        })
}

/// `connector: {duration_period: PT1H}` → `CONNECTOR_DURATION_PERIOD` = `PT1H`. Scalars become their text (numbers
/// remembered as such), a list of scalars is joined with commas, `null` is unset; other sections are ignored.
fn flatten_yaml(text: &str, file: &Path, sections: &[&str]) -> Result<BTreeMap<String, Raw>, SettingsError> {
    let error = |message: String| SettingsError::Yaml { path: file.to_path_buf(), message };
    let root: Value = serde_norway::from_str(text).map_err(|e| error(e.to_string()))?;
    let mut vars = BTreeMap::new();
    let found = match root {
        Value::Null => return Ok(vars),
        Value::Mapping(found) => found,
        _ => return Err(error(format!("expected a mapping of sections ({}:)", sections.join(":, ")))),
    };
    for (section, settings) in found {
        let Some(section) = scalar(&section).map(|(s, _)| s.to_ascii_lowercase()) else {
            continue;
        };
        if !sections.contains(&section.as_str()) {
            continue;
        }
        let settings = match settings {
            Value::Null => continue,
            Value::Mapping(settings) => settings,
            _ => return Err(error(format!("`{section}` must be a mapping of settings"))),
        };
        for (key, value) in settings {
            let Some((key, _)) = scalar(&key) else {
                continue;
            };
            let Some(value) = setting_value(&value) else {
                return Err(error(format!("{section}.{key}: expected a value or a list of values")));
            };
            if let Some((text, yaml_number)) = value {
                vars.insert(format!("{section}_{key}").to_ascii_uppercase(), Raw { text, yaml_number });
            }
        }
    }
    Ok(vars)
}

/// The text of a scalar and whether it is a number; `None` for null, lists and mappings.
fn scalar(value: &Value) -> Option<(String, bool)> {
    match value {
        Value::Bool(b) => Some((b.to_string(), false)),
        Value::Number(n) => Some((n.to_string(), true)),
        Value::String(s) => Some((s.clone(), false)),
        Value::Tagged(tagged) => scalar(&tagged.value),
        Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// `Some(None)` for null (unset), `Some(Some(..))` for a scalar or a list of scalars, `None` for anything else.
fn setting_value(value: &Value) -> Option<Option<(String, bool)>> {
    match value {
        Value::Null => Some(None),
        Value::Sequence(items) => {
            let items: Option<Vec<String>> = items.iter().map(|item| scalar(item).map(|(text, _)| text)).collect();
            items.map(|items| Some((items.join(","), false)))
        }
        Value::Tagged(tagged) => setting_value(&tagged.value),
        other => scalar(other).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::spec::Fallback;
    use crate::settings::values::Period;

    const SECTIONS: &[&str] = &["opencti", "connector", "mq", "example"];

    fn flatten(text: &str) -> Result<BTreeMap<String, String>, SettingsError> {
        let vars = flatten_yaml(text, Path::new("config.yml"), SECTIONS)?;
        Ok(vars.into_iter().map(|(k, raw)| (k, raw.text)).collect())
    }

    #[test]
    fn flattens_sections_scalars_and_lists() {
        let vars = flatten(
            "opencti:\n  url: http://x\n  json_logging: true\nconnector:\n  duration_period: PT1H\n  \
             queue_threshold: 12.5\n  metrics_port: 9000\n  scope: [a, other]\n  name: ~\n\
             example:\n  categories:\n    - malware\n    - mass_scanner\nother:\n  key: value\nmq:\n",
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("OPENCTI_URL", "http://x"),
            ("OPENCTI_JSON_LOGGING", "true"),
            ("CONNECTOR_DURATION_PERIOD", "PT1H"),
            ("CONNECTOR_QUEUE_THRESHOLD", "12.5"),
            ("CONNECTOR_METRICS_PORT", "9000"),
            ("CONNECTOR_SCOPE", "a,other"),
            ("EXAMPLE_CATEGORIES", "malware,mass_scanner"),
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
    fn yaml_errors_name_the_file() {
        for text in ["opencti: [1", "- a\n- b\n", "connector: 3\n", "connector:\n  scope: {a: b}\n"] {
            let message = flatten(text).unwrap_err().to_string();
            assert!(message.starts_with("config file config.yml: "), "{text:?}: {message}");
        }
        let message = flatten("connector:\n  scope: {a: b}\n").unwrap_err().to_string();
        assert!(message.contains("connector.scope"), "{message}");
    }

    #[test]
    fn only_upper_case_setting_names_are_taken_from_the_environment() {
        assert!(is_setting_name("OPENCTI_URL", SECTIONS));
        assert!(is_setting_name("EXAMPLE_REF", SECTIONS));
        assert!(!is_setting_name("opencti_url", SECTIONS));
        assert!(!is_setting_name("PATH", SECTIONS));
        assert!(!is_setting_name("MQ", SECTIONS));
        assert!(!is_setting_name("MQ_", SECTIONS));
        assert!(!is_setting_name("MQX_HOST", SECTIONS));
    }

    #[test]
    fn environment_wins_and_blank_is_unset() {
        let yaml = "connector:\n  name: FromYaml\n  scope: yaml\n";
        let env = [("CONNECTOR_NAME", ""), ("CONNECTOR_SCOPE", "env"), ("connector_scope", "lower")];
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let vars = Vars::merge(env, Some((yaml, Path::new("config.yml"))), SECTIONS).unwrap();
        assert_eq!(vars.names().collect::<Vec<_>>(), ["CONNECTOR_NAME", "CONNECTOR_SCOPE"]);
        let name: Setting<String> = Setting::new("CONNECTOR_NAME", "The name.", Fallback::Required);
        assert_eq!(vars.get(&name).unwrap(), "FromYaml");
        let scope: Setting<String> = Setting::new("CONNECTOR_SCOPE", "The scope.", Fallback::Required);
        assert_eq!(vars.get(&scope).unwrap(), "env");
    }

    #[test]
    fn aliases_agree_or_conflict() {
        const SETTING: Setting<bool> =
            Setting::new("MQ_USE_SSL_REJECT_UNAUTHORIZED", "Verify.", Fallback::Value(|| true))
                .aliases(&["MQ_SSL_VERIFY"]);
        let vars = |pairs: &[(&str, &str)]| {
            Vars::merge(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), None, SECTIONS).unwrap()
        };
        assert!(!vars(&[("MQ_SSL_VERIFY", "false")]).get(&SETTING).unwrap(), "an alias alone");
        assert!(
            !vars(&[("MQ_SSL_VERIFY", "false"), ("MQ_USE_SSL_REJECT_UNAUTHORIZED", "false")]).get(&SETTING).unwrap()
        );
        let error = vars(&[("MQ_SSL_VERIFY", "false"), ("MQ_USE_SSL_REJECT_UNAUTHORIZED", "true")])
            .get(&SETTING)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "MQ_USE_SSL_REJECT_UNAUTHORIZED and MQ_SSL_VERIFY are two names of one setting, set to different values: keep one"
        );
        let error = vars(&[("MQ_SSL_VERIFY", "maybe")]).get(&SETTING).unwrap_err().to_string();
        assert_eq!(error, "MQ_SSL_VERIFY: `maybe` is not a boolean (expected true or false)", "the name that was set");
    }

    #[test]
    fn yaml_numbers_keep_their_meaning() {
        const PERIOD: Setting<Period> = Setting::new("CONNECTOR_DURATION_PERIOD", "Period.", Fallback::Required);
        let numbered = Vars::merge([], Some(("connector:\n  duration_period: 3600\n", Path::new("c.yml"))), SECTIONS);
        assert_eq!(numbered.unwrap().get(&PERIOD).unwrap().as_duration().as_secs(), 3600, "seconds, as in pycti");
        let quoted = Vars::merge([], Some(("connector:\n  duration_period: '3600'\n", Path::new("c.yml"))), SECTIONS);
        assert!(quoted.unwrap().get(&PERIOD).is_err(), "a string of digits is no duration, as in pycti");
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        const PASS: Setting<crate::settings::Secret> = Setting::new("MQ_PASS", "The password.", Fallback::None);
        let vars = Vars::merge([("MQ_PASS".to_owned(), "hunter2".to_owned())], None, SECTIONS).unwrap();
        assert_eq!(vars.get(&PASS).unwrap().expose(), "hunter2");
        assert!(!format!("{vars:?}").contains("hunter2"));
    }
}
