//! The documents generated from the settings' descriptions: the README's tables, `config.yml.sample`, the connector
//! catalog's `connector_config_schema.json` (JSON Schema draft 2020-12, the catalog's conventions) and its
//! `CONNECTOR_CONFIG_DOC.md`. A connector's test compares the committed files with these and rewrites them on
//! request, so a setting added to the code and not to the documents fails the build.

use std::fmt::Write;

use serde_json::{Map, Value, json};

use super::spec::{SectionDoc, SettingDoc, json_text};

/// How a default shows in a table: `` `PT1H` ``, **required**, or a dash.
fn default_cell(setting: &SettingDoc) -> String {
    match (&setting.default, setting.required) {
        (_, true) => "**required**".into(),
        (Some(Value::String(text)), _) if text.is_empty() => "(empty)".into(),
        (Some(value), _) if !value.is_null() => format!("`{}`", json_text(value)),
        _ => "—".into(),
    }
}

fn aliases_note(setting: &SettingDoc) -> String {
    if setting.aliases.is_empty() {
        return String::new();
    }
    let names: Vec<String> = setting.aliases.iter().map(|a| format!("`{a}`")).collect();
    format!(" Also read as {}.", names.join(", "))
}

/// One Markdown table per section: variable, default, meaning.
pub fn readme_tables(sections: &[SectionDoc]) -> String {
    let mut out = String::new();
    for section in sections {
        let _ = writeln!(out, "**{}** (`{}:` in `config.yml`)\n", section.title, section.name);
        out.push_str("| Variable | Default | Meaning |\n| --- | --- | --- |\n");
        for setting in &section.settings {
            let secret = if setting.secret { " Secret: never logged." } else { "" };
            let _ = writeln!(
                out,
                "| `{}` | {} | {}{}{} |",
                setting.var,
                default_cell(setting),
                setting.description.replace('|', "\\|"),
                aliases_note(setting),
                secret
            );
        }
        out.push('\n');
    }
    out
}

/// Folds `text` into `# ` comment lines of at most `width` characters, indented by `indent`.
fn comment(out: &mut String, indent: &str, text: &str, width: usize) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + 2 + line.len() + 1 + word.len() > width {
            let _ = writeln!(out, "{indent}# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}# {line}");
    }
}

/// A YAML scalar (or flow list) for a value, quoted when YAML would read it as something else.
fn yaml_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(yaml_value).collect::<Vec<_>>().join(", ")),
        Value::String(text) => {
            let plain = !text.is_empty()
                && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:+@".contains(c))
                && !matches!(
                    text.to_ascii_lowercase().as_str(),
                    "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
                )
                && text.parse::<f64>().is_err();
            if plain { text.clone() } else { serde_json::to_string(text).unwrap_or_default() }
        }
        Value::Object(_) => value.to_string(),
    }
}

/// `config.yml.sample`: every setting, commented, with its default (or example) as the value.
pub fn config_sample(program: &str, sections: &[SectionDoc]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {program} settings: copy to config.yml (read from the working directory) or pass `--config FILE`.\n\
         # Generated from the code's setting descriptions (see README, Configuration): do not edit by hand.\n\
         #\n\
         # Each key is also an environment variable, SECTION_KEY in upper case (connector.duration_period is\n\
         # CONNECTOR_DURATION_PERIOD), and a variable that is set and not empty wins over the file. An empty value\n\
         # (`key:`) leaves a setting unset. Booleans: true/false (also yes/no, on/off, 1/0)."
    );
    for section in sections {
        let _ = writeln!(out, "\n# {}\n{}:", section.title, section.name);
        for setting in &section.settings {
            let mut text = setting.description.to_owned();
            match (&setting.default, setting.required) {
                (_, true) => text.push_str(" Required."),
                (Some(value), _) if !value.is_null() => {
                    let shown = json_text(value);
                    text.push_str(&format!(" Default: {}.", if shown.is_empty() { "empty" } else { &shown }));
                }
                _ => text.push_str(" Default: unset."),
            }
            text.push_str(&aliases_note(setting));
            comment(&mut out, "  ", &text, 118);
            let value = match (setting.example, &setting.default) {
                (Some(example), _) => yaml_value(&json!(example)),
                (None, Some(default)) => yaml_value(default),
                (None, None) => String::new(),
            };
            let key = setting.key(section.name);
            if value.is_empty() {
                let _ = writeln!(out, "  {key}:");
            } else {
                let _ = writeln!(out, "  {key}: {value}");
            }
        }
    }
    out
}

/// The connector catalog's `connector_config_schema.json`: JSON Schema draft 2020-12 of the environment variables,
/// as OpenCTI's connectors repository generates it (every property typed, no `anyOf`, secrets `format: password`
/// and `writeOnly`, `CONNECTOR_ID` left out since the connector manager sets it, `additionalProperties: true`).
pub fn catalog_schema(schema_id: &str, sections: &[SectionDoc]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for setting in sections.iter().flat_map(|s| &s.settings).filter(|s| s.in_catalog) {
        let mut property = setting.schema.clone();
        property.insert("description".into(), json!(setting.description));
        if let Some(default) = &setting.default {
            property.insert("default".into(), default.clone());
        } else if setting.secret && !setting.required {
            // The catalog's optional secrets carry `"default": null` (nullable types are flattened there).
            property.insert("default".into(), Value::Null);
        }
        if setting.required {
            required.push(json!(setting.var));
        }
        properties.insert(setting.var.to_owned(), Value::Object(sorted(property)));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    })
}

/// Keys in alphabetical order, as the catalog's generator writes them.
fn sorted(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

/// The catalog's `CONNECTOR_CONFIG_DOC.md`, in the layout its generator (`jsonschema_markdown`) gives.
pub fn catalog_doc(schema: &Value) -> String {
    let mut out = String::from(
        "# Connector Configurations\n\nBelow is an exhaustive enumeration of all configurable parameters available, \
         each accompanied by detailed explanations of their purposes, default behaviors, and usage guidelines to \
         help you understand and utilize them effectively.\n\n### Type: `object`\n\n\
         | Property | Type | Required | Possible values | Default | Description |\n\
         | -------- | ---- | -------- | --------------- | ------- | ----------- |\n",
    );
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(properties) = schema["properties"].as_object() else { return out };
    for (name, property) in properties {
        let kind = if property.get("const").is_some() {
            "const".to_owned()
        } else {
            property["type"].as_str().unwrap_or("string").to_owned()
        };
        let possible = if let Some(values) = property.get("enum").and_then(Value::as_array) {
            values.iter().map(|v| format!("`{}`", json_text(v))).collect::<Vec<_>>().join(" ")
        } else if let Some(constant) = property.get("const") {
            format!("`{}`", json_text(constant))
        } else if let Some(format) = property.get("format").and_then(Value::as_str) {
            format!(
                "Format: [`{format}`](https://json-schema.org/understanding-json-schema/reference/string#built-in-formats)"
            )
        } else if kind == "array" {
            "string".to_owned()
        } else {
            kind.clone()
        };
        let default = match property.get("default") {
            Some(value) => format!("`{value}`"),
            None => String::new(),
        };
        let description = property.get("description").and_then(Value::as_str).unwrap_or("").replace('|', "\\|");
        let mark = if required.contains(&name.as_str()) { "✅" } else { "" };
        let _ = writeln!(out, "| {name} | `{kind}` | {mark} | {possible} | {default} | {description} |");
    }
    out
}

/// Replaces what lies between `begin` and `end` in `text` (markers kept); `None` when a marker is missing.
pub fn replace_between(text: &str, begin: &str, end: &str, content: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    Some(format!("{}\n{}{}", &text[..start], content, &text[stop..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ConnectorDefaults, platform_docs};
    use std::time::Duration;

    fn defaults() -> ConnectorDefaults {
        ConnectorDefaults { name: "Example", scope: &["example"], duration_period: Duration::from_secs(3600) }
    }

    #[test]
    fn schema_follows_the_catalog_conventions() {
        let schema = catalog_schema("https://example.org/example.schema.json", &platform_docs(&defaults()));
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(schema["required"], json!(["OPENCTI_URL", "OPENCTI_TOKEN"]));
        let properties = schema["properties"].as_object().unwrap();
        assert!(!properties.contains_key("CONNECTOR_ID"));
        assert_eq!(properties["OPENCTI_TOKEN"]["format"], "password");
        assert_eq!(properties["OPENCTI_TOKEN"]["writeOnly"], true);
        assert_eq!(properties["MQ_PASS"]["default"], Value::Null);
        assert_eq!(properties["CONNECTOR_TYPE"]["const"], "EXTERNAL_IMPORT");
        assert_eq!(properties["CONNECTOR_DURATION_PERIOD"]["default"], "PT1H");
        assert_eq!(properties["CONNECTOR_DURATION_PERIOD"]["format"], "duration");
        assert_eq!(properties["CONNECTOR_SCOPE"]["default"], json!(["example"]));
        for (name, property) in properties {
            assert!(property.get("type").is_some(), "{name} has a type");
            assert!(property.get("anyOf").is_none() && property.get("oneOf").is_none(), "{name}");
        }
    }

    #[test]
    fn sample_and_tables_list_every_setting() {
        let docs = platform_docs(&defaults());
        let sample = config_sample("example", &docs);
        let tables = readme_tables(&docs);
        for setting in docs.iter().flat_map(|s| &s.settings) {
            assert!(tables.contains(&format!("`{}`", setting.var)), "{}", setting.var);
        }
        assert!(sample.contains("  duration_period: PT1H\n"), "{sample}");
        assert!(sample.contains("  url: http://opencti:8080\n"), "{sample}");
        assert!(sample.contains("  use_ssl_ca:\n"), "{sample}");
        let parsed: serde_norway::Value = serde_norway::from_str(&sample).unwrap();
        assert_eq!(parsed["connector"]["scope"][0], serde_norway::Value::String("example".into()));
    }

    #[test]
    fn markers() {
        let text = "a\n<!-- b -->\nold\n<!-- e -->\nz";
        assert_eq!(
            replace_between(text, "<!-- b -->", "<!-- e -->", "new\n").unwrap(),
            "a\n<!-- b -->\nnew\n<!-- e -->\nz"
        );
        assert_eq!(replace_between(text, "<!-- x -->", "<!-- e -->", ""), None);
    }
}
