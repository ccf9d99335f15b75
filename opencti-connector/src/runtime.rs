//! The connector's life on the platform, what pycti's `OpenCTIConnectorHelper` does for a Python connector:
//! registration (retried until the platform answers), the first ping, a ping every 40 s carrying the state (and
//! adopting a state reset made in the UI), the metrics endpoint, the schedule of runs (the period, run-and-terminate,
//! the queue threshold, backing off after failures) and what a run needs: its state, a work, a sender.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto_stix::Timestamp;
use tracing::Instrument;

use crate::metrics::{self, RunOutcome};
use crate::opencti::{ConnectorInfo, GraphQlClient, OpenCti, OpenCtiError, RegisterInput, Registration, RetryPolicy};
use crate::schedule::{RetryTimings, Schedule};
use crate::send::{
    AmqpEndpoint, ConnectorIdentity, DirectoryOutput, Envelope, Expectations, PublishOptions, Publisher, QueueSink,
    SendError, Sender, SplitSettings,
};
use crate::settings::{Settings, SplitMode};
use crate::shutdown::Shutdown;
use crate::state::{StateDocument, StateStore, StateView, parse_state};
use crate::work::Work;

/// How often the platform is pinged, as pycti does.
pub const PING_INTERVAL: Duration = Duration::from_secs(40);
/// How long a shutdown waits for outstanding confirms, and for a run stuck on the broker, before giving up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// An error from a connector's own code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who the connector is, besides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct About {
    /// The catalog's slug (`registerConnector`'s `slug`), also the prefix of the runtime's metrics.
    pub slug: &'static str,
    /// The connector's version (`registerConnector`'s `version`).
    pub version: &'static str,
}

/// The runtime's clocks. Only tests change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Between two pings (pycti: 40 s).
    pub ping_interval: Duration,
    /// Waits after failed and skipped runs.
    pub retries: RetryTimings,
}

impl Default for Timings {
    fn default() -> Self {
        Self { ping_interval: PING_INTERVAL, retries: RetryTimings::default() }
    }
}

/// Why the runtime could not start, or stopped in error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen for metrics on port {port}: {source}")]
    Metrics { port: u16, source: std::io::Error },
    #[error(transparent)]
    Unauthorized(OpenCtiError),
    #[error("registration failed: {0}")]
    Registration(OpenCtiError),
    #[error("cannot use {} for CONNECTOR_SEND_TO_DIRECTORY_PATH: {source}", path.display())]
    Directory { path: std::path::PathBuf, source: std::io::Error },
    #[error("OpenCTI client: {0}")]
    Client(OpenCtiError),
    #[error("the run failed (see the log above); the state was not advanced")]
    RunFailed,
}

/// A connector registered with the platform. Cheap to clone: the clones share the state and the shutdown.
#[derive(Clone)]
pub struct Runtime {
    settings: Settings,
    about: About,
    opencti: OpenCti,
    registration: Registration,
    state: Arc<StateStore>,
    directory: Option<Arc<DirectoryOutput>>,
    shutdown: Shutdown,
    timings: Timings,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("connector_id", &self.settings.connector.id).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the metrics endpoint (when exposed), registers (retrying until the platform answers), pings once
    /// and starts the ping task. `None` when shutdown came before the platform answered.
    pub async fn start(settings: Settings, about: About, shutdown: Shutdown) -> Result<Option<Self>, RuntimeError> {
        Self::start_with(settings, about, shutdown, Timings::default()).await
    }

    /// [`Runtime::start`] with other timings.
    pub async fn start_with(
        settings: Settings,
        about: About,
        shutdown: Shutdown,
        timings: Timings,
    ) -> Result<Option<Self>, RuntimeError> {
        let connector = &settings.connector;
        metrics::init(about.slug, &connector.metrics_namespace, &connector.metrics_subsystem);
        if connector.expose_metrics {
            let port = connector.metrics_port;
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .map_err(|source| RuntimeError::Metrics { port, source })?;
            tracing::info!(port, "metrics served on /metrics, health on /health");
            shutdown.spawn(metrics::serve(listener, shutdown.clone()));
        }
        let user_agent = format!("{}/{}", about.slug, about.version);
        let client =
            GraphQlClient::new(&settings.opencti, &user_agent, RetryPolicy::default()).map_err(RuntimeError::Client)?;
        let opencti = OpenCti::new(client);
        let Some(registration) = register(&opencti, &settings, &about, &shutdown).await? else {
            tracing::info!("shutdown before the platform answered");
            return Ok(None);
        };
        metrics::global().started();
        let state = parse_state(registration.connector_state.as_deref());
        tracing::info!(
            connector_id = %connector.id,
            state = %crate::state::state_json(&state),
            push_queue = %registration.config.push,
            "registered with OpenCTI"
        );
        let directory = match (&connector.send_to_directory, &connector.directory_path) {
            (true, Some(path)) => {
                let identity = ConnectorIdentity {
                    id: connector.id.to_string(),
                    name: connector.name.clone(),
                    connector_type: "EXTERNAL_IMPORT".into(),
                    scope: connector.scope.join(","),
                    auto: false,
                    validate_before_import: false,
                };
                let output = DirectoryOutput::new(
                    path,
                    connector.directory_retention_days,
                    &identity,
                    registration.connector_user_id.as_deref(),
                )
                .map_err(|source| RuntimeError::Directory { path: path.clone(), source })?;
                Some(Arc::new(output))
            }
            _ => None,
        };
        let info = ConnectorInfo {
            run_and_terminate: connector.runs_once(),
            queue_threshold: connector.queue_threshold_mb,
            ..ConnectorInfo::default()
        };
        let runtime = Self {
            state: Arc::new(StateStore::new(state, info)),
            settings,
            about,
            opencti,
            registration,
            directory,
            shutdown,
            timings,
        };
        Ok(Some(runtime))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn about(&self) -> About {
        self.about
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn connector_id(&self) -> String {
        self.settings.connector.id.to_string()
    }

    /// The connector's state and its generation.
    pub fn state(&self) -> StateView {
        self.state.view()
    }

    /// Replaces the state and pushes it to the platform at once, unless the platform's state was reset since
    /// `generation` (the run that computed it is then stale). Returns whether the state changed.
    pub async fn commit_state(&self, state: StateDocument, generation: u64) -> bool {
        if !self.state.replace(state, generation) {
            tracing::warn!("the connector state was reset on the platform during the run: not advancing it");
            return false;
        }
        let sent = self.state.snapshot();
        match ping_and_adopt(&self.opencti_now(), &self.connector_id(), &self.state, &sent).await {
            Ok(true) => return false,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot push the new state now: the next ping sends it"),
        }
        tracing::info!(state = sent.0, "state saved");
        true
    }

    /// Opens a multi-part work (one run, many messages): it completes once marked processed and every expectation
    /// is reported.
    pub async fn open_work(&self, name: &str) -> Result<Work, OpenCtiError> {
        let work = Work::open(&self.opencti, &self.connector_id(), name, true).await?;
        tracing::info!(work_id = work.id(), name, "work opened");
        Ok(work)
    }
    /// The work `id`, opened earlier (by the leader, or by a leader that died).
    pub fn work_of(&self, id: &str) -> Work {
        Work::resume(&self.opencti, id.to_owned())
    }

    /// Reads the platform's copy of the state again (registering again, as pycti does at start), for a process that
    /// just took the leadership: another replica may have moved the state while it waited.
    pub(crate) async fn refresh_state(&self) {
        let connector = &self.settings.connector;
        let input = RegisterInput::external_import(
            &connector.id.to_string(),
            &connector.name,
            &connector.scope,
            self.about.version,
            self.about.slug,
        );
        match self.opencti_now().register(&input).await {
            Ok(registration) => {
                self.state.adopt(parse_state(registration.connector_state.as_deref()));
                metrics::global().alive();
            }
            Err(error) => tracing::warn!(%error, "cannot read the platform's state: going on with the one held"),
        }
    }

    /// The same work with brief retries once shutdown is asked for, so that ending a run cannot hold the exit.
    pub fn work_for_ending(&self, work: &Work) -> Work {
        if self.shutdown.is_triggered() { work.hurried() } else { work.clone() }
    }

    /// How bundles are split, per the settings.
    pub fn split_settings(&self) -> SplitSettings {
        let connector = &self.settings.connector;
        match connector.split {
            SplitMode::Client => SplitSettings::CLIENT,
            SplitMode::Platform => SplitSettings {
                mode: SplitMode::Platform,
                batch_size: connector.batch_size,
                batch_bytes: connector.batch_bytes,
            },
        }
    }

    /// A sender for `work`'s messages: to the push queue (connected now, retrying while the broker is away) and/or
    /// the directory, per the settings. Shutdown interrupts the connection attempt.
    pub async fn sender(&self, work: &Work, expectations: Expectations) -> Result<Option<Sender>, SendError> {
        self.sender_with(work, expectations, self.split_settings()).await
    }

    /// [`Runtime::sender`] splitting bundles as `split` says.
    pub async fn sender_with(
        &self,
        work: &Work,
        expectations: Expectations,
        split: SplitSettings,
    ) -> Result<Option<Sender>, SendError> {
        let queue = if self.settings.connector.send_to_queue {
            let Some(publisher) = self.publisher().await? else { return Ok(None) };
            let envelope = Envelope {
                applicant_id: self.registration.connector_user_id.clone().unwrap_or_default(),
                work_id: Some(work.id().to_owned()),
            };
            Some(QueueSink { publisher, envelope, expectations })
        } else {
            None
        };
        if let Some(directory) = &self.directory {
            match directory.apply_retention() {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "old bundle files removed"),
                Err(error) => tracing::warn!(%error, "cannot apply the bundle files' retention"),
            }
        }
        Ok(Some(Sender::new(queue, self.directory.clone(), split)))
    }

    /// The broker endpoint: the registration's, with the `MQ_*` overrides.
    pub(crate) fn amqp_endpoint(&self) -> AmqpEndpoint {
        let connection = &self.registration.config.connection;
        AmqpEndpoint::new(
            &connection.host,
            connection.port,
            &connection.vhost,
            connection.use_ssl,
            &connection.user,
            connection.pass.expose(),
        )
        .with_overrides(&self.settings.mq)
    }

    /// A publisher to the push queue; `None` on shutdown.
    async fn publisher(&self) -> Result<Option<Publisher>, SendError> {
        let endpoint = self.amqp_endpoint();
        if endpoint.use_ssl && !endpoint.ssl_verify {
            tracing::warn!(
                endpoint = %endpoint.describe(),
                "the broker's TLS certificate is not verified (MQ_USE_SSL_REJECT_UNAUTHORIZED=false): give its CA \
                 with MQ_USE_SSL_CA instead"
            );
        }
        let options = PublishOptions {
            exchange: self.registration.config.push_exchange.clone(),
            routing_key: self.registration.config.push_routing.clone(),
            window: self.settings.connector.publish_window,
            window_bytes: self.settings.connector.publish_window_bytes,
            max_outage: Duration::from_secs(300),
            connection_name: format!("{} {}", self.about.slug, self.connector_id()),
        };
        tokio::select! {
            publisher = Publisher::connect(endpoint, options) => Ok(Some(publisher?)),
            () = self.shutdown.triggered() => Ok(None),
        }
    }

    /// Runs `job` on schedule (`CONNECTOR_DURATION_PERIOD`) until shutdown or, with run-and-terminate, after one
    /// run; then pings a last time. A run is skipped while the push queue is over the threshold; a failed run is
    /// tried again after growing waits. A failed run-and-terminate run is an error (exit status 1).
    pub async fn run_scheduled<J: Job>(&self, job: &J) -> Result<(), RuntimeError> {
        let pings = self.start_pinging().await;
        let result = self.schedule(job).await;
        pings.cancel();
        self.final_ping().await;
        result
    }

    /// Pings once (as pycti does at start), then every [`Timings::ping_interval`] until the returned token is
    /// cancelled (or shutdown). Only the process that plans pings: the state it sends is the one that counts.
    pub(crate) async fn start_pinging(&self) -> tokio_util::sync::CancellationToken {
        self.first_ping().await;
        let stop = self.shutdown.token().child_token();
        let pinger = ping_loop(
            self.timings.ping_interval,
            self.opencti.clone(),
            self.connector_id(),
            self.state.clone(),
            stop.clone(),
        );
        self.shutdown.spawn(pinger);
        stop
    }

    /// The schedule itself (see [`Runtime::run_scheduled`]).
    pub(crate) async fn schedule<J: Job>(&self, job: &J) -> Result<(), RuntimeError> {
        let period = self.settings.connector.duration_period;
        let runs_once = self.settings.connector.runs_once();
        let mut schedule = Schedule::new(period, self.timings.retries);
        // Before the next run: at start, a period after the state's last run; then as the last outcome says.
        let mut wait = self.wait_before_next_run(job, period);
        let mut last_outcome = None;
        loop {
            if !runs_once {
                if !wait.is_zero() {
                    tracing::info!(wait_seconds = wait.as_secs(), "waiting for the next run");
                }
                if !self.shutdown.sleep(wait).await {
                    break;
                }
            }
            if self.shutdown.is_triggered() {
                break;
            }
            let started = Instant::now();
            metrics::global().run_started();
            let outcome = self.scheduled_run(job).await;
            last_outcome = Some(outcome);
            metrics::global().run_ended(outcome, started.elapsed());
            wait = schedule.wait_after(outcome).unwrap_or_else(|| self.wait_before_next_run(job, period));
            let next = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + wait.as_millis() as i64);
            self.state.update_info(|info| info.next_run_datetime = (!runs_once).then(|| next.to_seconds_string()));
            if runs_once || self.shutdown.is_triggered() {
                break;
            }
        }
        // Run-and-terminate (a cron job, a Kubernetes Job) tells a failed run by the exit status.
        if runs_once && last_outcome == Some(RunOutcome::Failed) {
            return Err(RuntimeError::RunFailed);
        }
        Ok(())
    }

    /// Stops: asks every task to end and waits for them (bounded).
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.shutdown.wait_for_tasks(DRAIN_TIMEOUT + Duration::from_secs(5)).await;
        metrics::global().set_state(metrics::ConnectorState::Stopped);
    }

    /// Time until the next run: none on the first start, else the period after the last run.
    fn wait_before_next_run<J: Job>(&self, job: &J, period: Duration) -> Duration {
        let Some(last) = job.last_run(&self.state.view().document) else { return Duration::ZERO };
        let due = last.unix_millis().saturating_add(period.as_millis().try_into().unwrap_or(i64::MAX));
        let wait = due - Timestamp::now().unix_millis();
        // A `last_run` in the future (a clock that ran ahead, a hand-edited state) waits one period at most.
        Duration::from_millis(wait.max(0).try_into().unwrap_or_default()).min(period)
    }

    /// One scheduled run: the queue threshold check, then the job, in a span that its events carry. Shutdown
    /// interrupts a run stuck on the broker after [`DRAIN_TIMEOUT`].
    async fn scheduled_run<J: Job>(&self, job: &J) -> RunOutcome {
        if self.queue_over_threshold().await {
            return RunOutcome::Skipped;
        }
        let now = Timestamp::now();
        self.state.update_info(|info| info.last_run_datetime = Some(now.to_seconds_string()));
        let view = self.state.view();
        let span = tracing::info_span!("run", work_id = tracing::field::Empty, revision = tracing::field::Empty);
        let context = RunContext { runtime: self, view, started: now, span: span.clone() };
        let shutdown = self.shutdown.clone();
        let deadline = async move {
            shutdown.triggered().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let result = tokio::select! {
            result = job.run(&context).instrument(span.clone()) => result,
            () = deadline => {
                tracing::warn!("the run did not end within the drain time after shutdown: abandoned");
                return RunOutcome::Interrupted;
            }
        };
        match result {
            Ok(outcome) => outcome,
            Err(error) => {
                let _entered = span.enter();
                tracing::error!(error = %crate::error_chain::error_chain(&*error), "run failed: the state is unchanged, the next run retries");
                RunOutcome::Failed
            }
        }
    }

    /// Reads the push queue's size; over the threshold (decimal MB, as pycti), the run is skipped and the
    /// connector info says `buffering`.
    async fn queue_over_threshold(&self) -> bool {
        let threshold = self.settings.connector.queue_threshold_mb;
        match self.opencti.queue_details(&self.connector_id()).await {
            Ok(details) => {
                let size_mb = details.messages_size as f64 / 1_000_000.0;
                let buffering = size_mb >= threshold;
                self.state.update_info(|info| {
                    info.queue_messages_size = size_mb;
                    info.buffering = buffering;
                });
                if buffering {
                    tracing::info!(
                        queue_mb = size_mb,
                        threshold_mb = threshold,
                        messages = details.messages_number,
                        "push queue over the threshold: skipping this run until the platform's workers catch up"
                    );
                }
                buffering
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the push queue size: running anyway");
                false
            }
        }
    }

    /// Pings once before any run, as pycti does at start. A reset made in the UI while the connector was stopped
    /// is already in the registration's answer, but the platform keeps its reset flag until a ping, and answers that
    /// ping with the reset state: were it the run's state ping, the run's progress would be taken for a new reset.
    async fn first_ping(&self) {
        let sent = self.state.snapshot();
        let quick = self.opencti.with_retry(RetryPolicy::brief());
        if let Err(error) = ping_and_adopt(&quick, &self.connector_id(), &self.state, &sent).await {
            tracing::warn!(%error, "first ping failed: the ping task tries again");
        }
    }

    pub(crate) async fn final_ping(&self) {
        let sent = self.state.snapshot();
        let quick = self.opencti.with_retry(RetryPolicy::brief());
        match ping_and_adopt(&quick, &self.connector_id(), &self.state, &sent).await {
            Ok(_) => tracing::info!(state = sent.0, "final ping sent"),
            Err(error) => tracing::warn!(%error, "final ping failed"),
        }
    }

    /// The OpenCTI client for calls that close a run: after a shutdown request, with a few quick retries only.
    fn opencti_now(&self) -> OpenCti {
        if self.shutdown.is_triggered() { self.opencti.with_retry(RetryPolicy::brief()) } else { self.opencti.clone() }
    }
}

/// What a connector does on each scheduled run.
pub trait Job: Send + Sync {
    /// One run. The run opens its work, sends its bundles, commits the state and ends the work; it returns how
    /// it ended, or an error (the runtime logs it; the run counts as failed and is retried after a wait).
    fn run(&self, run: &RunContext<'_>) -> impl Future<Output = Result<RunOutcome, BoxError>> + Send;

    /// When the last successful run happened, read from the state, so that a restart keeps the rhythm of the
    /// period. `None`: run at once.
    fn last_run(&self, state: &StateDocument) -> Option<Timestamp>;
}

/// What one run works with.
pub struct RunContext<'r> {
    runtime: &'r Runtime,
    view: StateView,
    started: Timestamp,
    span: tracing::Span,
}

impl<'r> RunContext<'r> {
    pub fn runtime(&self) -> &'r Runtime {
        self.runtime
    }

    /// The state when the run started.
    pub fn state(&self) -> &StateDocument {
        &self.view.document
    }

    /// When the run started.
    pub fn started(&self) -> Timestamp {
        self.started
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.runtime.shutdown
    }

    /// Records `work_id` (and, when known, `revision`) on the run's span, so that every event of the run carries
    /// them.
    pub fn label(&self, work_id: Option<&str>, revision: Option<&str>) {
        if let Some(work_id) = work_id {
            self.span.record("work_id", work_id);
        }
        if let Some(revision) = revision {
            self.span.record("revision", revision);
        }
    }

    /// Saves `state` (unless the platform's state was reset since the run started) and pushes it at once.
    pub async fn commit_state(&self, state: StateDocument) -> bool {
        self.runtime.commit_state(state, self.view.generation).await
    }
}

/// Pings with the state and info taken from `store`, and adopts the platform's state if the answer says it was
/// reset. Returns whether it was.
async fn ping_and_adopt(
    opencti: &OpenCti,
    connector_id: &str,
    store: &StateStore,
    (state, info): &(String, ConnectorInfo),
) -> Result<bool, OpenCtiError> {
    let answer = opencti.ping(connector_id, state, info).await;
    metrics::global().ping(answer.is_ok());
    Ok(store.adopt_reset(state, answer?.connector_state.as_deref()))
}

/// Health check and registration, retried until the platform answers (or shutdown). `None` on shutdown.
async fn register(
    opencti: &OpenCti,
    settings: &Settings,
    about: &About,
    shutdown: &Shutdown,
) -> Result<Option<Registration>, RuntimeError> {
    let patient = opencti.with_retry(RetryPolicy { max_retries: None, ..RetryPolicy::default() });
    let connector = &settings.connector;
    let input = RegisterInput::external_import(
        &connector.id.to_string(),
        &connector.name,
        &connector.scope,
        about.version,
        about.slug,
    );
    let url = settings.opencti.url.to_string();
    // Owned data only: a future borrowing the settings here trips the compiler's `Send` inference under `select!`.
    let attempt = async move {
        let version = patient.about().await?;
        tracing::info!(version, url, "OpenCTI answers");
        patient.register(&input).await
    };
    tokio::select! {
        registration = attempt => match registration {
            Ok(registration) => Ok(Some(registration)),
            Err(error @ OpenCtiError::Unauthorized(_)) => {
                metrics::global().client_error();
                Err(RuntimeError::Unauthorized(error))
            }
            Err(error) => Err(RuntimeError::Registration(error)),
        },
        () = shutdown.triggered() => Ok(None),
    }
}

/// Pings every `interval` with the state and runtime info; adopts the platform's state when it differs (a user
/// reset the connector in the UI). Ends when `stop` is cancelled.
async fn ping_loop(
    interval: Duration,
    opencti: OpenCti,
    connector_id: String,
    store: Arc<StateStore>,
    stop: tokio_util::sync::CancellationToken,
) {
    let quick = opencti.with_retry(RetryPolicy::brief());
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
        let sent = store.snapshot();
        let ping = ping_and_adopt(&quick, &connector_id, &store, &sent);
        let result = tokio::select! {
            result = ping => result,
            () = stop.cancelled() => return,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "ping failed");
        }
    }
}

/// Ends a run's sending after a shutdown request: drains what is in flight for a bounded time (at-least-once
/// either way), then closes the broker connection (a stalled broker may not answer the close either).
pub async fn drain_and_close(mut sender: Sender) {
    if let Some(publisher) = sender.publisher() {
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, publisher.flush()).await;
        tracing::info!(
            confirmed = publisher.stats().confirmed,
            drained = drained.is_ok(),
            "publisher drained after shutdown"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close_connection()).await;
}

/// Closes a sender's broker connection, bounded in time.
pub async fn close(sender: Sender) {
    let _ = tokio::time::timeout(Duration::from_secs(5), sender.close_connection()).await;
}
