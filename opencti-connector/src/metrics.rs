//! Prometheus metrics (`CONNECTOR_EXPOSE_METRICS`): the series pycti's helper exposes, under pycti's names (so a
//! dashboard made for pycti connectors works), plus the runtime's own under the connector's prefix; served with
//! `/health` on `http://0.0.0.0:<CONNECTOR_METRICS_PORT>`.
//!
//! pycti's series (`bundles_sent_total`, `records_sent_total`, `runs_total`, `ping_api_total`,
//! `ping_api_errors_total`, `errors_total`, `client_errors_total`, `state{state}`), prefixed by
//! `CONNECTOR_METRICS_NAMESPACE` and `CONNECTOR_METRICS_SUBSYSTEM` as in pycti. The counters are process-wide
//! and updated where things happen; a connector registers series of its own with [`Metrics::counter`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a scheduled run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// It sent what it had to and advanced the state.
    Success,
    /// There was nothing to send.
    UpToDate,
    /// Skipped: the push queue was over the threshold.
    Skipped,
    Failed,
    Interrupted,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 5] = [Self::Success, Self::UpToDate, Self::Skipped, Self::Failed, Self::Interrupted];

    pub const fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UpToDate => "up_to_date",
            Self::Skipped => "skipped_queue_full",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// pycti's connector states (`state{state=…}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectorState {
    Idle,
    Running,
    Stopped,
}

impl ConnectorState {
    const ALL: [ConnectorState; 3] = [Self::Idle, Self::Running, Self::Stopped];

    const fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    // pycti's series.
    bundles_sent: Counter,
    records_sent: Counter,
    runs: Counter,
    ping_api: Counter,
    ping_api_errors: Counter,
    errors: Counter,
    client_errors: Counter,
    state: Family<StateLabel, Gauge>,
    // The runtime's own, under the connector's prefix.
    runs_by_outcome: Family<OutcomeLabel, Counter>,
    retries: Counter,
    last_success: Gauge,
    last_run_duration: Gauge<f64, AtomicU64>,
    /// Whether the connector is alive, for `/health`: registered, and the platform answered lately.
    health: Health,
}

/// What `/health` answers.
#[derive(Debug, Default)]
struct Health {
    started: AtomicBool,
    /// Unix seconds of the last successful call to the platform (or of the start, for a worker that needs none).
    last_contact: AtomicI64,
}

/// How long the platform may stay silent before `/health` says the connector is unhealthy: long enough for a
/// platform restart (the connector keeps retrying), short enough for an orchestrator to notice a stuck process.
pub(crate) const HEALTH_SILENCE: Duration = Duration::from_secs(15 * 60);

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics, created with the default prefixes if [`init`] was not called first.
pub fn global() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new("connector", "", ""))
}

/// Creates the process's metrics: the runtime's series under `prefix` (the connector's slug), pycti's under
/// `namespace` and `subsystem`. Only the first call counts (tests start several connectors in one process).
pub fn init(prefix: &str, namespace: &str, subsystem: &str) -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(prefix, namespace, subsystem))
}

impl Metrics {
    fn new(prefix: &str, namespace: &str, subsystem: &str) -> Self {
        let mut root = Registry::default();
        let metrics = Self {
            registry: Mutex::new(Registry::default()),
            bundles_sent: Counter::default(),
            records_sent: Counter::default(),
            runs: Counter::default(),
            ping_api: Counter::default(),
            ping_api_errors: Counter::default(),
            errors: Counter::default(),
            client_errors: Counter::default(),
            state: Family::default(),
            runs_by_outcome: Family::default(),
            retries: Counter::default(),
            last_success: Gauge::default(),
            last_run_duration: Gauge::default(),
            health: Health::default(),
        };
        {
            let pycti_prefix: Vec<&str> = [namespace, subsystem].into_iter().filter(|p| !p.is_empty()).collect();
            let pycti =
                if pycti_prefix.is_empty() { &mut root } else { root.sub_registry_with_prefix(pycti_prefix.join("_")) };
            pycti.register("bundles_sent", "Number of bundles sent", metrics.bundles_sent.clone());
            pycti.register("records_sent", "Number of records (objects per bundle) sent", metrics.records_sent.clone());
            pycti.register("runs", "Number of runs", metrics.runs.clone());
            pycti.register("ping_api", "Number of pings to the API", metrics.ping_api.clone());
            pycti.register("ping_api_errors", "Number of errors when pinging the API", metrics.ping_api_errors.clone());
            pycti.register("errors", "Number of errors", metrics.errors.clone());
            pycti.register("client_errors", "Number of client errors", metrics.client_errors.clone());
            pycti.register("state", "State of connector", metrics.state.clone());
        }
        {
            let own = root.sub_registry_with_prefix(prefix);
            own.register("runs", "Runs by outcome.", metrics.runs_by_outcome.clone());
            own.register("retries", "Calls to the platform, the source or RabbitMQ retried.", metrics.retries.clone());
            own.register(
                "last_success_timestamp_seconds",
                "End of the last successful run.",
                metrics.last_success.clone(),
            );
            own.register("last_run_duration_seconds", "Duration of the last run.", metrics.last_run_duration.clone());
        }
        for outcome in RunOutcome::ALL {
            let _ = metrics.runs_by_outcome.get_or_create(&OutcomeLabel { outcome: outcome.label() });
        }
        metrics.set_state(ConnectorState::Idle);
        *metrics.registry.lock().unwrap_or_else(|p| p.into_inner()) = root;
        metrics
    }

    /// A counter of the connector's own, `<prefix>_<name>_total`. Registering a name twice returns a counter that
    /// is not exposed (only the first registration is).
    pub fn counter(&self, prefix: &str, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.sub_registry_with_prefix(prefix).register(name, help, counter.clone());
        counter
    }

    /// A message was published and confirmed, holding `objects` objects.
    pub fn published(&self, objects: u64) {
        self.bundles_sent.inc();
        self.records_sent.inc_by(objects);
    }

    pub fn ping(&self, ok: bool) {
        self.ping_api.inc();
        if ok {
            self.platform_answered();
        } else {
            self.ping_api_errors.inc();
        }
    }

    /// Something failed (a run, a call after its retries).
    pub fn error(&self) {
        self.errors.inc();
    }

    /// The platform refused a call for a reason a retry cannot change (bad token, bad request).
    pub(crate) fn client_error(&self) {
        self.client_errors.inc();
    }

    /// A call to the platform, the source or RabbitMQ is being retried.
    pub fn retry(&self) {
        self.retries.inc();
    }

    pub(crate) fn set_state(&self, state: ConnectorState) {
        for each in ConnectorState::ALL {
            self.state.get_or_create(&StateLabel { state: each.label() }).set(i64::from(each == state));
        }
    }

    pub(crate) fn run_started(&self) {
        self.runs.inc();
        self.set_state(ConnectorState::Running);
    }

    pub(crate) fn run_ended(&self, outcome: RunOutcome, duration: Duration) {
        self.runs_by_outcome.get_or_create(&OutcomeLabel { outcome: outcome.label() }).inc();
        self.last_run_duration.set(duration.as_secs_f64());
        match outcome {
            RunOutcome::Success => {
                self.last_success.set(proto_stix::Timestamp::now().unix_seconds());
            }
            RunOutcome::Failed => self.error(),
            _ => {}
        }
        self.set_state(ConnectorState::Idle);
    }

    /// The connector is up (registered, or a worker with its broker connection): `/health` may say so.
    pub fn started(&self) {
        self.health.started.store(true, Ordering::Relaxed);
        self.platform_answered();
    }

    /// The process made progress: it reached the platform, or a worker is connected to its job queue.
    pub fn alive(&self) {
        self.platform_answered();
    }

    /// The platform answered a call: the connector can reach it.
    pub(crate) fn platform_answered(&self) {
        self.health.last_contact.store(proto_stix::Timestamp::now().unix_seconds(), Ordering::Relaxed);
    }

    /// `Ok` when healthy, else why not.
    pub fn health(&self) -> Result<(), String> {
        if !self.health.started.load(Ordering::Relaxed) {
            return Err("starting: not registered with the platform yet".into());
        }
        let silent = proto_stix::Timestamp::now().unix_seconds() - self.health.last_contact.load(Ordering::Relaxed);
        if silent > HEALTH_SILENCE.as_secs() as i64 {
            return Err(format!("no sign of life for {silent} s (the platform unanswered, or the broker unreachable)"));
        }
        Ok(())
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Serves `/metrics` and `/health` on `listener` until shutdown.
pub async fn serve(listener: tokio::net::TcpListener, shutdown: crate::Shutdown) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let metrics = || async { ([(header::CONTENT_TYPE, OPENMETRICS)], global().render()) };
    let health = || async {
        match global().health() {
            Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
            Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        }
    };
    let app = axum::Router::new().route("/health", get(health)).route("/metrics", get(metrics));
    let stop = async move { shutdown.triggered().await };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(%error, "the metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pycti_and_own_series() {
        let metrics = Metrics::new("example", "", "");
        metrics.run_started();
        metrics.run_ended(RunOutcome::Success, Duration::from_millis(1500));
        metrics.published(3);
        metrics.retry();
        let extra = metrics.counter("example", "trails_sent", "Indicators sent active.");
        extra.inc_by(10);
        let text = metrics.render();
        for line in [
            "runs_total 1",
            "bundles_sent_total 1",
            "records_sent_total 3",
            "ping_api_total 0",
            "state{state=\"idle\"} 1",
            "state{state=\"running\"} 0",
            "example_runs_total{outcome=\"success\"} 1",
            "example_runs_total{outcome=\"failed\"} 0",
            "example_retries_total 1",
            "example_last_run_duration_seconds 1.5",
            "example_trails_sent_total 10",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("example_last_success_timestamp_seconds 0\n"));
    }

    #[test]
    fn pycti_prefixes() {
        let metrics = Metrics::new("example", "opencti", "connector");
        assert!(metrics.render().contains("opencti_connector_runs_total 0"));
    }

    #[test]
    fn health_needs_a_start() {
        let metrics = Metrics::new("example", "", "");
        assert!(metrics.health().unwrap_err().contains("not registered"));
        metrics.started();
        assert_eq!(metrics.health(), Ok(()));
    }
}
