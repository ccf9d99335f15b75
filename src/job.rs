//! What a Maltrail job holds and does: trail files (whole, for a full import; a change with its revocations, for an
//! update), how to convert and split them (the leader's settings, so that every worker sends exactly what the
//! leader counted), and the expectations the leader announced for them. The same layout counts a job (on the
//! leader, before it publishes it) and sends it (on a worker).
//!
//! A file travels in its job, except a file larger than `MALTRAIL_JOB_INLINE_BYTES`, which travels as the sha of
//! its git blob for the worker to fetch (RabbitMQ 4 refuses messages over 16 MiB by default): one GitHub request
//! more per such file, whatever the number of workers.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use opencti_connector::send::{SendError, Sender, SplitSettings};
use proto_stix::StixId;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::convert::{ConvertOptions, Converter, Times, file_trails};
use crate::lifecycle::{self, REINSTATE_MAX};
use crate::pipeline::{FileSend, Laid, send_file, send_patches};
use crate::plan::{FilePlan, ParsedChange};
use crate::source::{Source, SourceError};
use crate::stats::Stats;
use crate::trails::parse_file;

/// Skipped lines a job reports with their text (the work shows some; the summary counts them all).
const SKIP_NOTES: usize = 20;

/// Bytes of a file, in the job or by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Content {
    /// The bytes, base64 in the job's JSON.
    Inline(#[serde(with = "base64_bytes")] Vec<u8>),
    /// The sha of the file's git blob: the worker fetches it.
    Blob(String),
}

impl Content {
    /// `bytes` inline, or by reference when larger than `inline_limit`.
    pub fn of(bytes: Vec<u8>, inline_limit: usize) -> Self {
        if bytes.len() > inline_limit { Self::Blob(git_blob_sha(&bytes)) } else { Self::Inline(bytes) }
    }

    async fn read(&self, source: &Source) -> Result<Vec<u8>, SourceError> {
        match self {
            Self::Inline(bytes) => Ok(bytes.clone()),
            Self::Blob(sha) => match source.blob(sha).await {
                Some(result) => result,
                None => Err(SourceError::Other(format!("blob {sha}: the source has no blobs (a directory)"))),
            },
        }
    }
}

/// git's id of a blob: SHA-1 of `blob <length>\0<bytes>`.
pub(crate) fn git_blob_sha(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// One trail file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobFile {
    /// Every trail of the file, active (a full import).
    Whole { path: String, content: Content },
    /// What changed in the file: the trails its new version added, and what the plan revokes.
    Change {
        path: String,
        old: Option<Content>,
        new: Option<Content>,
        revoked: Vec<StixId>,
        revoked_relations: Vec<(String, String)>,
    },
    /// Edits of indicators the platform holds ([`crate::lifecycle`]): no file.
    Patches { edit: Edit, ids: Vec<StixId> },
}

/// What a [`JobFile::Patches`] does to its indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Edit {
    /// `revoked: false`: trails Maltrail lists again.
    Reinstate,
    /// `valid_until` moved to the job's `times.valid_until`: listed trails whose refresh slot passed.
    Refresh,
}

impl JobFile {
    /// The file, or what the job edits.
    pub fn name(&self) -> String {
        match self {
            Self::Whole { path, .. } | Self::Change { path, .. } => path.clone(),
            Self::Patches { edit: Edit::Reinstate, ids } => format!("un-revocation of {} indicators", ids.len()),
            Self::Patches { edit: Edit::Refresh, ids } => format!("refresh of {} indicators", ids.len()),
        }
    }

    /// The same file with its larger contents by reference (after the leader counted it from the bytes).
    pub fn by_reference(self, inline_limit: usize) -> Self {
        let reference = |content: Content| match content {
            Content::Inline(bytes) => Content::of(bytes, inline_limit),
            blob => blob,
        };
        match self {
            Self::Whole { path, content } => Self::Whole { path, content: reference(content) },
            Self::Change { path, old, new, revoked, revoked_relations } => {
                Self::Change { path, old: old.map(reference), new: new.map(reference), revoked, revoked_relations }
            }
            patches @ Self::Patches { .. } => patches,
        }
    }

    /// A file plan of an update, as a job file (its contents inline).
    pub fn of_plan(plan: &FilePlan) -> Self {
        let content = |bytes: &Option<Vec<u8>>| bytes.clone().map(Content::Inline);
        let mut revoked: Vec<StixId> = plan.revoked.iter().copied().collect();
        revoked.sort();
        Self::Change {
            path: plan.path.clone(),
            old: content(&plan.old),
            new: content(&plan.new),
            revoked,
            revoked_relations: plan.revoked_relations.clone(),
        }
    }
}

/// A job: what to send, how, and what the leader announced for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobMessage {
    pub convert: ConvertOptions,
    pub split: SplitSettings,
    pub times: Times,
    /// Expectations the leader announced on the work for this job's messages.
    pub expectations: u64,
    pub files: Vec<JobFile>,
}

impl JobMessage {
    /// A short description for logs and the work: the file, or the first and last of several.
    pub fn label(files: &[JobFile]) -> String {
        match files {
            [] => "no file".into(),
            [one] => one.name(),
            [first, .., last] => format!("{} … {} ({} files)", first.name(), last.name(), files.len()),
        }
    }
}

/// A skipped line, as a job reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SkipNote {
    pub reason: String,
    pub file: String,
    pub line: u32,
    pub text: String,
}

/// What a job sent (or, counted on the leader, would send).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobReport {
    pub files: u64,
    pub trails_sent: u64,
    pub trails_revoked: u64,
    pub relations_revoked: u64,
    /// Indicators whose `valid_until` was moved ahead.
    #[serde(default)]
    pub trails_refreshed: u64,
    /// Indicators un-revoked.
    #[serde(default)]
    pub trails_reinstated: u64,
    /// Patches sent (revocations included).
    #[serde(default)]
    pub patches: u64,
    /// Trails an update added, for the next run to un-revoke (at most [`REINSTATE_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<StixId>,
    pub skipped: u64,
    pub skip_notes: Vec<SkipNote>,
    pub messages: u64,
    /// Bytes of the messages published.
    #[serde(default)]
    pub bytes: u64,
    pub expectations: u64,
}

impl JobReport {
    pub fn merge(&mut self, other: &JobReport) {
        self.files += other.files;
        self.trails_sent += other.trails_sent;
        self.trails_revoked += other.trails_revoked;
        self.relations_revoked += other.relations_revoked;
        self.trails_refreshed += other.trails_refreshed;
        self.trails_reinstated += other.trails_reinstated;
        self.patches += other.patches;
        let room = REINSTATE_MAX.saturating_sub(self.added.len());
        self.added.extend(other.added.iter().take(room).copied());
        self.skipped += other.skipped;
        let room = SKIP_NOTES.saturating_sub(self.skip_notes.len());
        self.skip_notes.extend(other.skip_notes.iter().take(room).cloned());
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.expectations += other.expectations;
    }

    fn count(&mut self, stats: &Stats, laid: &Laid, sender: &Sender) {
        self.files = stats.files;
        self.trails_sent = laid.trails_sent;
        self.trails_revoked = laid.trails_revoked;
        self.relations_revoked = laid.relations_revoked;
        self.patches = laid.patches;
        self.skipped = stats.total_skipped();
        self.skip_notes = stats
            .skip_examples
            .iter()
            .flat_map(|(reason, examples)| {
                examples.iter().map(move |e| SkipNote {
                    reason: reason.to_string(),
                    file: e.file.clone(),
                    line: e.line,
                    text: e.text.clone(),
                })
            })
            .take(SKIP_NOTES)
            .collect();
        let counts = sender.counts();
        self.messages = counts.messages;
        self.bytes = counts.bytes;
        self.expectations = counts.expectations;
    }
}

/// Why a job could not be laid out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("cannot read {path}: {source}")]
    Content { path: String, source: SourceError },
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("stopped by shutdown")]
    Interrupted,
}

/// Lays every file of `files` out into `sender` (a counting one on the leader, the real one on a worker), with
/// `converter`; returns the report. `interrupted` is polled between files.
pub(crate) async fn lay_out(
    sender: &mut Sender,
    converter: &Converter,
    files: &[JobFile],
    times: Times,
    source: &Source,
    interrupted: impl Fn() -> bool,
) -> Result<JobReport, JobError> {
    let (mut stats, mut laid) = (Stats::default(), Laid::default());
    let (mut added, mut refreshed, mut reinstated) = (Vec::new(), 0, 0);
    for job_file in files {
        if interrupted() {
            return Err(JobError::Interrupted);
        }
        match job_file {
            JobFile::Whole { path, content } => {
                let content = read(content, path, source).await?;
                let Some(file) = parse_file(path, &content) else { continue };
                file.log_skipped();
                stats.count_file(&file);
                if !converter.wants(file.category) {
                    continue;
                }
                let trails = file_trails(&file);
                send_file(sender, converter, &FileSend::all(&file, &trails), times, &mut laid).await?;
            }
            JobFile::Change { path, old, new, revoked, revoked_relations } => {
                let plan = FilePlan {
                    path: path.clone(),
                    old: match old {
                        Some(content) => Some(read(content, path, source).await?),
                        None => None,
                    },
                    new: match new {
                        Some(content) => Some(read(content, path, source).await?),
                        None => None,
                    },
                    revoked: revoked.iter().copied().collect::<HashSet<StixId>>(),
                    revoked_relations: revoked_relations.clone(),
                };
                let Some(parsed) = ParsedChange::of(&plan) else { continue };
                if let Some(new) = parsed.new_file() {
                    new.log_skipped();
                    stats.count_file(new);
                } else {
                    stats.files += 1;
                }
                let (old_trails, new_trails) = parsed.trails();
                let Some(send) = parsed.send(&plan, &old_trails, &new_trails, converter) else { continue };
                let room = REINSTATE_MAX.saturating_sub(added.len());
                added.extend(send.active.iter().take(room).map(|trail| trail.id));
                send_file(sender, converter, &send, times, &mut laid).await?;
            }
            JobFile::Patches { edit, ids } => {
                let patches = ids.iter().map(|id| match edit {
                    Edit::Reinstate => lifecycle::reinstate(*id),
                    Edit::Refresh => lifecycle::extend(*id, times.valid_until),
                });
                send_patches(sender, &job_file.name(), patches.collect(), &mut laid).await?;
                match edit {
                    Edit::Reinstate => reinstated += ids.len() as u64,
                    Edit::Refresh => refreshed += ids.len() as u64,
                }
            }
        }
    }
    let mut report =
        JobReport { added, trails_refreshed: refreshed, trails_reinstated: reinstated, ..JobReport::default() };
    report.count(&stats, &laid, sender);
    Ok(report)
}

/// The bytes of `content`, the file `path`.
async fn read(content: &Content, path: &str, source: &Source) -> Result<Vec<u8>, JobError> {
    content.read(source).await.map_err(|error| JobError::Content { path: path.to_owned(), source: error })
}

/// The expectations a job's messages will count, computed as a worker will send them (the same layout, into a
/// counting sender). A platform split needs no conversion: its every message holds the marking and the author at
/// least, so it counts none (the platform's worker adds its pieces' expectations).
pub(crate) async fn expectations(
    convert: &ConvertOptions,
    split: SplitSettings,
    files: &[JobFile],
    times: Times,
    source: &Source,
) -> Result<u64, JobError> {
    if split.mode == opencti_connector::settings::SplitMode::Platform {
        return Ok(0);
    }
    let converter = Converter::new(convert.clone());
    let mut sender = Sender::counting(split);
    let report = lay_out(&mut sender, &converter, files, times, source, || false).await?;
    Ok(report.expectations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::directory::DirectorySource;

    #[test]
    fn git_blob_ids() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_sha(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(git_blob_sha(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn contents_travel_inline_up_to_the_limit() {
        assert_eq!(Content::of(b"abc".to_vec(), 3), Content::Inline(b"abc".to_vec()));
        assert!(matches!(Content::of(b"abcd".to_vec(), 3), Content::Blob(_)));
        let json = serde_json::to_string(&Content::Inline(b"\x00\xff".to_vec())).unwrap();
        assert_eq!(json, r#"{"inline":"AP8="}"#);
        assert_eq!(serde_json::from_str::<Content>(&json).unwrap(), Content::Inline(b"\x00\xff".to_vec()));
    }

    #[tokio::test]
    async fn a_platform_split_counts_no_expectation_as_its_batches_hold_several_objects() {
        let content = b"# Reference: https://example.org/r\nevil.example\n1.2.3.4:443\n/gate.php\n".to_vec();
        let files = vec![JobFile::Whole { path: "malware/x.txt".into(), content: Content::Inline(content) }];
        let times =
            Times::new(proto_stix::Timestamp::now(), proto_stix::Timestamp::now(), crate::convert::DEFAULT_VALIDITY);
        let source = Source::Directory(DirectorySource::new("/nonexistent"));
        let platform = SplitSettings {
            mode: opencti_connector::settings::SplitMode::Platform,
            batch_size: 2,
            batch_bytes: 1 << 20,
        };
        let converter = Converter::new(ConvertOptions::default());
        let mut sender = Sender::counting(platform);
        let counted = lay_out(&mut sender, &converter, &files, times, &source, || false).await.unwrap();
        assert!(counted.messages > 1, "several batches: {counted:?}");
        assert_eq!(counted.expectations, 0, "the shortcut agrees with the count");
        let shortcut = expectations(&ConvertOptions::default(), platform, &files, times, &source).await.unwrap();
        assert_eq!(shortcut, counted.expectations);
        let client =
            expectations(&ConvertOptions::default(), SplitSettings::CLIENT, &files, times, &source).await.unwrap();
        // marking, author, family; per trail: indicator, observable (none for the path), based-on, indicates.
        assert_eq!(client, 3 + 4 + 4 + 2);
    }
}
