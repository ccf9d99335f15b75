//! The connector's configuration for end-to-end tests: the fake platform's address and token, a connector id, and
//! whatever else a test sets, through the same loader the binary uses.

use maltrail_connector::config::{self, Config};

use super::fake_opencti::FakeOpenCti;

/// The configuration the connector would read from these variables, pointed at `opencti`.
pub fn config(opencti: &FakeOpenCti, connector_id: &str, extra: &[(&str, String)]) -> Config {
    let mut env = vec![
        ("OPENCTI_URL".to_owned(), opencti.url()),
        ("OPENCTI_TOKEN".to_owned(), opencti.token().to_owned()),
        ("CONNECTOR_ID".to_owned(), connector_id.to_owned()),
    ];
    env.extend(extra.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
    config::load(env, None).and_then(|settings| settings.connector()).expect("a valid configuration")
}
