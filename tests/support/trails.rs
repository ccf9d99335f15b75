//! Trail sets for end-to-end tests: a few snapshot files copied into a temp folder, and the indicator ids a folder
//! of trail files must give.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::Path;

use maltrail_connector::convert::file_trails;
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::{Category, parse_file};
use tempfile::TempDir;

use super::snapshot::snapshot_dir;

/// Copies `count` trail files of each `(folder, count, sizes)` of the snapshot, the first by name whose size is in
/// `sizes` bytes, into a fresh directory laid out like `trails/static`.
pub fn trail_subset(picks: &[(&str, usize, RangeInclusive<u64>)]) -> TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for (folder, count, sizes) in picks {
        let source = snapshot_dir().join(folder);
        let mut names: Vec<_> = std::fs::read_dir(&source)
            .expect("snapshot folder")
            .map(|entry| entry.expect("snapshot entry"))
            .filter(|entry| sizes.contains(&entry.metadata().expect("metadata").len()))
            .map(|entry| entry.file_name())
            .collect();
        names.sort();
        assert!(names.len() >= *count, "only {} files of {sizes:?} bytes in {folder}/", names.len());
        std::fs::create_dir_all(root.path().join(folder)).expect("create folder");
        for name in &names[..*count] {
            std::fs::copy(source.join(name), root.path().join(folder).join(name)).expect("copy trail file");
        }
    }
    root
}

/// About 30 small files (malware, malicious, suspicious): a few thousand messages, a run of well under a second.
pub fn small_trail_set() -> TempDir {
    trail_subset(&[("malware", 20, 800..=2_500), ("malicious", 5, 800..=3_000), ("suspicious", 5, 200..=3_000)])
}

/// The indicator ids the trail files under `root` give with the default categories (mass scanners left out).
pub fn expected_indicator_ids(root: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    for path in list_trail_files(root).expect("listing") {
        let content = read_trail_file(root, &path).expect("readable");
        let file = parse_file(&path, &content).expect("trail file");
        if file.category != Category::MassScanner {
            ids.extend(file_trails(&file).into_iter().map(|t| t.id.to_string()));
        }
    }
    ids
}
