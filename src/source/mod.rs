//! Where trail files come from: the GitHub API (the default) or a local directory, behind one interface the run
//! uses to plan a full or an incremental import.
//!
//! A source names its current state as a [`Revision`] (a commit, or a fingerprint of a directory's content), lists
//! every trail file of a revision as a stream (one archive download on GitHub), and, between two revisions, says
//! which trail files changed and gives each one's content at both.

pub mod directory;
pub mod github;

use proto_stix::Timestamp;
use tokio::sync::mpsc;

/// One state of the trails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// A commit sha (GitHub) or `dir:<digest>` (directory).
    pub id: String,
    /// When the revision was made (the commit's committer date), if known.
    pub date: Option<Timestamp>,
}

/// A trail file and its content. `path` is relative to the trails folder (`malware/emotet.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailFileContent {
    pub path: String,
    pub content: Vec<u8>,
}

/// How one trail file differs between two revisions (a rename is a removal plus an addition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    /// The content before, `None` when the file was added.
    pub old: Option<Vec<u8>>,
    /// The content after, `None` when the file was removed.
    pub new: Option<Vec<u8>>,
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The base revision of an incremental run is unknown to the source (history rewritten, another repository,
    /// a directory that changed): the run falls back to a full import.
    #[error("revision {0} is unknown to the source")]
    UnknownRevision(String),
    /// Credentials refused (a bad `MALTRAIL_API_KEY`): retrying will not help.
    #[error("the source refused the credentials: {0}")]
    Unauthorized(String),
    /// Anything else (network, server errors, rate limits that outlasted the retries, bad data).
    #[error("{0}")]
    Other(String),
}

/// Files streamed by [`Source::files`]: each item is a file or the error that ended the stream.
pub type FileStream = mpsc::Receiver<Result<TrailFileContent, SourceError>>;

/// A trail source.
#[derive(Debug)]
pub enum Source {
    GitHub(github::GitHubSource),
    Directory(directory::DirectorySource),
}

impl Source {
    /// The source the settings name: `MALTRAIL_DIRECTORY` when set, else GitHub.
    pub fn from_settings(maltrail: &crate::settings::MaltrailSettings) -> Result<Self, SourceError> {
        Ok(match &maltrail.directory {
            Some(directory) => Self::Directory(directory::DirectorySource::new(directory)),
            None => Self::GitHub(github::GitHubSource::new(maltrail)?),
        })
    }

    /// A short description for logs and the work's name (`github:stamparm/maltrail@master`, `dir:/data/trails`).
    pub fn describe(&self) -> String {
        match self {
            Self::GitHub(source) => source.describe(),
            Self::Directory(source) => source.describe(),
        }
    }

    /// The current revision.
    pub async fn head(&self) -> Result<Revision, SourceError> {
        match self {
            Self::GitHub(source) => source.head().await,
            Self::Directory(source) => source.head().await,
        }
    }

    /// Every trail file of `revision`, streamed in a bounded channel (the producer waits for the consumer).
    pub fn files(&self, revision: &Revision) -> FileStream {
        match self {
            Self::GitHub(source) => source.files(revision),
            Self::Directory(source) => source.files(revision),
        }
    }

    /// How many trail files `revision` holds, for progress reports (one tree request on GitHub).
    pub async fn file_count(&self, revision: &Revision) -> Result<usize, SourceError> {
        match self {
            Self::GitHub(source) => source.file_count(revision).await,
            Self::Directory(source) => source.file_count(revision).await,
        }
    }

    /// The content of git blob `sha`, for sources that have blobs (GitHub); `None` for a directory.
    pub async fn blob(&self, sha: &str) -> Option<Result<Vec<u8>, SourceError>> {
        match self {
            Self::GitHub(source) => Some(source.blob(sha).await),
            Self::Directory(_) => None,
        }
    }

    /// The trail files that differ between `base` (a revision id from an earlier run) and `head`, with their
    /// contents. [`SourceError::UnknownRevision`] when `base` cannot be compared (the caller imports in full).
    pub async fn changes(&self, base: &str, head: &Revision) -> Result<Vec<FileChange>, SourceError> {
        match self {
            Self::GitHub(source) => source.changes(base, head).await,
            Self::Directory(source) => source.changes(base, head).await,
        }
    }
}
