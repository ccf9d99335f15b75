//! The Maltrail connector's run, on the runtime: plan what changed, open the work, send each trail file's bundle,
//! then, once RabbitMQ confirmed every message, advance the state and close the work. A run that fails or is
//! interrupted leaves the state where it was, so the next run redoes the unfinished part.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opencti_connector::metrics::Counter;
use opencti_connector::send::{Expectations, SendCounts, SendError, Sender};
use opencti_connector::{BoxError, Job, RunContext, RunOutcome, StateDocument, Work};
use proto_stix::Timestamp;

use crate::convert::{Converter, Times, file_trails};
use crate::pipeline::{FileSend, Laid, send_file};
use crate::plan::{IncrementalPlan, Plan, plan};
use crate::settings::SLUG;
use crate::source::{Revision, Source, SourceError};
use crate::state::SyncState;
use crate::stats::Stats;
use crate::trails::parse_file;

/// Skipped lines reported on a work as errors, at most (the summary counts them all).
const REPORTED_SKIPS: usize = 20;
/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the trails failed: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("stopped by shutdown before the end of the run")]
    Interrupted,
    /// A revision without a single trail file is a wrong `MALTRAIL_PATH` or directory far more often than an empty
    /// Maltrail: recording it as synced would skip every file once the setting is fixed.
    #[error("{origin} holds no trail file at {revision}: check MALTRAIL_PATH (or MALTRAIL_DIRECTORY)")]
    NoTrailFiles { origin: String, revision: String },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Trail files read (changed files, for an incremental run).
    pub files: u64,
    /// What the files held, skipped lines included.
    pub stats: Stats,
    /// What was laid out.
    pub laid: Laid,
    /// What was sent.
    pub sent: SendCounts,
}

impl RunSummary {
    /// One line for the work's message and the logs.
    pub fn describe(&self) -> String {
        format!(
            "{} files, {} trails sent, {} revoked, {} relationships revoked, {} lines skipped, {} messages",
            self.files,
            self.laid.trails_sent,
            self.laid.trails_revoked,
            self.laid.relations_revoked,
            self.stats.total_skipped(),
            self.sent.messages,
        )
    }
}

/// The connector's own metrics, besides the runtime's.
struct Counters {
    trails_sent: Counter,
    trails_revoked: Counter,
    lines_skipped: Counter,
    messages_published: Counter,
}

fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let metrics = opencti_connector::metrics::global();
        Counters {
            trails_sent: metrics.counter(SLUG, "trails_sent", "Indicators sent active."),
            trails_revoked: metrics.counter(SLUG, "trails_revoked", "Indicators sent revoked."),
            lines_skipped: metrics.counter(SLUG, "lines_skipped", "Trail lines skipped (malformed, too broad)."),
            messages_published: metrics.counter(
                SLUG,
                "messages_published",
                "Messages published to the platform's queue and confirmed.",
            ),
        }
    })
}

/// The Maltrail connector: a source of trails and a converter to STIX.
#[derive(Debug)]
pub struct MaltrailConnector {
    source: Source,
    converter: Converter,
}

impl MaltrailConnector {
    pub fn new(source: Source, converter: Converter) -> Self {
        // Registered at start, so that /metrics lists them before the first run.
        counters();
        Self { source, converter }
    }

    /// The state after a run that synced `head`.
    fn synced(&self, state: &SyncState, head: &Revision, now: Timestamp) -> StateDocument {
        let mut state = state.clone();
        state.last_commit = Some(head.id.clone());
        state.last_run = Some(now.to_seconds_string());
        state.source = Some(self.source.describe());
        state.to_document()
    }

    /// Sends what the plan says, each file's bundle in turn; returns once every message is confirmed.
    async fn send(&self, sender: &mut Sender, plan: &Plan, run: &RunContext<'_>) -> Result<RunSummary, RunError> {
        let now = run.started();
        let mut summary = match plan {
            Plan::Full { head } => self.full_import(sender, head, now, run).await?,
            Plan::Update { head, plan, .. } => self.incremental(sender, plan, head, now, run).await?,
            Plan::UpToDate { .. } => RunSummary::default(),
        };
        sender.confirm_all().await?;
        summary.sent = sender.counts();
        Ok(summary)
    }

    /// Every trail file of `head`, each as one bundle. `valid_from` is the run's time: when a trail entered Maltrail
    /// is not known from one snapshot.
    async fn full_import(
        &self,
        sender: &mut Sender,
        head: &Revision,
        now: Timestamp,
        run: &RunContext<'_>,
    ) -> Result<RunSummary, RunError> {
        let times = Times { valid_from: now, now };
        let mut summary = RunSummary::default();
        let total = match self.source.file_count(head).await {
            Ok(total) => Some(total),
            Err(error) => {
                tracing::warn!(%error, "cannot count the trail files: progress without a total");
                None
            }
        };
        let mut progress = Progress::new(total);
        let mut files = self.source.files(head);
        while let Some(item) = files.recv().await {
            if run.shutdown().is_triggered() {
                return Err(RunError::Interrupted);
            }
            let content = item?;
            let Some(file) = parse_file(&content.path, &content.content) else {
                tracing::debug!(file = %content.path, "not a trail file of a known category");
                continue;
            };
            file.log_skipped();
            summary.files += 1;
            summary.stats.count_file(&file);
            if !self.converter.wants(file.category) {
                continue;
            }
            let trails = file_trails(&file);
            send_file(sender, &self.converter, &FileSend::all(&file, &trails), times, &mut summary.laid).await?;
            progress.report(&summary, sender.counts().messages);
        }
        if summary.files == 0 {
            return Err(RunError::NoTrailFiles { origin: self.source.describe(), revision: head.id.clone() });
        }
        Ok(summary)
    }

    /// What changed between the synced revision and `head`: added trails (with the head commit's date as
    /// `valid_from`), removed trails revoked, `indicates` revoked where a trail left a family.
    async fn incremental(
        &self,
        sender: &mut Sender,
        plan: &IncrementalPlan,
        head: &Revision,
        now: Timestamp,
        run: &RunContext<'_>,
    ) -> Result<RunSummary, RunError> {
        let times = Times { valid_from: head.date.unwrap_or(now), now };
        let mut summary = RunSummary::default();
        for file_plan in &plan.files {
            if run.shutdown().is_triggered() {
                return Err(RunError::Interrupted);
            }
            summary.files += 1;
            if let Some(new) = &file_plan.new {
                summary.stats.count_file(new);
            }
            let new_trails = file_plan.new.as_ref().map(file_trails).unwrap_or_default();
            let old_trails = file_plan.old.as_ref().map(file_trails).unwrap_or_default();
            let Some(send) = file_plan.send(&new_trails, &old_trails) else { continue };
            send_file(sender, &self.converter, &send, times, &mut summary.laid).await?;
        }
        Ok(summary)
    }

    /// Reports a few skipped lines on the work, so that they show in the platform's view of the run.
    async fn report_skipped(&self, work: &Work, summary: &RunSummary) {
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
        if let Err(error) = work.add_expectations(examples.len() as u64).await {
            tracing::warn!(%error, "cannot report skipped lines on the work");
            return;
        }
        for (reason, example) in examples {
            let error = format!("trail line skipped ({reason}): {}", example.text);
            if let Err(error) = work.report_error(&error, &format!("{}:{}", example.file, example.line)).await {
                tracing::warn!(%error, "cannot report a skipped line on the work");
            }
        }
    }
}

impl Job for MaltrailConnector {
    async fn run(&self, run: &RunContext<'_>) -> Result<RunOutcome, BoxError> {
        let runtime = run.runtime();
        let state = SyncState::from_document(run.state());
        // Planning may wait out a GitHub rate limit: shutdown interrupts it at once.
        let plan = tokio::select! {
            plan = plan(&self.source, &state, &self.converter) => plan.map_err(|error| -> BoxError {
                format!("cannot plan the run: {error}").into()
            })?,
            () = run.shutdown().triggered() => return Ok(RunOutcome::Interrupted),
        };
        run.label(None, Some(&plan.head().id));
        if let Plan::UpToDate { head } = &plan {
            run.commit_state(self.synced(&state, head, run.started())).await;
            return Ok(RunOutcome::UpToDate);
        }
        if run.shutdown().is_triggered() {
            return Ok(RunOutcome::Interrupted);
        }
        let work = runtime.open_work(&plan.work_name(&self.source.describe())).await?;
        run.label(Some(work.id()), None);
        let Some(mut sender) = runtime.sender(&work, Expectations::Announce(work.clone())).await? else {
            runtime.work_for_ending(&work).finish("interrupted by shutdown: the next run redoes it", true).await;
            return Ok(RunOutcome::Interrupted);
        };
        match self.send(&mut sender, &plan, run).await {
            Ok(summary) => {
                opencti_connector::close(sender).await;
                let counters = counters();
                counters.trails_sent.inc_by(summary.laid.trails_sent);
                counters.trails_revoked.inc_by(summary.laid.trails_revoked);
                counters.lines_skipped.inc_by(summary.stats.total_skipped());
                counters.messages_published.inc_by(summary.sent.messages);
                let work = runtime.work_for_ending(&work);
                self.report_skipped(&work, &summary).await;
                let advanced = run.commit_state(self.synced(&state, plan.head(), run.started())).await;
                let mut message = summary.describe();
                if !advanced {
                    message.push_str(" (state reset during the run: the next run starts over)");
                }
                work.finish(&message, false).await;
                tracing::info!(summary = %message, "run done");
                Ok(RunOutcome::Success)
            }
            Err(RunError::Interrupted) => {
                opencti_connector::drain_and_close(sender).await;
                runtime.work_for_ending(&work).finish("interrupted by shutdown: the next run redoes it", true).await;
                Ok(RunOutcome::Interrupted)
            }
            Err(error) => {
                opencti_connector::close(sender).await;
                runtime.work_for_ending(&work).finish(&format!("failed: {error}"), true).await;
                Err(error.into())
            }
        }
    }

    fn last_run(&self, state: &StateDocument) -> Option<Timestamp> {
        SyncState::from_document(state).last_run_time()
    }
}

/// Progress lines of a long run: files done out of the total, messages per second, time left.
struct Progress {
    total: Option<usize>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: Option<usize>) -> Self {
        let now = Instant::now();
        Self { total, started: now, last: now }
    }

    fn report(&mut self, summary: &RunSummary, messages: u64) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = messages as f64 / elapsed;
        let eta_seconds = self
            .total
            .filter(|total| summary.files > 0 && (summary.files as usize) < *total)
            .map(|total| (elapsed / summary.files as f64 * (total as f64 - summary.files as f64)).round() as u64);
        tracing::info!(
            files = summary.files,
            total_files = self.total,
            trails = summary.laid.trails_sent,
            messages,
            messages_per_second = rate.round() as u64,
            eta_seconds,
            "progress"
        );
    }
}

/// Runs the connector until shutdown (or after one run with run-and-terminate): registers, then imports on
/// schedule. An authentication error or a failed run-and-terminate run ends it with an error; shutdown while the
/// platform is still unreachable ends it cleanly.
pub async fn serve(
    config: crate::settings::Config,
    shutdown: opencti_connector::Shutdown,
    timings: opencti_connector::Timings,
) -> anyhow::Result<()> {
    use anyhow::Context;
    // The metrics first, under the connector's prefix, so that its own counters join them.
    let connector_settings = &config.platform.connector;
    opencti_connector::metrics::init(
        SLUG,
        &connector_settings.metrics_namespace,
        &connector_settings.metrics_subsystem,
    );
    let source = Source::from_settings(&config.maltrail).context("cannot set up the source")?;
    let connector = MaltrailConnector::new(source, Converter::new(config.convert));
    let about = opencti_connector::About { slug: SLUG, version: env!("CARGO_PKG_VERSION") };
    let Some(runtime) = opencti_connector::Runtime::start_with(config.platform, about, shutdown, timings).await? else {
        return Ok(());
    };
    let result = runtime.run_scheduled(&connector).await;
    runtime.stop().await;
    Ok(result?)
}
