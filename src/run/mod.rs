//! One run: import every trail file of a revision (first run, or a source that cannot be compared), or only what
//! changed since the last synced revision, revoking what Maltrail removed.
//!
//! A run delivers bundles (one per trail file) through a [`Delivery`]; it neither opens the work nor advances the
//! state: the service does both around it, and only once every message is confirmed.

mod delivery;
mod incremental;

use proto_stix::{StixObject, Timestamp};

pub use delivery::{Delivery, DeliveryCounts, DeliveryError, QueueTarget};
pub use incremental::{FilePlan, IncrementalPlan, plan_incremental};

use crate::convert::{Converter, Times, Trail, file_trails};
use crate::shutdown::Shutdown;
use crate::source::{Revision, Source, SourceError};
use crate::stats::Stats;
use crate::trails::{TrailFile, parse_file};

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading the trails failed: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
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
    /// Indicators sent active.
    pub trails_sent: u64,
    /// Indicators sent revoked.
    pub trails_revoked: u64,
    /// `indicates` relationships sent revoked (a trail that left a family but stays elsewhere).
    pub relations_revoked: u64,
    /// Lines skipped, with reasons, in the files read.
    pub stats: Stats,
    pub delivered: DeliveryCounts,
}

impl RunSummary {
    /// One line for the work's message and the logs.
    pub fn describe(&self) -> String {
        format!(
            "{} files, {} trails sent, {} revoked, {} relationships revoked, {} lines skipped, {} messages",
            self.files,
            self.trails_sent,
            self.trails_revoked,
            self.relations_revoked,
            self.stats.total_skipped(),
            self.delivered.messages,
        )
    }
}

/// Everything a run works with.
pub struct RunContext<'c, 'r> {
    pub source: &'c Source,
    pub converter: &'c Converter,
    pub delivery: Delivery<'r>,
    pub shutdown: &'c Shutdown,
}

/// One file's trails to send: active ones, revoked ones (from the file's previous version), and `indicates`
/// relationships to revoke (pattern, family).
struct FileSend<'a> {
    file: &'a TrailFile,
    active: Vec<&'a Trail<'a>>,
    revoked: Vec<(&'a TrailFile, &'a Trail<'a>)>,
    revoked_relations: Vec<(String, String)>,
}

impl RunContext<'_, '_> {
    fn check_shutdown(&self) -> Result<(), RunError> {
        if self.shutdown.is_triggered() { Err(RunError::Interrupted) } else { Ok(()) }
    }

    /// Sends every trail file of `head`, each as one bundle. `valid_from` is the run's time: when a trail entered
    /// Maltrail is not known from one snapshot.
    pub async fn full_import(mut self, head: &Revision, now: Timestamp) -> Result<RunSummary, RunError> {
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
            self.check_shutdown()?;
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
            let send = FileSend {
                file: &file,
                active: trails.iter().collect(),
                revoked: Vec::new(),
                revoked_relations: Vec::new(),
            };
            self.send_file(&send, times, &mut summary).await?;
            progress.report(&summary, self.delivery.counts().messages);
        }
        if summary.files == 0 {
            return Err(RunError::NoTrailFiles { origin: self.source.describe(), revision: head.id.clone() });
        }
        self.delivery.confirm_all().await?;
        summary.delivered = self.delivery.counts();
        Ok(summary)
    }

    /// Sends what changed between the synced revision and `head`: added trails (with the head commit's date as
    /// `valid_from`), removed trails revoked, `indicates` revoked where a trail left a family.
    pub async fn incremental(
        mut self,
        plan: &IncrementalPlan,
        head: &Revision,
        now: Timestamp,
    ) -> Result<RunSummary, RunError> {
        let times = Times { valid_from: head.date.unwrap_or(now), now };
        let mut summary = RunSummary::default();
        for file_plan in &plan.files {
            self.check_shutdown()?;
            summary.files += 1;
            if let Some(new) = &file_plan.new {
                summary.stats.count_file(new);
            }
            let new_trails = file_plan.new.as_ref().map(file_trails).unwrap_or_default();
            let old_trails = file_plan.old.as_ref().map(file_trails).unwrap_or_default();
            let Some(send) = file_plan.send(&new_trails, &old_trails) else { continue };
            self.send_file(&send, times, &mut summary).await?;
        }
        self.delivery.confirm_all().await?;
        summary.delivered = self.delivery.counts();
        Ok(summary)
    }

    async fn send_file(&mut self, send: &FileSend<'_>, times: Times, summary: &mut RunSummary) -> Result<(), RunError> {
        if send.active.is_empty() && send.revoked.is_empty() && send.revoked_relations.is_empty() {
            return Ok(());
        }
        let mut bundle = self.delivery.open(&send.file.path).map_err(RunError::Delivery)?;
        for object in self.converter.shared_objects() {
            bundle.header(&object)?;
        }
        let file_converter = self.converter.file(send.file, times);
        if !send.active.is_empty() {
            if let Some(family) = file_converter.header() {
                bundle.header(&family)?;
            }
        }
        for trail in &send.active {
            let mut objects: Vec<StixObject<'_>> = Vec::with_capacity(4);
            file_converter.trail_objects(trail, false, &mut |object| objects.push(object));
            bundle.group(objects)?;
            summary.trails_sent += 1;
            self.delivery.send_ready(&mut bundle, false).await?;
        }
        for (old_file, trail) in &send.revoked {
            let old_converter = self.converter.file(old_file, times);
            let mut objects: Vec<StixObject<'_>> = Vec::with_capacity(1);
            old_converter.trail_objects(trail, true, &mut |object| objects.push(object));
            bundle.group(objects)?;
            summary.trails_revoked += 1;
        }
        for (pattern, family) in &send.revoked_relations {
            bundle.group(vec![self.converter.revoked_indicates(pattern, family, times)])?;
            summary.relations_revoked += 1;
        }
        self.delivery.close(bundle).await?;
        Ok(())
    }
}

/// Progress lines of a long run: files done out of the total, messages per second, time left.
struct Progress {
    total: Option<usize>,
    started: std::time::Instant,
    last: std::time::Instant,
}

/// How often a progress line is logged.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Progress {
    fn new(total: Option<usize>) -> Self {
        let now = std::time::Instant::now();
        Self { total, started: now, last: now }
    }

    fn report(&mut self, summary: &RunSummary, messages: u64) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = std::time::Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = messages as f64 / elapsed;
        let eta_seconds = self
            .total
            .filter(|total| summary.files > 0 && (summary.files as usize) < *total)
            .map(|total| (elapsed / summary.files as f64 * (total as f64 - summary.files as f64)).round() as u64);
        tracing::info!(
            files = summary.files,
            total_files = self.total,
            trails = summary.trails_sent,
            messages,
            messages_per_second = rate.round() as u64,
            eta_seconds,
            "progress"
        );
    }
}
