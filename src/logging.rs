//! Log output: structured `tracing` events, human-readable or one JSON object per line (`OPENCTI_JSON_LOGGING`),
//! at the level `CONNECTOR_LOG_LEVEL` names. `RUST_LOG`, when set, overrides the level filter for debugging.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is one of `debug`, `info`, `warn`, `error`; it applies to this crate,
/// while dependencies log warnings and errors only (their debug output drowns ours).
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,maltrail_connector={level},proto_stix={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
