//! The fake repository: git blobs, trees and commits held in memory, built from a snapshot or by test edits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::sha1::{from_hex, git_blob_sha, git_object_id, is_hex};

/// The Maltrail commit the shared snapshot was taken from.
pub const SNAPSHOT_COMMIT: &str = "8adace159e1e9418ca4dd1a4b07f84917c3b6155";
/// The date given to the snapshot commit.
pub const SNAPSHOT_DATE: &str = "2026-08-23T00:00:00Z";
/// The branch `add_commit` moves, and the default branch of the fake repository.
pub const DEFAULT_BRANCH: &str = "master";

const AUTHOR: &str = "Maltrail Fake <fake@example.invalid>";

/// One edit of [`FakeRepo::add_commit`].
#[derive(Debug, Clone)]
pub enum Change {
    /// Adds the file, or replaces its content.
    Put(String, Vec<u8>),
    /// Removes the file (it must exist).
    Delete(String),
    /// Moves a file (it must exist), keeping its content.
    Rename(String, String),
}

impl Change {
    /// `Change::Put` without the conversions.
    pub fn put(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self::Put(path.into(), content.into())
    }

    /// `Change::Delete` without the conversion.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::Delete(path.into())
    }

    /// `Change::Rename` without the conversions.
    pub fn rename(from: impl Into<String>, to: impl Into<String>) -> Self {
        Self::Rename(from.into(), to.into())
    }
}

/// A file of a commit's tree: its blob id and size (the content lives in the repository's blob store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub blob_sha: String,
    pub size: usize,
}

/// Blob or sub-tree, in a git tree object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Blob,
    Tree,
}

impl EntryKind {
    /// The mode as GitHub's trees API prints it.
    pub fn api_mode(self) -> &'static str {
        match self {
            Self::Blob => "100644",
            Self::Tree => "040000",
        }
    }

    /// `"blob"` or `"tree"`.
    pub fn git_type(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Tree => "tree",
        }
    }

    fn object_mode(self) -> &'static str {
        match self {
            Self::Blob => "100644",
            Self::Tree => "40000",
        }
    }
}

/// One entry of a git tree object (a name inside one directory).
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub name: String,
    pub kind: EntryKind,
    pub sha: String,
    /// Blob size in bytes (0 for trees).
    pub size: usize,
}

/// A commit: its id, root tree, date, message, parents and the flat file map of its tree.
#[derive(Debug, Clone)]
pub struct Commit {
    pub sha: String,
    pub tree_sha: String,
    /// RFC 3339, UTC (`2026-08-23T10:00:00Z`): author and committer date.
    pub date: String,
    pub message: String,
    pub parents: Vec<String>,
    /// Every file of the commit, by path from the repository root.
    pub files: Arc<BTreeMap<String, FileEntry>>,
}

impl Commit {
    /// Seconds since the epoch of [`Commit::date`].
    pub fn epoch_seconds(&self) -> i64 {
        parse_utc_date(&self.date).expect("commit dates are validated on creation")
    }
}

/// How a head relates to a base, as GitHub's compare API reports it.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// `"identical"`, `"ahead"`, `"behind"` or `"diverged"`.
    pub status: &'static str,
    pub base: String,
    pub head: String,
    pub merge_base: String,
    /// Commits reachable from head but not from base, oldest first.
    pub ahead: Vec<String>,
    pub behind_by: usize,
}

/// Why a comparison has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareError {
    UnknownRef(String),
    NoCommonAncestor,
}

/// An in-memory git repository: content-addressed blobs and trees, commits in creation order, refs.
#[derive(Debug, Clone)]
pub struct FakeRepo {
    owner: String,
    name: String,
    commits: Vec<Commit>,
    commit_index: HashMap<String, usize>,
    refs: BTreeMap<String, String>,
    blobs: HashMap<String, Arc<[u8]>>,
    trees: HashMap<String, Arc<Vec<TreeEntry>>>,
}

impl FakeRepo {
    /// An empty repository `owner/name` (no commits, no branch until the first [`FakeRepo::add_commit`]).
    pub fn new(owner_name: &str) -> Self {
        let (owner, name) =
            owner_name.split_once('/').unwrap_or_else(|| panic!("repository must be `owner/name`, got {owner_name:?}"));
        Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
            commits: Vec::new(),
            commit_index: HashMap::new(),
            refs: BTreeMap::new(),
            blobs: HashMap::new(),
            trees: HashMap::new(),
        }
    }

    /// A repository whose first commit ([`SNAPSHOT_COMMIT`], dated [`SNAPSHOT_DATE`]) holds every file under
    /// `local_dir` at `dir_prefix_in_repo/<relative path>`, plus a few files outside it (`LICENSE`, `README.md`,
    /// `core/settings.py`, `trails/feeds/__init__.py`) so that clients must filter by path. `master` points to it.
    pub fn from_snapshot(owner_name: &str, dir_prefix_in_repo: &str, local_dir: impl AsRef<Path>) -> io::Result<Self> {
        let local_dir = local_dir.as_ref();
        let prefix = dir_prefix_in_repo.trim_matches('/');
        let mut relative_paths = Vec::new();
        collect_files(local_dir, "", &mut relative_paths)?;
        if relative_paths.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no files under {}", local_dir.display())));
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::with_capacity(relative_paths.len() + 4);
        for relative in relative_paths {
            let content = std::fs::read(local_dir.join(&relative))?;
            let path = if prefix.is_empty() { relative } else { format!("{prefix}/{relative}") };
            files.push((path, content));
        }
        let repo_root =
            (0..prefix.split('/').filter(|c| !c.is_empty()).count()).try_fold(local_dir, |dir, _| dir.parent());
        let license = repo_root
            .and_then(|root| std::fs::read(root.join("LICENSE")).ok())
            .unwrap_or_else(|| FALLBACK_LICENSE.as_bytes().to_vec());
        files.push(("LICENSE".to_owned(), license));
        for (path, content) in EXTRA_FILES {
            files.push(((*path).to_owned(), content.as_bytes().to_vec()));
        }

        let mut repo = Self::new(owner_name);
        let hashed = hash_blobs_in_parallel(files);
        let mut tree = BTreeMap::new();
        for (path, sha, content) in hashed {
            let size = content.len();
            repo.blobs.entry(sha.clone()).or_insert_with(|| Arc::from(content));
            tree.insert(path, FileEntry { blob_sha: sha, size });
        }
        let message = format!("Snapshot of {owner_name} at {SNAPSHOT_COMMIT}");
        repo.push_commit(Some(SNAPSHOT_COMMIT), Vec::new(), &message, SNAPSHOT_DATE, tree);
        repo.refs.insert(DEFAULT_BRANCH.to_owned(), SNAPSHOT_COMMIT.to_owned());
        Ok(repo)
    }

    /// `owner`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Creates a commit on top of `master` (or a root commit in an empty repository) from its tree with `changes`
    /// applied in order, moves `master` to it, and returns its sha. `date` is RFC 3339 UTC (`2026-08-23T10:00:00Z`).
    /// Panics on an invalid date, a delete or rename of a missing file, or a path that clashes with a directory.
    pub fn add_commit(&mut self, message: &str, date: &str, changes: impl IntoIterator<Item = Change>) -> String {
        let parent = self.refs.get(DEFAULT_BRANCH).cloned();
        let sha = self.commit_with_parent(parent.as_deref(), message, date, changes);
        self.refs.insert(DEFAULT_BRANCH.to_owned(), sha.clone());
        sha
    }

    /// Like [`FakeRepo::add_commit`] but on any parent commit, moving no ref (use [`FakeRepo::set_ref`]): makes
    /// side branches and rewritten histories.
    pub fn add_commit_on(
        &mut self,
        parent: &str,
        message: &str,
        date: &str,
        changes: impl IntoIterator<Item = Change>,
    ) -> String {
        let parent = self.resolve(parent).unwrap_or_else(|| panic!("unknown parent {parent}")).sha.clone();
        self.commit_with_parent(Some(&parent), message, date, changes)
    }

    /// Points branch `name` at commit `sha` (creating the branch if needed). Old commits stay reachable by sha,
    /// as they do on GitHub after a force push.
    pub fn set_ref(&mut self, name: &str, sha: &str) {
        let sha = self.resolve(sha).unwrap_or_else(|| panic!("unknown commit {sha}")).sha.clone();
        self.refs.insert(name.to_owned(), sha);
    }

    /// The commit `master` points to. Panics on an empty repository.
    pub fn head(&self) -> &Commit {
        self.resolve(DEFAULT_BRANCH).expect("the repository has no commit yet")
    }

    /// Every commit, in creation order.
    pub fn commits(&self) -> &[Commit] {
        &self.commits
    }

    /// The commit a reference names: a branch (`master`, `heads/master`, `refs/heads/master`), a full sha or an
    /// unambiguous abbreviated sha of at least 7 digits.
    pub fn resolve(&self, reference: &str) -> Option<&Commit> {
        let branch = reference.strip_prefix("refs/").unwrap_or(reference);
        let branch = branch.strip_prefix("heads/").unwrap_or(branch);
        if let Some(sha) = self.refs.get(branch) {
            return self.commit(sha);
        }
        if reference.len() == 40 {
            return self.commit(&reference.to_ascii_lowercase());
        }
        if reference.len() >= 7 && is_hex(reference) {
            let prefix = reference.to_ascii_lowercase();
            let mut matches = self.commits.iter().filter(|c| c.sha.starts_with(&prefix));
            let first = matches.next()?;
            return matches.next().is_none().then_some(first);
        }
        None
    }

    /// The commit with exactly this sha.
    pub fn commit(&self, sha: &str) -> Option<&Commit> {
        self.commit_index.get(sha).map(|&i| &self.commits[i])
    }

    /// The content of blob `sha`.
    pub fn blob(&self, sha: &str) -> Option<&Arc<[u8]>> {
        self.blobs.get(sha)
    }

    /// The entries of tree object `sha`.
    pub fn tree(&self, sha: &str) -> Option<&Arc<Vec<TreeEntry>>> {
        self.trees.get(sha)
    }

    /// The content of `path` at `reference`.
    pub fn file(&self, reference: &str, path: &str) -> Option<Arc<[u8]>> {
        let entry = self.resolve(reference)?.files.get(path)?;
        self.blobs.get(&entry.blob_sha).cloned()
    }

    /// The tree sha of directory `dir` (`""` for the root) in `commit`.
    pub fn dir_tree_sha(&self, commit: &Commit, dir: &str) -> Option<String> {
        let mut sha = commit.tree_sha.clone();
        for component in dir.split('/').filter(|c| !c.is_empty()) {
            let entry = self.trees.get(&sha)?.iter().find(|e| e.name == component)?;
            if entry.kind != EntryKind::Tree {
                return None;
            }
            sha = entry.sha.clone();
        }
        Some(sha)
    }

    /// Every entry under tree `sha`, depth first in git's order, with its path relative to that tree.
    pub fn walk_tree(&self, sha: &str) -> Vec<(String, TreeEntry)> {
        let mut out = Vec::new();
        self.walk_into(sha, "", &mut out);
        out
    }

    fn walk_into(&self, sha: &str, prefix: &str, out: &mut Vec<(String, TreeEntry)>) {
        let Some(entries) = self.trees.get(sha) else { return };
        for entry in entries.iter() {
            let path = if prefix.is_empty() { entry.name.clone() } else { format!("{prefix}/{}", entry.name) };
            out.push((path.clone(), entry.clone()));
            if entry.kind == EntryKind::Tree {
                self.walk_into(&entry.sha, &path, out);
            }
        }
    }

    /// How `head` relates to `base` (both references), with the commits only `head` has.
    pub fn compare(&self, base: &str, head: &str) -> Result<Comparison, CompareError> {
        let base = self.resolve(base).ok_or_else(|| CompareError::UnknownRef(base.to_owned()))?;
        let head = self.resolve(head).ok_or_else(|| CompareError::UnknownRef(head.to_owned()))?;
        let from_base = self.ancestors(&base.sha);
        let from_head = self.ancestors(&head.sha);
        let merge_base = from_head
            .iter()
            .filter(|sha| from_base.contains(*sha))
            .max_by_key(|sha| self.commit_index[*sha])
            .ok_or(CompareError::NoCommonAncestor)?
            .clone();
        let mut ahead: Vec<String> = from_head.difference(&from_base).cloned().collect();
        ahead.sort_by_key(|sha| self.commit_index[sha]);
        let behind_by = from_base.difference(&from_head).count();
        let status = match (ahead.len(), behind_by) {
            (0, 0) => "identical",
            (_, 0) => "ahead",
            (0, _) => "behind",
            _ => "diverged",
        };
        Ok(Comparison { status, base: base.sha.clone(), head: head.sha.clone(), merge_base, ahead, behind_by })
    }

    fn ancestors(&self, sha: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut stack = vec![sha.to_owned()];
        while let Some(sha) = stack.pop() {
            let Some(commit) = self.commit(&sha) else { continue };
            if seen.insert(sha) {
                stack.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    fn commit_with_parent(
        &mut self,
        parent: Option<&str>,
        message: &str,
        date: &str,
        changes: impl IntoIterator<Item = Change>,
    ) -> String {
        let mut files = match parent {
            Some(sha) => (*self.commit(sha).expect("parent exists").files).clone(),
            None => BTreeMap::new(),
        };
        for change in changes {
            match change {
                Change::Put(path, content) => {
                    check_new_path(&files, &path);
                    let entry = self.store_blob(content);
                    files.insert(path, entry);
                }
                Change::Delete(path) => {
                    files.remove(&path).unwrap_or_else(|| panic!("cannot delete {path}: no such file"));
                }
                Change::Rename(from, to) => {
                    let entry = files.remove(&from).unwrap_or_else(|| panic!("cannot rename {from}: no such file"));
                    check_new_path(&files, &to);
                    files.insert(to, entry);
                }
            }
        }
        let parents = parent.map(|p| vec![p.to_owned()]).unwrap_or_default();
        self.push_commit(None, parents, message, date, files)
    }

    fn store_blob(&mut self, content: Vec<u8>) -> FileEntry {
        let sha = git_blob_sha(&content);
        let size = content.len();
        self.blobs.entry(sha.clone()).or_insert_with(|| Arc::from(content));
        FileEntry { blob_sha: sha, size }
    }

    /// Writes the tree objects of `files` and records the commit; `sha` None computes a real git commit id.
    fn push_commit(
        &mut self,
        sha: Option<&str>,
        parents: Vec<String>,
        message: &str,
        date: &str,
        files: BTreeMap<String, FileEntry>,
    ) -> String {
        let epoch = parse_utc_date(date)
            .unwrap_or_else(|| panic!("date must be RFC 3339 UTC like 2026-08-23T10:00:00Z, got {date:?}"));
        let tree_sha = self.write_trees(&files);
        let sha = sha.map(str::to_owned).unwrap_or_else(|| {
            let mut object = format!("tree {tree_sha}\n");
            for parent in &parents {
                object.push_str(&format!("parent {parent}\n"));
            }
            object.push_str(&format!("author {AUTHOR} {epoch} +0000\ncommitter {AUTHOR} {epoch} +0000\n\n{message}\n"));
            git_object_id("commit", object.as_bytes())
        });
        assert!(!self.commit_index.contains_key(&sha), "commit {sha} exists already");
        self.commit_index.insert(sha.clone(), self.commits.len());
        self.commits.push(Commit {
            sha: sha.clone(),
            tree_sha,
            date: date.to_owned(),
            message: message.to_owned(),
            parents,
            files: Arc::new(files),
        });
        sha
    }

    /// Stores the tree objects of `files` (sorted by path, which is git's order) and returns the root tree's sha.
    fn write_trees(&mut self, files: &BTreeMap<String, FileEntry>) -> String {
        struct OpenDir {
            path: String,
            entries: Vec<TreeEntry>,
        }
        let mut stack = vec![OpenDir { path: String::new(), entries: Vec::new() }];
        fn close_top(stack: &mut Vec<OpenDir>, trees: &mut HashMap<String, Arc<Vec<TreeEntry>>>) {
            let dir = stack.pop().expect("an open directory");
            let sha = store_tree(trees, dir.entries);
            let name = dir.path.rsplit('/').next().unwrap_or_default().to_owned();
            let parent = stack.last_mut().expect("the root stays open");
            parent.entries.push(TreeEntry { name, kind: EntryKind::Tree, sha, size: 0 });
        }
        for (path, file) in files {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            while !is_within(dir, &stack.last().expect("root").path) {
                close_top(&mut stack, &mut self.trees);
            }
            loop {
                let top = &stack.last().expect("root").path;
                if top == dir {
                    break;
                }
                let rest = if top.is_empty() { dir } else { &dir[top.len() + 1..] };
                let component = rest.split('/').next().expect("a component");
                let path = if top.is_empty() { component.to_owned() } else { format!("{top}/{component}") };
                stack.push(OpenDir { path, entries: Vec::new() });
            }
            let top = stack.last_mut().expect("root");
            let entry =
                TreeEntry { name: name.to_owned(), kind: EntryKind::Blob, sha: file.blob_sha.clone(), size: file.size };
            top.entries.push(entry);
        }
        while stack.len() > 1 {
            close_top(&mut stack, &mut self.trees);
        }
        let root = stack.pop().expect("root");
        store_tree(&mut self.trees, root.entries)
    }
}

fn store_tree(trees: &mut HashMap<String, Arc<Vec<TreeEntry>>>, entries: Vec<TreeEntry>) -> String {
    let mut object = Vec::new();
    for entry in &entries {
        object.extend_from_slice(format!("{} {}\0", entry.kind.object_mode(), entry.name).as_bytes());
        object.extend_from_slice(&from_hex(&entry.sha));
    }
    let sha = git_object_id("tree", &object);
    trees.entry(sha.clone()).or_insert_with(|| Arc::new(entries));
    sha
}

fn is_within(dir: &str, ancestor: &str) -> bool {
    ancestor.is_empty() || dir == ancestor || (dir.starts_with(ancestor) && dir.as_bytes()[ancestor.len()] == b'/')
}

fn check_new_path(files: &BTreeMap<String, FileEntry>, path: &str) {
    let valid = !path.is_empty() && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    assert!(valid, "invalid file path {path:?}");
    let as_dir = format!("{path}/");
    let clashes_with_dir = files.range(as_dir.clone()..).next().is_some_and(|(p, _)| p.starts_with(&as_dir));
    assert!(!clashes_with_dir, "cannot put file {path}: it is a directory");
    let mut ancestor = path;
    while let Some((parent, _)) = ancestor.rsplit_once('/') {
        assert!(!files.contains_key(parent), "cannot put {path}: {parent} is a file");
        ancestor = parent;
    }
}

fn collect_files(dir: &Path, relative: &str, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| io::Error::new(io::ErrorKind::InvalidData, format!("file name is not UTF-8: {name:?}")))?;
        let path = if relative.is_empty() { name } else { format!("{relative}/{name}") };
        let kind = std::fs::metadata(entry.path())?;
        if kind.is_dir() {
            collect_files(&entry.path(), &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Git blob ids of many files at once: hashing 58 MB is the slow part of loading the snapshot.
fn hash_blobs_in_parallel(files: Vec<(String, Vec<u8>)>) -> Vec<(String, String, Vec<u8>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut buckets: Vec<Vec<(String, Vec<u8>)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, file) in files.into_iter().enumerate() {
        buckets[i % threads].push(file);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = buckets
            .into_iter()
            .map(|bucket| {
                scope.spawn(move || {
                    bucket
                        .into_iter()
                        .map(|(path, content)| (path, git_blob_sha(&content), content))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("hashing thread")).collect()
    })
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (the only form the fake uses).
pub fn parse_utc_date(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    let shape_ok = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

const FALLBACK_LICENSE: &str = "MIT License\n\nCopyright (c) 2014-2026 Miroslav Stampar (@stamparm)\n";

/// Files outside the trail directory, so that a client has to filter the tree by path.
const EXTRA_FILES: &[(&str, &str)] = &[
    ("README.md", "![Maltrail](https://i.imgur.com/3xjInOD.png)\n\n# Maltrail\n\nMalicious traffic detection system\n"),
    ("core/settings.py", "#!/usr/bin/env python\n\nVERSION = \"0.0.0\"\nNAME = \"Maltrail\"\n"),
    (
        "trails/feeds/__init__.py",
        "#!/usr/bin/env python\n\n\"\"\"\nSee the file 'LICENSE' for copying permission\n\"\"\"\n",
    ),
];
