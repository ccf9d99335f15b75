//! The offline `export` command: trail files from a directory to STIX bundle files in pycti's `DIRECTORY_BUNDLE`
//! shape, one file per trail file, with a progress line on a terminal and a summary at the end. Needs no OpenCTI.
//!
//! Files are spread over worker threads (each thread parses, converts and writes whole files), and each file is
//! streamed to disk object by object, so memory stays bounded by the largest trail file, not the snapshot.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto_stix::{StixObject, Timestamp};

use crate::convert::{Converter, Times, file_trails};
use crate::directory_output::{DirectoryBundle, DirectoryOutput};
use crate::source::directory::{list_trail_files, read_trail_file};
use crate::stats::Stats;
use crate::trails::parse_file;

/// What to export, where, and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub trails_dir: PathBuf,
    pub jobs: usize,
    /// Print a progress line to stderr (when it is a terminal).
    pub progress: bool,
    /// `valid_from` and `modified` of everything exported.
    pub now: Timestamp,
}

/// Counters the progress line reads while workers run.
#[derive(Default)]
struct Progress {
    files: AtomicUsize,
    trails: AtomicU64,
}

/// Exports every trail file under `options.trails_dir` to `output`. Returns the summary.
pub fn export(converter: &Converter, output: &DirectoryOutput, options: &ExportOptions) -> anyhow::Result<Stats> {
    let files = list_trail_files(&options.trails_dir)
        .with_context(|| format!("cannot list trail files in {}", options.trails_dir.display()))?;
    anyhow::ensure!(!files.is_empty(), "no trail files (*.txt) under {}", options.trails_dir.display());
    let times = Times { valid_from: options.now, now: options.now };
    let next = AtomicUsize::new(0);
    let progress = Progress::default();
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let jobs = options.jobs.clamp(1, 64);

    let total = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut stats = Stats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(index) else { break };
                        match export_file(converter, output, &options.trails_dir, path, times, &mut stats) {
                            Ok(trails) => {
                                progress.trails.fetch_add(trails, Ordering::Relaxed);
                                progress.files.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                stop.store(true, Ordering::Relaxed);
                                failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
                            }
                        }
                    }
                    stats
                })
            })
            .collect();
        let show = options.progress && std::io::stderr().is_terminal();
        while show && workers.iter().any(|w| !w.is_finished()) {
            print_progress(&progress, files.len(), started);
            std::thread::sleep(Duration::from_millis(250));
        }
        if show {
            print_progress(&progress, files.len(), started);
            eprintln!();
        }
        let mut total = Stats::default();
        for worker in workers {
            // A worker only panics on a bug; keep its panic rather than hiding it.
            total.merge(worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        total
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error);
    }
    Ok(total)
}

fn print_progress(progress: &Progress, total_files: usize, started: Instant) {
    let files = progress.files.load(Ordering::Relaxed);
    let trails = progress.trails.load(Ordering::Relaxed);
    let rate = trails as f64 / started.elapsed().as_secs_f64().max(0.001);
    eprint!("\rfiles {files}/{total_files}  trails {trails}  {rate:.0} trails/s   ");
    let _ = std::io::stderr().flush();
}

/// Parses, converts and writes one trail file. Returns the number of trails exported (0 for a file of a category
/// not imported or not a trail file).
fn export_file(
    converter: &Converter,
    output: &DirectoryOutput,
    root: &Path,
    path: &str,
    times: Times,
    stats: &mut Stats,
) -> anyhow::Result<u64> {
    let content = read_trail_file(root, path)?;
    let Some(file) = parse_file(path, &content) else {
        tracing::warn!(file = path, "not a trail file of a known category: skipped");
        return Ok(0);
    };
    file.log_skipped();
    if !converter.wants(file.category) {
        return Ok(0);
    }
    stats.count_file(&file);
    let mut bundle = output.begin(path).with_context(|| format!("cannot create a bundle file for {path}"))?;
    let push = |bundle: &mut DirectoryBundle, object: &StixObject<'_>, stats: &mut Stats| -> std::io::Result<()> {
        if bundle.push(object)? {
            stats.count_object(object);
        }
        Ok(())
    };
    let write_error = |e| anyhow::anyhow!("cannot write the bundle of {path} to {}: {e}", output.path().display());
    for object in converter.shared_objects() {
        push(&mut bundle, &object, stats).map_err(write_error)?;
    }
    let trails = file_trails(&file);
    let file_converter = converter.file(&file, times);
    if let Some(header) = file_converter.header() {
        push(&mut bundle, &header, stats).map_err(write_error)?;
    }
    let mut result = Ok(());
    for trail in &trails {
        file_converter.trail_objects(trail, false, &mut |object| {
            if result.is_ok() {
                result = push(&mut bundle, &object, stats);
            }
        });
    }
    result.map_err(write_error)?;
    bundle.finish().map_err(write_error)?;
    Ok(trails.len() as u64)
}
