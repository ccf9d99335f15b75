//! Log output: structured `tracing` events, human-readable or one JSON object per line (`OPENCTI_JSON_LOGGING`),
//! at the level `CONNECTOR_LOG_LEVEL` names. `RUST_LOG`, when set, overrides the filter for debugging.
//!
//! An `ERROR` line means something was lost or a run failed, so that an operator's alert on `ERROR` fires only
//! then. lapin logs a recovered event (the broker closing a connection the publisher then reopens, with every
//! unconfirmed message published again) as an error of its own; its events are left out, since the publisher
//! reports each of them at the level it deserves.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` (`debug`, `info`, `warn`, `error`) applies to the runtime and to the
/// connector's crates named in `crates`; other dependencies log warnings and errors only (their debug output
/// drowns ours), lapin nothing. In JSON, each line carries the fields of the spans it happened in (the run's
/// work id and revision, for instance).
pub fn init(level: &str, json: bool, crates: &[&str]) {
    let mut directives = format!("warn,lapin=off,opencti_connector={level},proto_stix={level}");
    for name in crates {
        directives.push_str(&format!(",{}={level}", name.replace('-', "_")));
    }
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    // Colours on a terminal only: a log file or a container's log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(true).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
