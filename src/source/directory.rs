//! Trail files from a local directory: a Maltrail checkout's `trails/static`, or the shared snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The `.txt` files under `root`, as sorted paths relative to it with `/` separators (`malware/emotet.txt`).
/// Symbolic links are not followed, so a link cannot pull files from outside the trails folder. A name that is not
/// UTF-8 is left out with a warning, as the GitHub source does with such tarball entries (the path could not be
/// written in the STIX output, nor read back from its lossy form).
pub fn list_trail_files(root: &Path) -> io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "txt") {
                let Ok(relative) = path.strip_prefix(root) else {
                    continue;
                };
                let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
                match parts {
                    Some(parts) => files.push(parts.join("/")),
                    None => tracing::warn!(path = %path.display(), "trail file name is not UTF-8: left out"),
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one trail file given its relative path.
pub fn read_trail_file(root: &Path, relative: &str) -> io::Result<Vec<u8>> {
    let path = relative.split('/').fold(root.to_path_buf(), |path, part| path.join(part));
    fs::read(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// A local folder of trail files (a Maltrail checkout's `trails/static`). Its revision is a digest of every
/// file's path and content, so an unchanged folder is recognised and not sent again. A folder keeps no history:
/// when it changed, the run imports it in full (nothing can be revoked; see docs/OPERATIONS.md).
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
}

/// FNV-1a, 64 bits: a stable digest (std's hasher is seeded per process) that is fast enough for 58 MB.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Files queued between the reader thread and the run.
const CHANNEL_FILES: usize = 16;

impl DirectorySource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn other(error: io::Error) -> super::SourceError {
        super::SourceError::Other(error.to_string())
    }

    /// The digest of the folder's trail files (paths and contents).
    pub async fn head(&self) -> Result<super::Revision, super::SourceError> {
        let root = self.root.clone();
        let digest = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut hash = FNV_OFFSET;
            for path in list_trail_files(&root)? {
                hash = fnv1a(hash, path.as_bytes());
                hash = fnv1a(hash, &[0]);
                hash = fnv1a(hash, &read_trail_file(&root, &path)?);
                hash = fnv1a(hash, &[0]);
            }
            Ok(hash)
        })
        .await
        .map_err(|e| super::SourceError::Other(e.to_string()))?
        .map_err(Self::other)?;
        Ok(super::Revision { id: format!("dir:{digest:016x}"), date: None })
    }

    /// How many trail files the folder holds.
    pub async fn file_count(&self, _revision: &super::Revision) -> Result<usize, super::SourceError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_trail_files(&root).map(|files| files.len()))
            .await
            .map_err(|e| super::SourceError::Other(e.to_string()))?
            .map_err(Self::other)
    }

    /// Every trail file, read on a blocking thread.
    pub fn files(&self, _revision: &super::Revision) -> super::FileStream {
        let (sender, receiver) = tokio::sync::mpsc::channel(CHANNEL_FILES);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let paths = match list_trail_files(&root) {
                Ok(paths) => paths,
                Err(error) => {
                    let _ = sender.blocking_send(Err(Self::other(error)));
                    return;
                }
            };
            for path in paths {
                let item = read_trail_file(&root, &path)
                    .map(|content| super::TrailFileContent { path, content })
                    .map_err(Self::other);
                let failed = item.is_err();
                if sender.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        receiver
    }

    /// No changes when the digest is the same; otherwise the base is unknown (a folder keeps no history).
    pub async fn changes(
        &self,
        base: &str,
        head: &super::Revision,
    ) -> Result<Vec<super::FileChange>, super::SourceError> {
        if base == head.id { Ok(Vec::new()) } else { Err(super::SourceError::UnknownRevision(base.to_owned())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_txt_files_relative_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("malware")).unwrap();
        fs::write(dir.path().join("malware/icarus _ransomware.txt"), "x.com\n").unwrap();
        fs::write(dir.path().join("malware/a.txt"), "").unwrap();
        fs::write(dir.path().join("malware/notes.md"), "").unwrap();
        fs::write(dir.path().join("mass_scanner.txt"), "").unwrap();
        let files = list_trail_files(dir.path()).unwrap();
        assert_eq!(files, ["malware/a.txt", "malware/icarus _ransomware.txt", "mass_scanner.txt"]);
        assert_eq!(read_trail_file(dir.path(), &files[1]).unwrap(), b"x.com\n");
        assert!(list_trail_files(&dir.path().join("missing")).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn a_file_name_that_is_not_utf8_is_left_out() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("malware")).unwrap();
        fs::write(dir.path().join("malware").join(std::ffi::OsStr::from_bytes(b"\xff.txt")), "x.com\n").unwrap();
        fs::write(dir.path().join("malware/b.txt"), "b.com\n").unwrap();
        let files = list_trail_files(dir.path()).unwrap();
        assert_eq!(files, ["malware/b.txt"]);
        assert!(files.iter().all(|f| read_trail_file(dir.path(), f).is_ok()), "every listed file reads back");
    }

    #[tokio::test]
    async fn revision_follows_content_and_files_stream() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("malware")).unwrap();
        fs::write(dir.path().join("malware/a.txt"), "a.com\n").unwrap();
        let source = DirectorySource::new(dir.path());
        let first = source.head().await.unwrap();
        assert_eq!(source.head().await.unwrap(), first, "stable digest");
        assert!(source.changes(&first.id, &first).await.unwrap().is_empty());
        fs::write(dir.path().join("malware/a.txt"), "b.com\n").unwrap();
        let second = source.head().await.unwrap();
        assert_ne!(second, first);
        assert!(matches!(
            source.changes(&first.id, &second).await,
            Err(crate::source::SourceError::UnknownRevision(_))
        ));
        let mut files = source.files(&second);
        let file = files.recv().await.unwrap().unwrap();
        assert_eq!((file.path.as_str(), file.content.as_slice()), ("malware/a.txt", b"b.com\n".as_slice()));
        assert!(files.recv().await.is_none());
    }
}
