//! The documents generated from the settings' descriptions must match them: the README's configuration tables,
//! `config.yml.sample`, and the connector catalog's `__metadata__/connector_config_schema.json` and
//! `CONNECTOR_CONFIG_DOC.md`. And every setting the code reads must be described.
//!
//! After changing a setting: `REGENERATE=1 cargo test --test generated_files` rewrites the files.

use std::collections::BTreeSet;
use std::path::Path;

use maltrail_connector::settings::{self, Config, SECTIONS};
use opencti_connector::settings::{Vars, render};

const README_BEGIN: &str = "<!-- settings:begin (generated: REGENERATE=1 cargo test --test generated_files) -->";
const README_END: &str = "<!-- settings:end -->";
const SCHEMA_ID: &str = "https://www.filigran.io/connectors/maltrail_config.schema.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: its path and the content the settings' descriptions give.
fn generated() -> Vec<(&'static str, String)> {
    let docs = settings::docs();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let tables = render::readme_tables(&docs);
    let readme = render::replace_between(&readme, README_BEGIN, README_END, &tables)
        .unwrap_or_else(|| panic!("README.md lacks the markers {README_BEGIN} … {README_END}"));
    let schema = render::catalog_schema(SCHEMA_ID, &docs);
    let schema_text = serde_json::to_string_pretty(&schema).expect("schema JSON") + "\n";
    vec![
        ("README.md", readme),
        ("config.yml.sample", render::config_sample("maltrail-connector", &docs)),
        ("__metadata__/connector_config_schema.json", schema_text),
        ("__metadata__/CONNECTOR_CONFIG_DOC.md", render::catalog_doc(&schema)),
    ]
}

#[test]
fn generated_files_match_the_settings() {
    let regenerate = std::env::var_os("REGENERATE").is_some();
    let mut stale = Vec::new();
    for (path, content) in generated() {
        let path = root().join(path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == content {
            continue;
        }
        if regenerate {
            std::fs::create_dir_all(path.parent().expect("a folder")).expect("create the folder");
            std::fs::write(&path, content).expect("rewrite the generated file");
        } else {
            let first = current.lines().zip(content.lines()).position(|(a, b)| a != b);
            let line = first.unwrap_or_else(|| current.lines().count().min(content.lines().count())) + 1;
            stale.push(format!("{} (first difference at line {line})", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "generated files differ from the settings the code reads:\n  {}\nrun `REGENERATE=1 cargo test --test generated_files` and commit the result",
        stale.join("\n  ")
    );
}

#[test]
fn every_setting_the_code_reads_is_described() {
    let docs = settings::docs();
    let described: BTreeSet<&str> = docs.iter().flat_map(|s| &s.settings).map(|s| s.var).collect();
    let aliases: BTreeSet<&str> =
        docs.iter().flat_map(|s| &s.settings).flat_map(|s| s.aliases.iter().copied()).collect();
    // Every setting that needs a value gets its example; the rest keep their defaults.
    let env: Vec<(String, String)> = docs
        .iter()
        .flat_map(|s| &s.settings)
        .filter(|s| s.required)
        .map(|s| (s.var.to_owned(), s.sample_text().unwrap_or_else(|| panic!("{} needs an example", s.var))))
        .collect();
    let vars = Vars::merge(env, None, &SECTIONS).expect("variables");
    Config::read(&vars).expect("the described examples are valid settings");
    let read = vars.looked_up();
    let undescribed: Vec<_> = read.iter().filter(|v| !described.contains(*v) && !aliases.contains(*v)).collect();
    assert!(undescribed.is_empty(), "settings the code reads but no description lists: {undescribed:?}");
    let unread: Vec<_> = described.iter().filter(|v| !read.contains(*v)).collect();
    assert!(unread.is_empty(), "settings described but never read: {unread:?}");
}

#[test]
fn the_catalog_files_follow_the_catalogs_conventions() {
    let root = root().join("__metadata__");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("connector_config_schema.json")).expect("schema"))
            .expect("the schema is JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], true);
    assert_eq!(schema["required"], serde_json::json!(["OPENCTI_URL", "OPENCTI_TOKEN"]));
    let properties = schema["properties"].as_object().expect("properties");
    let docs = settings::docs();
    for setting in docs.iter().flat_map(|s| &s.settings) {
        match setting.var {
            // The connector manager sets it: the catalog's schemas leave it out.
            "CONNECTOR_ID" => assert!(!properties.contains_key("CONNECTOR_ID")),
            var => assert!(properties.contains_key(var), "{var} missing from the catalog schema"),
        }
    }
    for (name, property) in properties {
        let kind = property["type"].as_str().unwrap_or_else(|| panic!("{name} has no type"));
        assert_ne!(kind, "object", "{name}: the catalog's UI takes no objects");
        assert!(property.get("anyOf").is_none() && property.get("oneOf").is_none(), "{name}");
        assert!(property["description"].as_str().is_some_and(|d| !d.is_empty()), "{name} has a description");
        if kind == "array" {
            assert!(property["default"].is_array(), "{name}: arrays need a default");
        }
    }
    for secret in ["OPENCTI_TOKEN", "MQ_PASS", "MQ_USE_SSL_PASSPHRASE", "MALTRAIL_API_KEY"] {
        assert_eq!(properties[secret]["format"], "password", "{secret}");
        assert_eq!(properties[secret]["writeOnly"], true, "{secret}");
    }
    assert_eq!(properties["OPENCTI_URL"]["format"], "uri");
    assert_eq!(properties["CONNECTOR_TYPE"]["const"], "EXTERNAL_IMPORT");
    assert_eq!(properties["CONNECTOR_DURATION_PERIOD"]["format"], "duration");
    assert!(properties["CONNECTOR_SCOPE"]["default"].is_array());
}

#[test]
fn the_sample_config_file_loads_as_the_defaults() {
    let path = root().join("config.yml.sample");
    let text = std::fs::read_to_string(&path).expect("config.yml.sample");
    let vars =
        Vars::merge(Vec::<(String, String)>::new(), Some((&text, &path)), &SECTIONS).expect("the sample is YAML");
    let from_file = Config::read(&vars).expect("the sample is a valid configuration");
    let env = [
        ("OPENCTI_URL", "http://opencti:8080"),
        ("OPENCTI_TOKEN", "ChangeMe"),
        ("CONNECTOR_ID", "00000000-0000-4000-8000-000000000000"),
    ];
    let defaults = Config::from_env(env.map(|(k, v)| (k.to_owned(), v.to_owned()))).expect("defaults");
    assert_eq!(from_file, defaults, "the sample shows the defaults");
}
