//! The Maltrail connector on the runtime, in its two halves.
//!
//! **A run** (the leader: the one replica holding the leadership): plan what changed and which indicators to patch
//! ([`crate::lifecycle`]: un-revocations, refreshes of `valid_until`), open the work, record the run in the state
//! (so that a leader taking over carries it on), publish one job per group of files (a full import), per changed
//! file (an update) or per slice of patches, each after announcing its expectations; wait until every job is done;
//! then advance the state and close the work. A parked job ends the run in error, naming its file; the state stays
//! where it was.
//!
//! **A job** (a worker: any replica, the leader's own process included in the `all` role): lay each file's bundle
//! out into the sender, wait for RabbitMQ's confirms, report what was sent.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opencti_connector::jobs::Tally;
use opencti_connector::metrics::Counter;
use opencti_connector::settings::SplitMode;
use opencti_connector::{
    BoxError, Job, JobRun, JobRunError, RunContext, RunOutcome, StateDocument, WorkContext, Worker,
};
use proto_stix::{StixId, Timestamp};

use crate::convert::{ConvertOptions, Converter, Times};
use crate::job::{Content, Edit, JobError, JobFile, JobMessage, JobReport, expectations, lay_out};
use crate::lifecycle::{Cycle, Refresh, plan_refresh};
use crate::plan::{Plan, plan};
use crate::settings::SLUG;
use crate::source::{Revision, Source, SourceError};
use crate::state::{RunRecord, SyncState};

/// Skipped lines reported on a work as errors, at most (the summary counts them all).
const REPORTED_SKIPS: usize = 20;
/// A full import's files are grouped into jobs of about this many bytes...
const JOB_BYTES: usize = 1 << 20;
/// ...or this many files.
const JOB_FILES: usize = 100;
/// Patches per job (about 5 MB of messages in client mode).
const JOB_PATCHES: usize = 10_000;
/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

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

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the trails failed: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Job(String),
    #[error(transparent)]
    Jobs(#[from] JobRunError),
    #[error("stopped by shutdown before the end of the run")]
    Interrupted,
    /// A revision without a single trail file is a wrong `MALTRAIL_PATH` or directory far more often than an empty
    /// Maltrail: recording it as synced would skip every file once the setting is fixed.
    #[error("{origin} holds no trail file at {revision}: check MALTRAIL_PATH (or MALTRAIL_DIRECTORY)")]
    NoTrailFiles { origin: String, revision: String },
    #[error("{} job(s) failed {} times and were parked: {}", .0.len(), opencti_connector::jobs::MAX_DELIVERIES, .0.join("; "))]
    Parked(Vec<String>),
}

impl From<JobError> for RunError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::Interrupted => Self::Interrupted,
            other => Self::Job(other.to_string()),
        }
    }
}

/// The Maltrail connector: a source of trails, the conversion, and how jobs are cut.
#[derive(Debug)]
pub struct MaltrailConnector {
    source: Source,
    convert: ConvertOptions,
    job_inline_bytes: usize,
    refresh_max_patches: usize,
}

/// The patches of a run besides its files: un-revocations (the trails the last update added) and the refresh.
#[derive(Debug, Default)]
struct Lifecycle {
    reinstate: Vec<StixId>,
    refresh: Option<Refresh>,
}

impl Lifecycle {
    fn is_empty(&self) -> bool {
        self.reinstate.is_empty() && self.refresh.as_ref().is_none_or(|refresh| refresh.ids.is_empty())
    }

    fn patches(&self) -> usize {
        self.reinstate.len() + self.refresh.as_ref().map_or(0, |refresh| refresh.ids.len())
    }
}

impl MaltrailConnector {
    pub fn new(source: Source, convert: ConvertOptions, maltrail: &crate::settings::MaltrailSettings) -> Self {
        // Registered at start, so that /metrics lists them before the first run.
        counters();
        Self {
            source,
            convert,
            job_inline_bytes: maltrail.job_inline_bytes,
            refresh_max_patches: maltrail.refresh_max_patches,
        }
    }

    fn cycle(&self) -> Cycle {
        Cycle::of(self.convert.validity)
    }

    /// The state after a run that synced `record`'s target: its refresh window moved on, the trails it added left
    /// for the next run to un-revoke.
    fn synced(&self, state: &SyncState, record: &RunRecord, now: Timestamp, added: Vec<StixId>) -> StateDocument {
        let mut state = state.clone();
        state.last_commit = Some(record.target.clone());
        state.last_run = Some(now.to_seconds_string());
        state.source = Some(self.source.describe());
        state.run = None;
        state.reinstate = added;
        if record.base.is_none() {
            state.refreshed_through = Some(self.cycle().after_full_import(now).to_string());
        } else if let Some(through) = &record.refreshed_through {
            state.refreshed_through = Some(through.clone());
        }
        state.to_document()
    }

    /// The patches a run at `now` sends besides its files: none for a full import (it sends everything afresh).
    async fn plan_lifecycle(
        &self,
        state: &SyncState,
        plan: &Plan,
        now: Timestamp,
        converter: &Converter,
    ) -> Result<Lifecycle, SourceError> {
        if matches!(plan, Plan::Full { .. }) {
            return Ok(Lifecycle::default());
        }
        let cycle = self.cycle();
        let from = state.refreshed_through().unwrap_or_else(|| cycle.first_window(now));
        let refresh = if self.refresh_max_patches > 0 && cycle.worth_refreshing(from.unix_millis(), now.unix_millis()) {
            let window = (from, now);
            Some(plan_refresh(&self.source, plan.head(), converter, cycle, window, self.refresh_max_patches).await?)
        } else {
            None
        };
        Ok(Lifecycle { reinstate: state.reinstate.clone(), refresh })
    }

    /// The run recorded in the state, when it is one this connector can carry on.
    fn run_in_flight(&self, state: &SyncState) -> Option<RunRecord> {
        let record = state.run.clone()?;
        if record.source != self.source.describe() {
            tracing::warn!(recorded = %record.source, "the run in flight read another source: starting over");
            return None;
        }
        Some(record)
    }

    /// Reports a few skipped lines on the work, so that they show in the platform's view of the run.
    async fn report_skipped(&self, work: &opencti_connector::Work, report: &JobReport) {
        let notes: Vec<_> = report.skip_notes.iter().take(REPORTED_SKIPS).collect();
        if notes.is_empty() {
            return;
        }
        if let Err(error) = work.add_expectations(notes.len() as u64).await {
            tracing::warn!(%error, "cannot report skipped lines on the work");
            return;
        }
        for note in notes {
            let error = format!("trail line skipped ({}): {}", note.reason, note.text);
            if let Err(error) = work.report_error(&error, &format!("{}:{}", note.file, note.line)).await {
                tracing::warn!(%error, "cannot report a skipped line on the work");
            }
        }
    }
}

/// The jobs of one run, as its leader cuts, counts and publishes them.
struct Publishing<'a, 'r> {
    connector: &'a MaltrailConnector,
    run: &'a RunContext<'r>,
    jobs: &'a mut JobRun,
    record: RunRecord,
    state: SyncState,
    times: Times,
    /// The record of the run read from the state (a leader taking over): jobs below `published` are out, the one at
    /// it is published again without announcing its expectations.
    resumed: Option<u64>,
    next: u64,
    /// Whether the platform's state was reset during the run (then nothing more is recorded).
    reset: bool,
}

impl Publishing<'_, '_> {
    /// Saves the run's progress in the state (one ping).
    async fn record(&mut self) {
        if self.reset {
            return;
        }
        let mut state = self.state.clone();
        state.run = Some(self.record.clone());
        if !self.run.commit_state(state.to_document()).await {
            tracing::warn!("the connector state was reset during the run: its progress is no longer recorded");
            self.reset = true;
        }
    }

    /// Publishes the next job, holding `files`, unless it went out before a takeover.
    async fn job(&mut self, files: Vec<JobFile>) -> Result<(), RunError> {
        let id = self.next;
        self.next += 1;
        let published = self.resumed.unwrap_or(0);
        if id < published {
            return Ok(());
        }
        let label = JobMessage::label(&files);
        let connector = self.connector;
        let split = self.run.runtime().split_settings();
        let again = self.resumed == Some(id);
        let count = if again {
            0
        } else {
            // The intent first: a leader dying after announcing this job's expectations and before the next record
            // leaves a successor that publishes it again without announcing them twice.
            self.record.published = id;
            self.record().await;
            expectations(&connector.convert, split, &files, self.times, &connector.source).await?
        };
        let files = files.into_iter().map(|file| file.by_reference(connector.job_inline_bytes)).collect();
        let message =
            JobMessage { convert: connector.convert.clone(), split, times: self.times, expectations: count, files };
        let payload = serde_json::to_vec(&message).map_err(|e| RunError::Job(format!("cannot encode a job: {e}")))?;
        if again {
            tracing::info!(job = id, label, "publishing again the job a previous leader may have published");
            self.jobs.publish(id, &label, payload).await?;
        } else {
            self.jobs.submit(id, &label, count, payload).await?;
        }
        Ok(())
    }

    /// Every job is out: records their number.
    async fn finish(&mut self) -> u64 {
        self.record.published = self.next;
        self.record.jobs = Some(self.next);
        self.record().await;
        self.next
    }
}

impl MaltrailConnector {
    /// Cuts the run into jobs and publishes them: its files, then its patches. Returns the number of jobs.
    async fn publish_jobs(
        &self,
        publishing: &mut Publishing<'_, '_>,
        plan: &Plan,
        lifecycle: &Lifecycle,
    ) -> Result<u64, RunError> {
        match plan {
            Plan::UpToDate { .. } => {}
            Plan::Full { head } => {
                let mut files = self.source.files(head);
                let (mut group, mut bytes, mut seen) = (Vec::new(), 0, 0u64);
                while let Some(item) = files.recv().await {
                    if publishing.run.shutdown().is_triggered() {
                        return Err(RunError::Interrupted);
                    }
                    let file = item?;
                    if crate::trails::Category::of_path(&file.path).is_none() {
                        continue;
                    }
                    seen += 1;
                    let size = file.content.len();
                    let whole = JobFile::Whole { path: file.path, content: Content::Inline(file.content) };
                    if size > self.job_inline_bytes {
                        // A file travelling by reference goes alone: were its fetch to fail, it holds back no other.
                        publishing.job(vec![whole]).await?;
                        continue;
                    }
                    bytes += size;
                    group.push(whole);
                    if bytes >= JOB_BYTES || group.len() >= JOB_FILES {
                        publishing.job(std::mem::take(&mut group)).await?;
                        bytes = 0;
                    }
                }
                if !group.is_empty() {
                    publishing.job(group).await?;
                }
                if seen == 0 {
                    return Err(RunError::NoTrailFiles { origin: self.source.describe(), revision: head.id.clone() });
                }
            }
            Plan::Update { plan, .. } => {
                for file in &plan.files {
                    if publishing.run.shutdown().is_triggered() {
                        return Err(RunError::Interrupted);
                    }
                    publishing.job(vec![JobFile::of_plan(file)]).await?;
                }
            }
        }
        let refresh = lifecycle.refresh.as_ref().map_or(&[][..], |refresh| &refresh.ids[..]);
        for (edit, ids) in [(Edit::Reinstate, &lifecycle.reinstate[..]), (Edit::Refresh, refresh)] {
            for slice in ids.chunks(JOB_PATCHES) {
                publishing.job(vec![JobFile::Patches { edit, ids: slice.to_vec() }]).await?;
            }
        }
        Ok(publishing.finish().await)
    }

    /// The plan of a run the state records (a leader carrying it on): the same source, revisions, state and start
    /// give the same jobs.
    async fn replan(&self, record: &RunRecord, state: &SyncState) -> Result<(Plan, Lifecycle), RunError> {
        let head = Revision {
            id: record.target.clone(),
            date: record.target_date.as_deref().and_then(|t| Timestamp::parse_rfc3339(t).ok()),
        };
        let converter = Converter::new(self.convert.clone());
        let plan = match &record.base {
            None => Plan::Full { head },
            Some(base) if *base == head.id => Plan::UpToDate { head },
            Some(base) => {
                let changes = self.source.changes(base, &head).await?;
                let plan = crate::plan::plan_incremental(&self.source, &head, changes, &converter).await?;
                Plan::Update { base: base.clone(), head, plan }
            }
        };
        let started = Timestamp::parse_rfc3339(&record.started).unwrap_or_else(|_| Timestamp::now());
        let lifecycle = self.plan_lifecycle(state, &plan, started, &converter).await?;
        Ok((plan, lifecycle))
    }

    /// Waits until every job is done or parked, logging progress.
    async fn wait_for_jobs<'t>(
        &self,
        jobs: &'t mut JobRun,
        total: u64,
        run: &RunContext<'_>,
    ) -> Result<&'t Tally, RunError> {
        let started = Instant::now();
        let mut last = Instant::now();
        let tally = jobs
            .wait(total, run.shutdown(), |tally| {
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    let messages: u64 = tally.done.values().filter_map(|r| r["messages"].as_u64()).sum();
                    let rate = messages as f64 / started.elapsed().as_secs_f64().max(0.001);
                    tracing::info!(
                        jobs_done = tally.done.len(),
                        jobs = total,
                        messages,
                        messages_per_second = rate.round() as u64,
                        "progress"
                    );
                }
            })
            .await
            .map_err(|error| match error {
                JobRunError::Interrupted => RunError::Interrupted,
                other => other.into(),
            })?;
        Ok(tally)
    }

    /// The run, once its work and record exist: publishes what is not out yet, waits, then closes.
    async fn carry(
        &self,
        run: &RunContext<'_>,
        state: SyncState,
        record: RunRecord,
        plan: Option<(Plan, Lifecycle)>,
        resumed: Option<u64>,
    ) -> Result<RunOutcome, BoxError> {
        let runtime = run.runtime();
        let work = runtime.work_of(&record.work_id);
        run.label(Some(work.id()), Some(&record.target));
        let mut jobs = run.job_run(&record.id, &work).await?;
        let started = Timestamp::parse_rfc3339(&record.started).unwrap_or_else(|_| run.started());
        let head_date = record.target_date.as_deref().and_then(|t| Timestamp::parse_rfc3339(t).ok());
        let times = match &record.base {
            None => Times::new(started, started, self.convert.validity),
            Some(_) => Times::new(head_date.unwrap_or(started), started, self.convert.validity),
        };
        let total = match record.jobs {
            Some(total) => total,
            None => {
                let (plan, lifecycle) = match plan {
                    Some(plan) => plan,
                    None => self.replan(&record, &state).await?,
                };
                let mut publishing = Publishing {
                    connector: self,
                    run,
                    jobs: &mut jobs,
                    record: record.clone(),
                    state: state.clone(),
                    times,
                    resumed,
                    next: 0,
                    reset: false,
                };
                match self.publish_jobs(&mut publishing, &plan, &lifecycle).await {
                    Ok(total) => total,
                    Err(RunError::Interrupted) => {
                        jobs.abandon().await;
                        return Ok(RunOutcome::Interrupted);
                    }
                    Err(error) => {
                        jobs.abandon().await;
                        runtime.work_for_ending(&work).finish(&format!("failed: {error}"), true).await;
                        self.drop_record(run, &state).await;
                        return Err(error.into());
                    }
                }
            }
        };
        tracing::info!(jobs = total, "every job is out: waiting for them to be done");
        let tally = match self.wait_for_jobs(&mut jobs, total, run).await {
            Ok(tally) => tally.clone(),
            Err(RunError::Interrupted) => {
                // The run stays recorded: the next leader (or this process, restarted) carries it on.
                jobs.abandon().await;
                return Ok(RunOutcome::Interrupted);
            }
            Err(error) => {
                jobs.abandon().await;
                return Err(error.into());
            }
        };
        jobs.close().await;
        let mut report = JobReport::default();
        for done in tally.done.values() {
            if let Ok(job) = serde_json::from_value::<JobReport>(done.clone()) {
                report.merge(&job);
            }
        }
        let counters = counters();
        counters.trails_sent.inc_by(report.trails_sent);
        counters.trails_revoked.inc_by(report.trails_revoked);
        counters.lines_skipped.inc_by(report.skipped);
        counters.messages_published.inc_by(report.messages);
        let work = runtime.work_for_ending(&work);
        self.report_skipped(&work, &report).await;
        let summary = format!(
            "{} jobs, {} files, {} trails sent, {} revoked, {} relationships revoked, {} un-revoked, {} refreshed, \
             {} patches, {} lines skipped, {} messages, {} bytes{}",
            total,
            report.files,
            report.trails_sent,
            report.trails_revoked,
            report.relations_revoked,
            report.trails_reinstated,
            report.trails_refreshed,
            report.patches,
            report.skipped,
            report.messages,
            report.bytes,
            if tally.repeated > 0 { format!(" ({} jobs done twice)", tally.repeated) } else { String::new() },
        );
        if !tally.parked.is_empty() {
            let parked: Vec<String> =
                tally.parked.values().map(|(label, reason)| format!("{label}: {reason}")).collect();
            let error = RunError::Parked(parked);
            work.finish(&format!("{summary}; {error}"), true).await;
            self.drop_record(run, &state).await;
            return Err(error.into());
        }
        let added = if record.base.as_deref().is_some_and(|base| base != record.target) {
            std::mem::take(&mut report.added)
        } else {
            Vec::new()
        };
        let advanced = run.commit_state(self.synced(&state, &record, started, added)).await;
        let mut message = summary;
        if !advanced {
            message.push_str(" (state reset during the run: the next run starts over)");
        }
        work.finish(&message, false).await;
        tracing::info!(summary = %message, "run done");
        Ok(RunOutcome::Success)
    }

    /// Forgets the run in flight (it failed): the next run plans again from the synced revision.
    async fn drop_record(&self, run: &RunContext<'_>, state: &SyncState) {
        let mut state = state.clone();
        state.run = None;
        run.commit_state(state.to_document()).await;
    }
}

impl Job for MaltrailConnector {
    async fn run(&self, run: &RunContext<'_>) -> Result<RunOutcome, BoxError> {
        let runtime = run.runtime();
        let state = SyncState::from_document(run.state());
        if let Some(record) = self.run_in_flight(&state) {
            tracing::info!(run = %record.id, work_id = %record.work_id, published = record.published, jobs = ?record.jobs, "carrying on the run in flight");
            let resumed = Some(record.published);
            return self.carry(run, state, record, None, resumed).await;
        }
        // Planning may wait out a GitHub rate limit: shutdown interrupts it at once.
        let converter = Converter::new(self.convert.clone());
        let planned = async {
            let plan = plan(&self.source, &state, &converter).await?;
            let lifecycle = self.plan_lifecycle(&state, &plan, run.started(), &converter).await?;
            Ok::<_, SourceError>((plan, lifecycle))
        };
        let (plan, lifecycle) = tokio::select! {
            planned = planned => planned.map_err(|error| -> BoxError {
                format!("cannot plan the run: {error}").into()
            })?,
            () = run.shutdown().triggered() => return Ok(RunOutcome::Interrupted),
        };
        let head = plan.head().clone();
        run.label(None, Some(&head.id));
        let base = match &plan {
            Plan::Update { base, .. } => Some(base.clone()),
            Plan::UpToDate { head } => Some(head.id.clone()),
            Plan::Full { .. } => None,
        };
        let record = RunRecord {
            id: uuid::Uuid::new_v4().to_string(),
            work_id: String::new(),
            source: self.source.describe(),
            base,
            target: head.id.clone(),
            target_date: head.date.map(|date| date.to_string()),
            started: run.started().to_string(),
            refreshed_through: lifecycle.refresh.as_ref().map(|refresh| refresh.through.to_string()),
            published: 0,
            jobs: None,
        };
        if matches!(plan, Plan::UpToDate { .. }) && lifecycle.is_empty() {
            run.commit_state(self.synced(&state, &record, run.started(), Vec::new())).await;
            return Ok(RunOutcome::UpToDate);
        }
        if run.shutdown().is_triggered() {
            return Ok(RunOutcome::Interrupted);
        }
        let name = match &plan {
            Plan::UpToDate { head } => {
                format!("Maltrail refresh {} ({} indicators)", crate::plan::short(&head.id), lifecycle.patches())
            }
            plan => plan.work_name(&self.source.describe()),
        };
        let work = runtime.open_work(&name).await?;
        let record = RunRecord { work_id: work.id().to_owned(), ..record };
        self.carry(run, state, record, Some((plan, lifecycle)), None).await
    }

    fn last_run(&self, state: &StateDocument) -> Option<Timestamp> {
        SyncState::from_document(state).last_run_time()
    }
}

impl Worker for MaltrailConnector {
    async fn work(
        &self,
        job: &opencti_connector::jobs::Job,
        context: &WorkContext<'_>,
    ) -> Result<serde_json::Value, BoxError> {
        let message: JobMessage = serde_json::from_slice(&job.payload)?;
        let converter = Converter::new(message.convert.clone());
        let Some(mut sender) = context.sender(message.split).await? else {
            return Err("interrupted by shutdown".into());
        };
        let shutdown = context.runtime().shutdown().clone();
        let laid =
            lay_out(&mut sender, &converter, &message.files, message.times, &self.source, || shutdown.is_triggered())
                .await;
        let report = match laid {
            Ok(report) => report,
            Err(error) => {
                opencti_connector::close(sender).await;
                return Err(error.into());
            }
        };
        if let Err(error) = sender.confirm_all().await {
            opencti_connector::close(sender).await;
            return Err(error.into());
        }
        opencti_connector::close(sender).await;
        if report.expectations != message.expectations && message.split.mode == SplitMode::Client {
            tracing::error!(
                announced = message.expectations,
                sent = report.expectations,
                "the job sent another number of messages than its leader announced: the work may not complete \
                 (are the leader and the workers of different versions?)"
            );
        }
        Ok(serde_json::to_value(&report)?)
    }
}

/// Runs the connector until shutdown (or after one run with run-and-terminate), in the role the settings give.
/// An authentication error or a failed run-and-terminate run ends it with an error; shutdown while the platform is
/// still unreachable ends it cleanly.
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
    tracing::info!(
        validity = %opencti_connector::settings::iso8601(config.convert.validity),
        refresh_max_patches = config.maltrail.refresh_max_patches,
        "indicators are sent valid for MALTRAIL_VALIDITY and refreshed by patch while Maltrail lists them; a platform \
         with indicator decay on (OpenCTI's default) replaces their valid_until and revokes them by its own rule \
         unless a decay exclusion rule covers the author Maltrail (README: Indicator lifecycle and decay)"
    );
    let connector = Arc::new(MaltrailConnector::new(source, config.convert, &config.maltrail));
    let about = opencti_connector::About { slug: SLUG, version: env!("CARGO_PKG_VERSION") };
    let Some(runtime) = opencti_connector::Runtime::start_with(config.platform, about, shutdown, timings).await? else {
        return Ok(());
    };
    let result = runtime.serve(connector).await;
    runtime.stop().await;
    Ok(result?)
}
