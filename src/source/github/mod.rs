//! Trail files from the GitHub REST API: the head commit of a ref, every trail file of a commit from one tarball,
//! and the trail files that changed between two commits from their trees and blobs.
//!
//! Every request goes to `MALTRAIL_API_BASE_URL` with REST paths only (so GitHub Enterprise works), and carries
//! the token, which never follows a redirect to another host. `http.rs` owns retries, timeouts and rate limits;
//! `tarball.rs` the full listing; `changes.rs` the incremental one.

mod changes;
mod http;
mod tarball;

use std::sync::{Mutex, PoisonError};

use proto_stix::Timestamp;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use http::RetryPolicy;

use super::{FileChange, FileStream, Revision, SourceError};
use crate::settings::MaltrailSettings;
use http::{Api, Get};

/// Files queued between the tarball reader and the run.
const CHANNEL_FILES: usize = 16;

/// The GitHub source of one repository, ref and trails folder.
#[derive(Debug)]
pub struct GitHubSource {
    api: std::sync::Arc<Api>,
    /// `owner/name`, as configured.
    repository: String,
    /// `owner/name` ready for a URL path.
    repo_path: String,
    git_ref: String,
    trails: TrailFilter,
    /// The last answer of [`GitHubSource::head`], so that the next one can be a conditional request (a 304 does
    /// not count against GitHub's rate limit).
    head_cache: Mutex<Option<CachedHead>>,
}

#[derive(Debug, Clone)]
struct CachedHead {
    etag: String,
    revision: Revision,
}

impl GitHubSource {
    /// A source with the service's timeouts and retries.
    pub fn new(config: &MaltrailSettings) -> Result<Self, SourceError> {
        Self::with_retry_policy(config, RetryPolicy::default())
    }

    /// A source with other timeouts and retries (tests use short ones).
    pub fn with_retry_policy(config: &MaltrailSettings, policy: RetryPolicy) -> Result<Self, SourceError> {
        let repo_path = repository_path(&config.repository)?;
        let api = Api::new(&config.api_base_url, config.api_key.as_ref(), policy)?;
        Ok(Self {
            api: std::sync::Arc::new(api),
            repository: config.repository.clone(),
            repo_path,
            git_ref: config.git_ref.clone(),
            trails: TrailFilter::new(&config.path),
            head_cache: Mutex::new(None),
        })
    }

    /// `github:owner/name@ref`.
    /// `github:owner/name@ref`, plus `:folder` when the trails are not in Maltrail's own folder: the state records
    /// it, so that fixing a wrong `MALTRAIL_PATH` brings a full import instead of an update from a bad sync.
    pub fn describe(&self) -> String {
        let folder = self.trails.prefix.trim_end_matches('/');
        if folder == crate::settings::DEFAULT_TRAILS_PATH {
            format!("github:{}@{}", self.repository, self.git_ref)
        } else {
            format!("github:{}@{}:/{folder}", self.repository, self.git_ref)
        }
    }

    /// The commit the ref points to and its committer date. Conditional on the last answer's ETag: when nothing
    /// changed GitHub answers 304 and the cached revision is returned.
    pub async fn head(&self) -> Result<Revision, SourceError> {
        let path = format!("repos/{}/commits/{}", self.repo_path, encode_path(&self.git_ref));
        let cached = self.head_cache.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let get = Get { if_none_match: cached.as_ref().map(|c| c.etag.as_str()), ..Get::json(&path) };
        let fetched = self.api.fetch(get).await.map_err(|failure| failure.into_source_error(&path))?;
        if fetched.status == reqwest::StatusCode::NOT_MODIFIED {
            return cached.map(|c| c.revision).ok_or_else(|| {
                SourceError::Other(format!("GitHub answered GET {path} with 304 to a request that was not conditional"))
            });
        }
        let revision = parse_commit(&path, &fetched.body)?;
        let fresh = fetched.etag.map(|etag| CachedHead { etag, revision: revision.clone() });
        *self.head_cache.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(revision)
    }

    /// Every trail file of `revision`, streamed from one tarball download. A download that fails before the end
    /// ends the stream with an error item, never with a shorter list.
    pub fn files(&self, revision: &Revision) -> FileStream {
        let (sender, receiver) = mpsc::channel(CHANNEL_FILES);
        let path = format!("repos/{}/tarball/{}", self.repo_path, encode_path(&revision.id));
        tokio::spawn(tarball::stream(self.api.clone(), path, self.trails.clone(), sender));
        receiver
    }

    /// The trail files that differ between commit `base` and `head`, with their contents at both: two trees
    /// and the blobs that changed, so requests grow with the change, not with the repository. Sorted by path; a
    /// rename is a removal plus an addition. [`SourceError::UnknownRevision`] when GitHub does not know `base`.
    pub async fn changes(&self, base: &str, head: &Revision) -> Result<Vec<FileChange>, SourceError> {
        changes::between(self, base, head).await
    }

    /// The content of git blob `sha` (a worker fetching a file too large to travel in its job).
    pub async fn blob(&self, sha: &str) -> Result<Vec<u8>, SourceError> {
        if !is_object_id(sha) {
            return Err(SourceError::Other(format!("{sha:?} is not a git object id")));
        }
        changes::blob(self, sha).await
    }

    /// How many trail files the revision holds (one tree request), so a full import can report its progress.
    pub async fn file_count(&self, revision: &Revision) -> Result<usize, SourceError> {
        changes::count(self, &revision.id).await
    }
}

/// Which repository paths are trail files: `.txt` files under the trails folder, named relative to it.
#[derive(Debug, Clone)]
struct TrailFilter {
    /// `trails/static/`, or empty for the whole repository.
    prefix: String,
}

impl TrailFilter {
    fn new(folder: &str) -> Self {
        let folder = folder.trim_matches('/');
        Self { prefix: if folder.is_empty() { String::new() } else { format!("{folder}/") } }
    }

    /// The trail path (`malware/emotet.txt`) of repository path `path`, if it is a trail file.
    fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let relative = path.strip_prefix(self.prefix.as_str())?;
        (relative.ends_with(".txt") && !relative.is_empty()).then_some(relative)
    }
}

/// The parts of GitHub's commit object the source reads.
#[derive(Deserialize)]
struct CommitJson {
    sha: String,
    commit: CommitDetail,
}

#[derive(Deserialize)]
struct CommitDetail {
    committer: Person,
}

#[derive(Deserialize)]
struct Person {
    date: String,
}

fn parse_commit(path: &str, body: &[u8]) -> Result<Revision, SourceError> {
    let commit: CommitJson = parse_json(path, body)?;
    if !is_object_id(&commit.sha) {
        return Err(bad_answer(path, format!("{:?} is not a commit sha", commit.sha)));
    }
    let date = Timestamp::parse_rfc3339(&commit.commit.committer.date)
        .map_err(|_| bad_answer(path, format!("{:?} is not an RFC 3339 date", commit.commit.committer.date)))?;
    Ok(Revision { id: commit.sha, date: Some(date) })
}

/// Parses a JSON answer; a body that does not fit is an error naming the request.
fn parse_json<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(body).map_err(|e| bad_answer(path, e.to_string()))
}

fn bad_answer(path: &str, problem: String) -> SourceError {
    SourceError::Other(format!("GitHub's answer to GET {path} cannot be read: {problem}"))
}

/// A full git object id: 40 (SHA-1) or 64 (SHA-256) hexadecimal digits.
fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `owner/name` for a URL path, refusing anything else.
fn repository_path(repository: &str) -> Result<String, SourceError> {
    match repository.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("{}/{}", encode_path(owner), encode_path(name)))
        }
        _ => Err(SourceError::Other(format!("MALTRAIL_REPOSITORY must be owner/name, not {repository:?}"))),
    }
}

/// Percent-encodes what a URL path cannot carry as is, keeping `/` (refs like `release/1.0`).
fn encode_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(repository: &str) -> MaltrailSettings {
        MaltrailSettings {
            api_base_url: "https://api.github.com".into(),
            api_key: Some(opencti_connector::settings::Secret::new("ghp_do_not_print")),
            repository: repository.into(),
            git_ref: "master".into(),
            path: "trails/static".into(),
            directory: None,
            job_inline_bytes: 1 << 20,
            refresh_max_patches: 0,
        }
    }

    #[test]
    fn describes_and_hides_the_token() {
        let source = GitHubSource::new(&config("stamparm/maltrail")).unwrap();
        assert_eq!(source.describe(), "github:stamparm/maltrail@master");
        let elsewhere =
            GitHubSource::new(&MaltrailSettings { path: "trails/statik".into(), ..config("stamparm/maltrail") });
        assert_eq!(elsewhere.unwrap().describe(), "github:stamparm/maltrail@master:/trails/statik");
        assert!(!format!("{source:?}").contains("ghp_do_not_print"));
        for bad in ["maltrail", "/maltrail", "a/b/c", "stamparm/"] {
            assert!(GitHubSource::new(&config(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_trail_paths() {
        let filter = TrailFilter::new("trails/static/");
        assert_eq!(
            filter.relative("trails/static/malware/icarus _ransomware.txt"),
            Some("malware/icarus _ransomware.txt")
        );
        assert_eq!(filter.relative("trails/static/malware/readme.md"), None);
        assert_eq!(filter.relative("trails/staticx/a.txt"), None);
        assert_eq!(filter.relative("trails/feeds/__init__.py"), None);
        assert_eq!(TrailFilter::new("").relative("a/b.txt"), Some("a/b.txt"));
    }

    #[test]
    fn encodes_paths_and_reads_commits() {
        assert_eq!(encode_path("release/1.0 rc#1"), "release/1.0%20rc%231");
        let body = br#"{"sha":"8adace159e1e9418ca4dd1a4b07f84917c3b6155",
                        "commit":{"committer":{"date":"2026-08-23T00:00:00Z"}}}"#;
        let revision = parse_commit("p", body).unwrap();
        assert_eq!(revision.id, "8adace159e1e9418ca4dd1a4b07f84917c3b6155");
        assert_eq!(revision.date, Some(Timestamp::parse_rfc3339("2026-08-23T00:00:00Z").unwrap()));
        assert!(parse_commit("p", br#"{"sha":"nope","commit":{"committer":{"date":"x"}}}"#).is_err());
        let error = parse_commit("repos/a/b/commits/master", b"<html>").unwrap_err().to_string();
        assert!(error.contains("repos/a/b/commits/master"), "{error}");
    }
}
