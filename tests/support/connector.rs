//! The connector's configuration for end-to-end tests: the fake platform's address and token, a connector id, and
//! whatever else a test sets, through the same loader the binary uses.

use maltrail_connector::settings::Config;

use super::fake_opencti::FakeOpenCti;

/// The configuration the connector would read from these variables, pointed at `opencti`. A variable in `extra`
/// replaces one set before it (here or earlier in `extra`).
pub fn config(opencti: &FakeOpenCti, connector_id: &str, extra: &[(&str, String)]) -> Config {
    let mut env = vec![
        ("OPENCTI_URL".to_owned(), opencti.url()),
        ("OPENCTI_TOKEN".to_owned(), opencti.token().to_owned()),
        ("CONNECTOR_ID".to_owned(), connector_id.to_owned()),
    ];
    for (name, value) in extra {
        env.retain(|(set, _)| set != name);
        env.push(((*name).to_owned(), value.clone()));
    }
    Config::from_env(env).expect("a valid configuration")
}
