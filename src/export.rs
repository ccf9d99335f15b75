//! The offline `export` command: a full import from a source (a local trails folder, or GitHub as the connector
//! reads it) into a directory of pycti `DIRECTORY_BUNDLE` files, one per trail file, with a progress line on a
//! terminal and a summary at the end. Needs no OpenCTI.
//!
//! It is the connector's own pipeline with a directory for the only output: files come from the source one by
//! one, several tasks parse, convert and write them at once, and each file is streamed to disk object by object,
//! so memory stays bounded by the largest trail file, not the snapshot.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use opencti_connector::send::{DirectoryOutput, Sender, SplitSettings};
use proto_stix::Timestamp;
use tokio::sync::Mutex;

use crate::convert::{Converter, Times, file_trails};
use crate::pipeline::{FileSend, Laid, send_file};
use crate::source::{FileStream, Source};
use crate::stats::{Report, Stats};
use crate::trails::parse_file;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Tasks converting files at once.
    pub jobs: usize,
    /// Print a progress line to stderr (when it is a terminal).
    pub progress: bool,
    /// `valid_from` and `modified` of everything exported.
    pub now: Timestamp,
}

/// Counters the progress line reads while the tasks run.
#[derive(Default)]
struct Progress {
    files: AtomicUsize,
    trails: AtomicU64,
}

/// Exports every trail file of the source's head revision to `output`. Returns the summary.
pub async fn export(
    source: &Source,
    converter: Arc<Converter>,
    output: Arc<DirectoryOutput>,
    options: &ExportOptions,
) -> anyhow::Result<Report> {
    let head = source.head().await.with_context(|| format!("cannot read {}", source.describe()))?;
    let total = source.file_count(&head).await.ok();
    let files: Arc<Mutex<FileStream>> = Arc::new(Mutex::new(source.files(&head)));
    let times = Times::new(options.now, options.now, converter.options().validity);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.jobs.clamp(1, 64))
        .map(|_| {
            let (files, converter, output, progress) =
                (files.clone(), converter.clone(), output.clone(), progress.clone());
            tokio::spawn(async move { export_files(files, &converter, output, times, &progress).await })
        })
        .collect();
    let show = options.progress && std::io::stderr().is_terminal();
    let printer = show.then(|| {
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                print_progress(&progress, total, started);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let mut report = Report::default();
    let mut failure = None;
    for task in tasks {
        match task.await.context("an export task panicked")? {
            Ok((stats, laid)) => {
                report.stats.merge(stats);
                report.laid.merge(laid);
            }
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    if let Some(printer) = printer {
        printer.abort();
        print_progress(&progress, total, started);
        eprintln!();
    }
    if let Some(error) = failure {
        return Err(error);
    }
    anyhow::ensure!(report.stats.files > 0, "{} holds no trail file (*.txt of a known category)", source.describe());
    Ok(report)
}

/// One task: takes files from the shared stream until it ends, each laid out into the directory.
async fn export_files(
    files: Arc<Mutex<FileStream>>,
    converter: &Converter,
    output: Arc<DirectoryOutput>,
    times: Times,
    progress: &Progress,
) -> anyhow::Result<(Stats, Laid)> {
    let mut sender = Sender::new(None, Some(output.clone()), SplitSettings::CLIENT);
    let (mut stats, mut laid) = (Stats::default(), Laid::default());
    loop {
        let item = files.lock().await.recv().await;
        let Some(item) = item else { break };
        let content = item?;
        let Some(file) = parse_file(&content.path, &content.content) else {
            tracing::warn!(file = %content.path, "not a trail file of a known category: skipped");
            continue;
        };
        file.log_skipped();
        if !converter.wants(file.category) {
            continue;
        }
        stats.count_file(&file);
        let trails = file_trails(&file);
        send_file(&mut sender, converter, &FileSend::all(&file, &trails), times, &mut laid)
            .await
            .with_context(|| format!("cannot write the bundle of {} to {}", file.path, output.path().display()))?;
        progress.trails.fetch_add(trails.len() as u64, Ordering::Relaxed);
        progress.files.fetch_add(1, Ordering::Relaxed);
        // Let the other tasks (and the progress line) run between two files.
        tokio::task::yield_now().await;
    }
    Ok((stats, laid))
}

fn print_progress(progress: &Progress, total: Option<usize>, started: Instant) {
    let files = progress.files.load(Ordering::Relaxed);
    let trails = progress.trails.load(Ordering::Relaxed);
    let rate = trails as f64 / started.elapsed().as_secs_f64().max(0.001);
    let total = total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    eprint!("\rfiles {files}/{total}  trails {trails}  {rate:.0} trails/s   ");
    let _ = std::io::stderr().flush();
}
