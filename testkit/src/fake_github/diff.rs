//! File-level diffs between two trees as GitHub lists them: added, removed, modified, renamed, with line counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::model::{FakeRepo, FileEntry};

/// Above this many (removed × added) candidate pairs, renames are detected only when the content is identical.
const INEXACT_RENAME_PAIR_LIMIT: usize = 400;
/// Git's default rename threshold: at least half of the content kept.
const RENAME_SIMILARITY: f64 = 0.5;

/// GitHub's `status` of a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Added,
    Removed,
    Modified,
    Renamed,
}

impl FileStatus {
    /// The word GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
            Self::Renamed => "renamed",
        }
    }
}

/// One changed file between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub filename: String,
    /// The old path, for renames.
    pub previous_filename: Option<String>,
    pub status: FileStatus,
    pub old_sha: Option<String>,
    pub new_sha: Option<String>,
}

/// The changed files from `old` to `new`, sorted by (new) path. Renames are found as git finds them by default:
/// identical content always, similar content (half the bytes in common lines) when the candidates are few.
pub fn diff_files(
    repo: &FakeRepo,
    old: &BTreeMap<String, FileEntry>,
    new: &BTreeMap<String, FileEntry>,
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    let mut removed: Vec<(&String, &FileEntry)> = Vec::new();
    for (path, before) in old {
        match new.get(path) {
            Some(after) if after.blob_sha != before.blob_sha => changes.push(FileChange {
                filename: path.clone(),
                previous_filename: None,
                status: FileStatus::Modified,
                old_sha: Some(before.blob_sha.clone()),
                new_sha: Some(after.blob_sha.clone()),
            }),
            Some(_) => {}
            None => removed.push((path, before)),
        }
    }
    let added: Vec<(&String, &FileEntry)> = new.iter().filter(|(path, _)| !old.contains_key(*path)).collect();

    // Exact renames: same blob under a new path.
    let mut renames: Vec<(usize, usize)> = Vec::new();
    let mut removed_by_sha: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, entry)) in removed.iter().enumerate().rev() {
        removed_by_sha.entry(entry.blob_sha.as_str()).or_default().push(i);
    }
    for (j, (_, entry)) in added.iter().enumerate() {
        if let Some(i) = removed_by_sha.get_mut(entry.blob_sha.as_str()).and_then(Vec::pop) {
            renames.push((i, j));
        }
    }
    // Similar-content renames, best pairs first.
    let exact_from: HashSet<usize> = renames.iter().map(|r| r.0).collect();
    let exact_to: HashSet<usize> = renames.iter().map(|r| r.1).collect();
    let free_removed: Vec<usize> = (0..removed.len()).filter(|i| !exact_from.contains(i)).collect();
    let free_added: Vec<usize> = (0..added.len()).filter(|j| !exact_to.contains(j)).collect();
    if !free_removed.is_empty() && free_removed.len() * free_added.len() <= INEXACT_RENAME_PAIR_LIMIT {
        let content = |entry: &FileEntry| repo.blob(&entry.blob_sha).cloned().unwrap_or_else(|| Arc::from(&[][..]));
        let mut scored = Vec::new();
        for &i in &free_removed {
            let before = content(removed[i].1);
            for &j in &free_added {
                let score = similarity(&before, &content(added[j].1));
                if score >= RENAME_SIMILARITY {
                    scored.push((score, i, j));
                }
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, i, j) in scored {
            if !renames.iter().any(|r| r.0 == i || r.1 == j) {
                renames.push((i, j));
            }
        }
    }

    for &(i, j) in &renames {
        let (from, before) = removed[i];
        let (to, after) = added[j];
        changes.push(FileChange {
            filename: to.clone(),
            previous_filename: Some(from.clone()),
            status: FileStatus::Renamed,
            old_sha: Some(before.blob_sha.clone()),
            new_sha: Some(after.blob_sha.clone()),
        });
    }
    let renamed_from: HashSet<usize> = renames.iter().map(|r| r.0).collect();
    let renamed_to: HashSet<usize> = renames.iter().map(|r| r.1).collect();
    for (i, (path, entry)) in removed.iter().enumerate() {
        if !renamed_from.contains(&i) {
            changes.push(FileChange {
                filename: (*path).clone(),
                previous_filename: None,
                status: FileStatus::Removed,
                old_sha: Some(entry.blob_sha.clone()),
                new_sha: None,
            });
        }
    }
    for (j, (path, entry)) in added.iter().enumerate() {
        if !renamed_to.contains(&j) {
            changes.push(FileChange {
                filename: (*path).clone(),
                previous_filename: None,
                status: FileStatus::Added,
                old_sha: None,
                new_sha: Some(entry.blob_sha.clone()),
            });
        }
    }
    changes.sort_by(|a, b| a.filename.cmp(&b.filename));
    changes
}

/// Lines added and removed from `old` to `new`, counted as multisets of lines (equal to a line diff's counts
/// whenever lines are only added or removed, which is how trail files change; a reordering counts nothing).
pub fn line_stats(old: Option<&[u8]>, new: Option<&[u8]>) -> (usize, usize) {
    let mut remaining: HashMap<&[u8], usize> = HashMap::new();
    for line in lines(old.unwrap_or_default()) {
        *remaining.entry(line).or_default() += 1;
    }
    let mut additions = 0;
    for line in lines(new.unwrap_or_default()) {
        match remaining.get_mut(line) {
            Some(count) if *count > 0 => *count -= 1,
            _ => additions += 1,
        }
    }
    (additions, remaining.values().sum())
}

/// Share of the larger file's bytes found in lines both files have.
fn similarity(old: &[u8], new: &[u8]) -> f64 {
    let larger = old.len().max(new.len());
    if larger == 0 {
        return 1.0;
    }
    let mut remaining: HashMap<&[u8], usize> = HashMap::new();
    for line in lines(old) {
        *remaining.entry(line).or_default() += 1;
    }
    let mut common = 0;
    for line in lines(new) {
        if let Some(count) = remaining.get_mut(line).filter(|c| **c > 0) {
            *count -= 1;
            common += line.len() + 1;
        }
    }
    common as f64 / larger as f64
}

fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    content.split(|&b| b == b'\n').filter(move |_| !content.is_empty())
}
