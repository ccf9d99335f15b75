//! The `legacy.tar.gz` archive of a commit, laid out as GitHub's codeload serves it (`git archive` style).

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::body::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use super::model::{EntryKind, FakeRepo};

const CHUNK: usize = 64 * 1024;

/// Archives already written, for the whole test process: the snapshot's takes seconds to gzip in a debug build,
/// and many tests download the same one. Keyed by everything that shapes the bytes.
fn archive_cache() -> &'static Mutex<HashMap<String, Bytes>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Everything needed to write one commit's archive, copied out of the repository (contents shared, not copied).
pub struct ArchivePlan {
    commit_sha: String,
    tree_sha: String,
    /// `{owner}-{repo}-{sha7}`: the single top-level folder.
    top: String,
    mtime: u64,
    /// Path below `top`, and the content for files (`None` for directories), in git's order.
    items: Vec<(String, Option<Arc<[u8]>>)>,
}

impl ArchivePlan {
    /// The plan for commit `sha` (which must exist).
    pub fn new(repo: &FakeRepo, sha: &str) -> Self {
        let commit = repo.commit(sha).unwrap_or_else(|| panic!("unknown commit {sha}"));
        let items = repo
            .walk_tree(&commit.tree_sha)
            .into_iter()
            .map(|(path, entry)| {
                let content = match entry.kind {
                    EntryKind::Blob => Some(repo.blob(&entry.sha).expect("tree blobs are stored").clone()),
                    EntryKind::Tree => None,
                };
                (path, content)
            })
            .collect();
        Self {
            commit_sha: commit.sha.clone(),
            tree_sha: commit.tree_sha.clone(),
            top: format!("{}-{}-{}", repo.owner(), repo.name(), &commit.sha[..7]),
            mtime: u64::try_from(commit.epoch_seconds()).unwrap_or(0),
            items,
        }
    }

    /// The archive's file name, as codeload's `Content-Disposition` gives it.
    pub fn file_name(&self) -> String {
        format!("{}.tar.gz", self.top)
    }

    /// Writes the gzip'd tar to `out`: a pax global header carrying the commit id (as `git archive` writes), the
    /// top-level folder, then every directory and file of the tree (directories 0775, files 0664, commit time).
    pub fn write<W: Write>(&self, out: W, gzip_level: u32) -> io::Result<W> {
        let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::new(gzip_level)));
        let record = pax_record("comment", &self.commit_sha);
        let mut header = self.header(tar::EntryType::XGlobalHeader, 0o666, record.len());
        tar.append_data(&mut header, "pax_global_header", record.as_bytes())?;
        let mut header = self.header(tar::EntryType::Directory, 0o775, 0);
        tar.append_data(&mut header, format!("{}/", self.top), io::empty())?;
        for (path, content) in &self.items {
            match content {
                None => {
                    let mut header = self.header(tar::EntryType::Directory, 0o775, 0);
                    tar.append_data(&mut header, format!("{}/{path}/", self.top), io::empty())?;
                }
                Some(content) => {
                    let mut header = self.header(tar::EntryType::Regular, 0o664, content.len());
                    tar.append_data(&mut header, format!("{}/{path}", self.top), &content[..])?;
                }
            }
        }
        tar.into_inner()?.finish()
    }

    /// The whole archive in memory.
    pub fn to_vec(&self, gzip_level: u32) -> Vec<u8> {
        self.write(Vec::new(), gzip_level).expect("writing to memory cannot fail")
    }

    /// The archive as a stream of chunks: from the process-wide cache when this exact archive was written before,
    /// else written on a blocking thread while it is sent (and cached once complete). Writing stops quietly when
    /// the receiver goes away.
    pub fn stream(self, gzip_level: u32) -> mpsc::Receiver<Bytes> {
        let (chunks, receiver) = mpsc::channel(8);
        let key = format!("{} {} {} {gzip_level}", self.top, self.commit_sha, self.tree_sha);
        let cached = archive_cache().lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        tokio::task::spawn_blocking(move || {
            if let Some(archive) = cached {
                for start in (0..archive.len()).step_by(CHUNK) {
                    if chunks.blocking_send(archive.slice(start..(start + CHUNK).min(archive.len()))).is_err() {
                        return;
                    }
                }
                return;
            }
            let writer = ChannelWriter { chunks, pending: Vec::with_capacity(CHUNK), written: Vec::new() };
            let Ok(mut writer) = self.write(writer, gzip_level) else { return };
            if writer.flush().is_ok() {
                let archive = Bytes::from(std::mem::take(&mut writer.written));
                archive_cache().lock().unwrap_or_else(PoisonError::into_inner).insert(key, archive);
            }
        });
        receiver
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size as u64);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }
}

/// A pax record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// Bridges the blocking archive writer to an async response body, keeping a copy for the cache.
struct ChannelWriter {
    chunks: mpsc::Sender<Bytes>,
    pending: Vec<u8>,
    written: Vec<u8>,
}

impl ChannelWriter {
    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.written.extend_from_slice(&self.pending);
        let chunk = Bytes::from(std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK)));
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client stopped reading the tarball"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK {
            self.send_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}
