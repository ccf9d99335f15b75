//! The connector service: registers with OpenCTI, keeps pinging it with the state, and runs imports on schedule
//! (`CONNECTOR_DURATION_PERIOD`), skipping a run while the push queue is over the threshold, until shutdown or,
//! with run-and-terminate, after one run.
//!
//! Each run opens one work, delivers its bundles, and only once RabbitMQ confirmed every message advances the state
//! (`last_commit`), pushes it to the platform and marks the work processed. A failed or interrupted run leaves the
//! state where it was, so the next run redoes the unfinished part.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto_stix::Timestamp;

use crate::config::Config;
use crate::convert::Converter;
use crate::directory_output::{ConnectorIdentity, DirectoryOutput};
use crate::metrics::{self, RunOutcome};
use crate::opencti::{ConnectorInfo, GraphQlClient, OpenCti, OpenCtiError, RetryPolicy, WorkError};
use crate::publish::{AmqpEndpoint, Envelope, PublishOptions, Publisher};
use crate::run::{Delivery, QueueTarget, RunContext, RunError, RunSummary, plan_incremental};
use crate::schedule::{RetryTimings, Schedule};
use crate::shutdown::Shutdown;
use crate::source::{Revision, Source, SourceError, directory::DirectorySource, github::GitHubSource};
use crate::state::ConnectorState;

/// How often the platform is pinged, as pycti does.
pub const PING_INTERVAL: Duration = Duration::from_secs(40);
/// How long a shutdown waits for outstanding confirms before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Skipped lines reported on a work as errors, at most (the summary counts them all).
const REPORTED_SKIPS: usize = 20;

/// What the ping task and the run share.
#[derive(Debug, Default)]
struct Shared {
    state: ConnectorState,
    /// Bumped when the platform's state replaces ours (a reset in the UI): a run that started before does not
    /// advance the state.
    generation: u64,
    info: ConnectorInfo,
}

impl Shared {
    /// Adopts the platform's state when its answer to a ping differs from the state the ping sent. The platform
    /// stores what a ping sends, except for the first ping after a user reset the state in the UI: that one is
    /// answered with the reset state and not stored. So any difference is a reset, even if a run moved our state
    /// since the ping left. Returns whether the state was replaced.
    fn adopt_reset(&mut self, sent: &str, answered: Option<&str>) -> bool {
        let remote = ConnectorState::parse(answered);
        if remote == ConnectorState::parse(Some(sent)) {
            return false;
        }
        tracing::warn!(state = %remote.to_json(), "the platform's state was reset: adopting it, the next run starts over");
        self.state = remote;
        self.generation += 1;
        true
    }

    /// What a ping sends: the state as JSON, and the runtime info.
    fn snapshot(&self) -> (String, ConnectorInfo) {
        (self.state.to_json(), self.info.clone())
    }
}

/// Pings with `state` and `info` (taken from `shared`), and adopts the platform's state if the answer says it was
/// reset. Returns whether it was.
async fn ping_and_adopt(
    opencti: &OpenCti,
    connector_id: &str,
    shared: &SharedHandle,
    (state, info): &(String, ConnectorInfo),
) -> Result<bool, OpenCtiError> {
    let answer = opencti.ping(connector_id, state, info).await?;
    Ok(lock(shared).adopt_reset(state, answer.connector_state.as_deref()))
}

type SharedHandle = Arc<Mutex<Shared>>;

fn lock(shared: &SharedHandle) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything the service needs, built once at start.
struct Service {
    timings: Timings,
    config: Config,
    opencti: OpenCti,
    connector_id: String,
    registration: crate::opencti::Registration,
    source: Source,
    converter: Converter,
    directory: Option<DirectoryOutput>,
    shared: SharedHandle,
    shutdown: Shutdown,
}

/// What a run is to send, once planned.
struct Planned {
    head: Revision,
    /// `None`: a full import.
    plan: Option<crate::run::IncrementalPlan>,
    /// The work's friendly name.
    name: String,
    /// [`Shared::generation`] when the run started.
    generation: u64,
}

/// The service's clocks. Only tests change them.
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

/// Runs the connector until shutdown (or after one run with run-and-terminate). An authentication error ends it
/// with an error; shutdown while the platform is still unreachable ends it cleanly.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    run_with(config, shutdown, Timings::default()).await
}

/// [`run`] with other timings.
pub async fn run_with(config: Config, shutdown: Shutdown, timings: Timings) -> anyhow::Result<()> {
    let client = GraphQlClient::new(&config.opencti, RetryPolicy::default())?;
    let opencti = OpenCti::new(client);
    let connector_id = config.connector.id.to_string();

    if config.connector.expose_metrics {
        let address = ("0.0.0.0", config.connector.metrics_port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on port {}", config.connector.metrics_port))?;
        tracing::info!(port = config.connector.metrics_port, "metrics served on /metrics");
        tokio::spawn(metrics::serve(listener));
    }

    let Some(registration) = register(&opencti, &config, &shutdown).await? else {
        tracing::info!("shutdown before the platform answered");
        return Ok(());
    };
    let state = ConnectorState::parse(registration.connector_state.as_deref());
    tracing::info!(connector_id, state = %state.to_json(), push_queue = %registration.config.push, "registered with OpenCTI");

    let source = match &config.maltrail.directory {
        Some(directory) => Source::Directory(DirectorySource::new(directory)),
        None => Source::GitHub(GitHubSource::new(&config.maltrail).context("cannot set up the GitHub source")?),
    };
    let directory = match (&config.connector.send_to_directory, &config.connector.directory_path) {
        (true, Some(path)) => {
            let identity = ConnectorIdentity {
                id: connector_id.clone(),
                name: config.connector.name.clone(),
                connector_type: crate::config::CONNECTOR_TYPE.into(),
                scope: config.connector.scope.join(","),
                auto: false,
                validate_before_import: false,
            };
            let output = DirectoryOutput::new(
                path,
                config.connector.directory_retention_days,
                &identity,
                registration.connector_user_id.as_deref(),
            )
            .with_context(|| format!("cannot use {} for CONNECTOR_SEND_TO_DIRECTORY_PATH", path.display()))?;
            Some(output)
        }
        _ => None,
    };
    let info = ConnectorInfo {
        run_and_terminate: config.connector.runs_once(),
        queue_threshold: config.connector.queue_threshold_mb,
        ..ConnectorInfo::default()
    };
    let shared = Arc::new(Mutex::new(Shared { state, generation: 0, info }));
    let service = Service {
        timings,
        converter: Converter::new(config.convert.clone()),
        config,
        opencti,
        connector_id,
        registration,
        source,
        directory,
        shared,
        shutdown,
    };
    service.schedule().await
}

/// Health check and registration, retried until the platform answers (or shutdown). `None` on shutdown.
async fn register(
    opencti: &OpenCti,
    config: &Config,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<crate::opencti::Registration>> {
    let patient = opencti.with_retry(RetryPolicy { max_retries: None, ..RetryPolicy::default() });
    let input = crate::opencti::RegisterInput::external_import(
        &config.connector.id.to_string(),
        &config.connector.name,
        &config.connector.scope,
    );
    let url = config.opencti.url.clone();
    // Owned data only: a future borrowing the config here trips the compiler's `Send` inference under `select!`.
    let attempt = async move {
        let version = patient.about().await?;
        tracing::info!(version, url, "OpenCTI answers");
        patient.register(&input).await
    };
    tokio::select! {
        registration = attempt => match registration {
            Ok(registration) => Ok(Some(registration)),
            Err(error @ OpenCtiError::Unauthorized(_)) => Err(anyhow::Error::new(error)),
            Err(error) => Err(anyhow::Error::new(error).context("registration failed")),
        },
        () = shutdown.triggered() => Ok(None),
    }
}

impl Service {
    /// The scheduling loop, with the ping task beside it.
    async fn schedule(self) -> anyhow::Result<()> {
        self.first_ping().await;
        let pinger = tokio::spawn(ping_loop(
            self.timings.ping_interval,
            self.opencti.clone(),
            self.connector_id.clone(),
            Arc::clone(&self.shared),
            self.shutdown.clone(),
        ));
        let period = self.config.connector.duration_period;
        let runs_once = self.config.connector.runs_once();
        let mut schedule = Schedule::new(period, self.timings.retries);
        // Before the next run: at start, a period after the state's last run; then as the last outcome says.
        let mut wait = self.wait_before_next_run(period);
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
            let outcome = self.scheduled_run().await;
            last_outcome = Some(outcome);
            metrics::global().run_ended(outcome, started.elapsed());
            wait = schedule.wait_after(outcome).unwrap_or_else(|| self.wait_before_next_run(period));
            let next = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + wait.as_millis() as i64);
            lock(&self.shared).info.next_run_datetime = (!runs_once).then(|| next.to_seconds_string());
            if runs_once || self.shutdown.is_triggered() {
                break;
            }
        }
        pinger.abort();
        self.final_ping().await;
        // Run-and-terminate (a cron job, a Kubernetes Job) tells a failed run by the exit status.
        if runs_once && last_outcome == Some(RunOutcome::Failed) {
            anyhow::bail!("the run failed (see the log above); the state was not advanced");
        }
        Ok(())
    }

    /// Time until the next run: none on the first start, else the period after the last run.
    fn wait_before_next_run(&self, period: Duration) -> Duration {
        let shared = lock(&self.shared);
        let last = shared.state.last_run.as_deref().and_then(|t| Timestamp::parse_rfc3339(t).ok());
        let Some(last) = last else { return Duration::ZERO };
        let due = last.unix_millis().saturating_add(period.as_millis().try_into().unwrap_or(i64::MAX));
        let wait = due - Timestamp::now().unix_millis();
        // A `last_run` in the future (a clock that ran ahead, a hand-edited state) waits one period at most.
        Duration::from_millis(wait.max(0).try_into().unwrap_or_default()).min(period)
    }

    /// Pings once before any run, as pycti does at start. A reset made in the UI while the connector was stopped
    /// is already in the registration's answer, but the platform keeps its reset flag until a ping, and answers that
    /// ping with the reset state: were it the run's state ping, the run's progress would be taken for a new reset.
    async fn first_ping(&self) {
        let sent = lock(&self.shared).snapshot();
        let quick = self.opencti.with_retry(RetryPolicy::brief());
        if let Err(error) = ping_and_adopt(&quick, &self.connector_id, &self.shared, &sent).await {
            tracing::warn!(%error, "first ping failed: the ping task tries again");
        }
    }

    async fn final_ping(&self) {
        let sent = lock(&self.shared).snapshot();
        let quick = self.opencti.with_retry(RetryPolicy::brief());
        match ping_and_adopt(&quick, &self.connector_id, &self.shared, &sent).await {
            Ok(_) => tracing::info!(state = sent.0, "final ping sent"),
            Err(error) => tracing::warn!(%error, "final ping failed"),
        }
    }

    /// One scheduled run: queue threshold check, then the import.
    async fn scheduled_run(&self) -> RunOutcome {
        let threshold = self.config.connector.queue_threshold_mb;
        match self.opencti.queue_details(&self.connector_id).await {
            Ok(details) => {
                let size_mb = details.messages_size as f64 / 1_000_000.0;
                let mut shared = lock(&self.shared);
                shared.info.queue_messages_size = size_mb;
                shared.info.buffering = size_mb >= threshold;
                if shared.info.buffering {
                    tracing::info!(
                        queue_mb = size_mb,
                        threshold_mb = threshold,
                        messages = details.messages_number,
                        "push queue over the threshold: skipping this run until the platform's workers catch up"
                    );
                    return RunOutcome::Skipped;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the push queue size: running anyway"),
        }
        let now = Timestamp::now();
        lock(&self.shared).info.last_run_datetime = Some(now.to_seconds_string());
        match self.import(now).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "run failed: the state is unchanged, the next run retries");
                RunOutcome::Failed
            }
        }
    }

    /// Decides between nothing, an incremental run and a full import, and runs it. Shutdown interrupts the planning
    /// (which may be waiting out a GitHub rate limit) at once, and the delivery within [`DRAIN_TIMEOUT`].
    async fn import(&self, now: Timestamp) -> anyhow::Result<RunOutcome> {
        let planned = tokio::select! {
            planned = self.plan(now) => planned?,
            () = self.shutdown.triggered() => return Ok(RunOutcome::Interrupted),
        };
        let Some(Planned { head, plan, name, generation }) = planned else { return Ok(RunOutcome::UpToDate) };
        if self.shutdown.is_triggered() {
            return Ok(RunOutcome::Interrupted);
        }
        let work_id = self.opencti.work_add(&self.connector_id, &name, true).await.context("cannot open a work")?;
        tracing::info!(work_id, name, "work opened");
        let result = self.deliver(&work_id, &head, plan.as_ref(), now).await;
        match result {
            Ok(summary) => {
                metrics::global().trails(summary.trails_sent, summary.trails_revoked, summary.stats.total_skipped());
                metrics::global().messages(summary.delivered.messages);
                self.report_skipped(&work_id, &summary).await;
                let advanced = self.advance_state(&head, now, generation).await;
                let mut message = summary.describe();
                if !advanced {
                    message.push_str(" (state reset during the run: the next run starts over)");
                }
                self.finish_work(&work_id, &message, false).await;
                tracing::info!(work_id, summary = %message, "run done");
                Ok(RunOutcome::Success)
            }
            Err(RunError::Interrupted) => {
                self.finish_work(&work_id, "interrupted by shutdown: the next run redoes it", true).await;
                Ok(RunOutcome::Interrupted)
            }
            Err(error) => {
                self.finish_work(&work_id, &format!("failed: {error}"), true).await;
                Err(error.into())
            }
        }
    }

    /// Settles what the run sends: `None` when the source is where the state says (the state is advanced), else
    /// the head, the incremental plan (none for a full import) and the work's name.
    async fn plan(&self, now: Timestamp) -> anyhow::Result<Option<Planned>> {
        let head = self.source.head().await.context("cannot read the current revision")?;
        let described = self.source.describe();
        let (base, generation) = {
            let shared = lock(&self.shared);
            (shared.state.synced_revision(&described).map(str::to_owned), shared.generation)
        };
        if base.as_deref() == Some(head.id.as_str()) {
            tracing::info!(revision = %head.id, "up to date with the source");
            self.advance_state(&head, now, generation).await;
            return Ok(None);
        }
        let plan = match &base {
            None => None,
            Some(base) => match self.source.changes(base, &head).await {
                Ok(changes) => {
                    tracing::info!(from = %base, to = %head.id, changed_files = changes.len(), "incremental run");
                    Some(plan_incremental(&self.source, &head, changes, &self.converter).await?)
                }
                Err(SourceError::UnknownRevision(revision)) => {
                    tracing::warn!(revision, "the last synced revision is unknown to the source: full import");
                    None
                }
                Err(error) => return Err(error.into()),
            },
        };
        let name = match (&base, &plan) {
            (Some(base), Some(plan)) => {
                format!("Maltrail update {}..{} ({} files)", short(base), short(&head.id), plan.files.len())
            }
            _ => format!("Maltrail full import {} ({})", short(&head.id), described),
        };
        if plan.as_ref().is_some_and(|p| p.files.is_empty()) {
            tracing::info!(revision = %head.id, "no trail file changed");
            self.advance_state(&head, now, generation).await;
            return Ok(None);
        }
        Ok(Some(Planned { head, plan, name, generation }))
    }

    /// Delivers the run's bundles to the queue and/or the directory; returns once every message is confirmed.
    async fn deliver(
        &self,
        work_id: &str,
        head: &Revision,
        plan: Option<&crate::run::IncrementalPlan>,
        now: Timestamp,
    ) -> Result<RunSummary, RunError> {
        let mut publisher = if self.config.connector.send_to_queue {
            let connection = &self.registration.config.connection;
            let endpoint = AmqpEndpoint::new(
                &connection.host,
                connection.port,
                &connection.vhost,
                connection.use_ssl,
                &connection.user,
                connection.pass.expose(),
            )
            .with_overrides(&self.config.mq);
            if endpoint.use_ssl && !endpoint.ssl_verify {
                tracing::warn!(
                    endpoint = %endpoint.describe(),
                    "the broker's TLS certificate is not verified (MQ_SSL_VERIFY=false): give its CA with MQ_CA instead"
                );
            }
            let options = PublishOptions {
                exchange: self.registration.config.push_exchange.clone(),
                routing_key: self.registration.config.push_routing.clone(),
                window: self.config.connector.publish_window,
                max_outage: Duration::from_secs(300),
                connection_name: format!("maltrail-connector {}", self.connector_id),
            };
            let publisher = tokio::select! {
                publisher = Publisher::connect(endpoint, options) => publisher.map_err(|e| RunError::Delivery(e.into()))?,
                () = self.shutdown.triggered() => return Err(RunError::Interrupted),
            };
            Some(publisher)
        } else {
            None
        };
        let queue = publisher.as_mut().map(|publisher| QueueTarget {
            publisher,
            opencti: &self.opencti,
            work_id: work_id.to_owned(),
            envelope: Envelope {
                applicant_id: self.registration.connector_user_id.clone().unwrap_or_default(),
                work_id: Some(work_id.to_owned()),
            },
            batch_size: match self.config.connector.split {
                crate::config::SplitMode::Client => None,
                crate::config::SplitMode::Platform => Some(self.config.connector.batch_size),
            },
        });
        if let Some(directory) = &self.directory {
            match directory.apply_retention() {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "old bundle files removed"),
                Err(error) => tracing::warn!(%error, "cannot apply the bundle files' retention"),
            }
        }
        let context = RunContext {
            source: &self.source,
            converter: &self.converter,
            delivery: Delivery::new(queue, self.directory.as_ref()),
            shutdown: &self.shutdown,
        };
        let run = run_plan(context, plan, head, now);
        // The run stops at the next file after a shutdown request; a run stuck waiting on the broker (confirms, a
        // reconnection) is given DRAIN_TIMEOUT more, then abandoned: its state is not advanced either way.
        let shutdown = self.shutdown.clone();
        let deadline = async move {
            shutdown.triggered().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let (result, forced) = tokio::select! {
            result = run => (result, false),
            () = deadline => (Err(RunError::Interrupted), true),
        };
        if let Some(mut publisher) = publisher {
            if matches!(result, Err(RunError::Interrupted)) && !forced {
                // Drain what is in flight, for a bounded time: at-least-once either way.
                let drained = tokio::time::timeout(DRAIN_TIMEOUT, publisher.flush()).await;
                tracing::info!(
                    confirmed = publisher.stats().confirmed,
                    drained = drained.is_ok(),
                    "publisher drained after shutdown"
                );
            }
            // A stalled broker may not answer the close either.
            let _ = tokio::time::timeout(Duration::from_secs(5), publisher.close()).await;
        }
        result
    }

    /// Records the revision as synced (unless the platform's state was reset meanwhile) and pushes the state to the
    /// platform at once. Returns whether the state advanced.
    async fn advance_state(&self, head: &Revision, now: Timestamp, generation: u64) -> bool {
        let sent = {
            let mut shared = lock(&self.shared);
            if shared.generation != generation {
                tracing::warn!("the connector state was reset on the platform during the run: not advancing it");
                return false;
            }
            shared.state.last_commit = Some(head.id.clone());
            shared.state.last_run = Some(now.to_seconds_string());
            shared.state.source = Some(self.source.describe());
            shared.snapshot()
        };
        match ping_and_adopt(&self.opencti_now(), &self.connector_id, &self.shared, &sent).await {
            Ok(true) => return false,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot push the new state now: the next ping sends it"),
        }
        tracing::info!(state = sent.0, "state advanced");
        true
    }

    /// The OpenCTI client for calls that close a run: after a shutdown request, with a few quick retries only, so
    /// that an unreachable platform cannot hold the exit.
    fn opencti_now(&self) -> OpenCti {
        if self.shutdown.is_triggered() { self.opencti.with_retry(RetryPolicy::brief()) } else { self.opencti.clone() }
    }

    async fn finish_work(&self, work_id: &str, message: &str, in_error: bool) {
        if let Err(error) = self.opencti_now().to_processed(work_id, message, in_error).await {
            tracing::warn!(%error, work_id, "cannot mark the work processed");
        }
    }

    /// Reports a few skipped lines on the work, so that they show in the platform's view of the run.
    async fn report_skipped(&self, work_id: &str, summary: &RunSummary) {
        let examples: Vec<_> = summary
            .stats
            .skip_examples
            .iter()
            .flat_map(|(reason, examples)| examples.iter().map(move |e| (reason, e)))
            .take(REPORTED_SKIPS)
            .collect();
        if examples.is_empty() {
            return;
        }
        let opencti = self.opencti_now();
        if let Err(error) = opencti.add_expectations(work_id, examples.len() as u64).await {
            tracing::warn!(%error, "cannot report skipped lines on the work");
            return;
        }
        for (reason, example) in examples {
            let error = WorkError {
                error: format!("trail line skipped ({reason}): {}", example.text),
                source: format!("{}:{}", example.file, example.line),
            };
            if let Err(error) = opencti.report_expectation(work_id, &error).await {
                tracing::warn!(%error, "cannot report a skipped line on the work");
            }
        }
    }
}

/// Pings every `interval` with the state and runtime info; adopts the platform's state when it differs (a user reset
/// the connector in the UI).
async fn ping_loop(
    interval: Duration,
    opencti: OpenCti,
    connector_id: String,
    shared: SharedHandle,
    shutdown: Shutdown,
) {
    let quick = opencti.with_retry(RetryPolicy::brief());
    loop {
        if !shutdown.sleep(interval).await {
            return;
        }
        let sent = lock(&shared).snapshot();
        if let Err(error) = ping_and_adopt(&quick, &connector_id, &shared, &sent).await {
            tracing::warn!(%error, "ping failed");
        }
    }
}

/// The import the plan calls for: incremental, or full.
async fn run_plan(
    context: RunContext<'_, '_>,
    plan: Option<&crate::run::IncrementalPlan>,
    head: &Revision,
    now: Timestamp,
) -> Result<RunSummary, RunError> {
    match plan {
        Some(plan) => context.incremental(plan, head, now).await,
        None => context.full_import(head, now).await,
    }
}

fn short(revision: &str) -> &str {
    revision.get(..7).unwrap_or(revision)
}
