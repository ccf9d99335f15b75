//! Parse + convert throughput over the full Maltrail snapshot, on one core: trails/s, objects/s, JSON MB/s, and
//! the process's peak RSS. Run: `cargo bench --bench convert` (optionally `-- <trails dir>`).
//!
//! Each stage runs over every file in turn, reading it from disk (page cache) as the export does, so peak memory
//! reflects the streaming pipeline rather than a preloaded snapshot.

use std::path::PathBuf;
use std::time::Instant;

use maltrail_connector::convert::{ConvertOptions, Converter, Times, file_trails};
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::parse_file;
use opencti_connector::send::Sequencer;
use proto_stix::{ObjectType, StixId, Timestamp};

fn snapshot_dir() -> PathBuf {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dir = arg.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/maltrail/trails/static"))
    });
    assert!(dir.is_dir(), "the Maltrail snapshot is not at {} (pass the trails folder as argument)", dir.display());
    dir
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Totals {
    /// Trails parsed (stage 0) or converted (stages 1 and 2: the imported categories only).
    trails: u64,
    objects: u64,
    bytes: u64,
}

/// One pass over the snapshot. `stage`: 0 = parse only, 1 = parse + convert + JSON, 2 = ... + pycti pieces.
fn pass(dir: &std::path::Path, files: &[String], converter: &Converter, stage: u8) -> Totals {
    let now = Timestamp::now();
    let times = Times::new(now, now, maltrail_connector::convert::DEFAULT_VALIDITY);
    let mut totals = Totals { trails: 0, objects: 0, bytes: 0 };
    let mut json = Vec::with_capacity(8192);
    for path in files {
        let content = read_trail_file(dir, path).expect("readable snapshot");
        let Some(file) = parse_file(path, &content) else {
            continue;
        };
        totals.trails += file.entries.len() as u64;
        if stage == 0 || !converter.wants(file.category) {
            continue;
        }
        let trails = file_trails(&file);
        let file_converter = converter.file(&file, times);
        let mut sequencer = Sequencer::new(StixId::random(ObjectType::Bundle));
        let mut emit = |object: proto_stix::StixObject<'_>| {
            totals.objects += 1;
            if stage == 1 {
                json.clear();
                object.write_json(&mut json);
                totals.bytes += json.len() as u64;
            } else if let Some(piece) = sequencer.piece(&object) {
                totals.bytes += piece.bundle.len() as u64;
            }
        };
        for object in converter.shared_objects() {
            emit(object);
        }
        if let Some(header) = file_converter.header() {
            emit(header);
        }
        for trail in &trails {
            file_converter.trail_objects(trail, false, &mut emit);
        }
    }
    totals
}

fn main() {
    let dir = snapshot_dir();
    let files = list_trail_files(&dir).expect("listable snapshot");
    let converter = Converter::new(ConvertOptions::default());
    println!("snapshot: {} ({} files), one thread", dir.display(), files.len());
    let _warm = pass(&dir, &files, &converter, 0);
    for (stage, name) in [(0, "parse"), (1, "parse+convert+json"), (2, "parse+convert+pieces")] {
        let started = Instant::now();
        let totals = pass(&dir, &files, &converter, stage);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:<22} {secs:>6.2} s  {:>9.0} trails/s  {:>9.0} objects/s  {:>7.1} MB/s out  ({} trails, {} objects, {:.0} MB)",
            totals.trails as f64 / secs,
            totals.objects as f64 / secs,
            totals.bytes as f64 / 1e6 / secs,
            totals.trails,
            totals.objects,
            totals.bytes as f64 / 1e6,
        );
    }
    println!("peak RSS: {:.0} MB", peak_rss_mb());
}
