//! The full listing: one tarball of a commit, streamed through gzip and tar on a blocking thread, its trail files
//! sent one by one as they come out of the archive (the 17 MB download is never held whole).

use std::io::{self, Read};
use std::sync::Arc;

use tokio::sync::mpsc::Sender;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::TrailFilter;
use super::http::{Api, Get};
use crate::error_chain::error_chain;
use crate::source::{SourceError, TrailFileContent};

type Item = Result<TrailFileContent, SourceError>;

/// Preallocation cap for one file: a header's size is not trusted with memory before the bytes arrive.
const PREALLOCATE_LIMIT: u64 = 16 * 1024 * 1024;

/// Downloads the tarball at `path` (retried until its answer starts) and sends its trail files to `sender`,
/// ending with an error item if anything fails. Returns quietly when the receiver goes away.
pub(super) async fn stream(api: Arc<Api>, path: String, trails: TrailFilter, sender: Sender<Item>) {
    let answer = tokio::select! {
        answer = api.send(Get::json(&path)) => answer,
        // Nobody is listening any more: stop retrying.
        () = sender.closed() => return,
    };
    let response = match answer {
        Ok(response) => response,
        Err(failure) => {
            let _ = sender.send(Err(failure.into_source_error(&path))).await;
            return;
        }
    };
    let reader = SyncIoBridge::new(StreamReader::new(Box::pin(api.body_stream(response))));
    let worker_sender = sender.clone();
    let label = path.clone();
    let extracted = tokio::task::spawn_blocking(move || {
        if let Err(error) = extract(reader, &trails, &worker_sender) {
            let message = format!("reading the tarball GET {label} failed: {}", error_chain(&error));
            let _ = worker_sender.blocking_send(Err(SourceError::Other(message)));
        }
    })
    .await;
    if let Err(error) = extracted {
        let _ = sender.send(Err(SourceError::Other(format!("reading the tarball GET {path} failed: {error}")))).await;
    }
}

/// Reads a gzip'd tar and sends its trail files. The archive must be whole: tar's end-of-archive blocks must
/// come before the end of the data, each file must be as long as its header says, and gzip's trailer (length and
/// CRC) must check out; otherwise an error, so a cut download never passes for a smaller repository.
fn extract<R: Read>(reader: R, trails: &TrailFilter, sender: &Sender<Item>) -> io::Result<()> {
    let mut archive = tar::Archive::new(EndOfData::new(flate2::read::GzDecoder::new(reader)));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(path) = trail_path(&entry.path_bytes(), trails) else {
            continue;
        };
        let size = entry.size();
        let mut content = Vec::with_capacity(usize::try_from(size.min(PREALLOCATE_LIMIT)).unwrap_or(0));
        entry.read_to_end(&mut content)?;
        if content.len() as u64 != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path}: the archive is cut short")));
        }
        if sender.blocking_send(Ok(TrailFileContent { path, content })).is_err() {
            return Ok(());
        }
    }
    let mut rest = archive.into_inner();
    if rest.reached_end {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends without its end-of-archive blocks"));
    }
    io::copy(&mut rest, &mut io::sink())?;
    Ok(())
}

/// The trail path of an archive member: GitHub puts everything under one `owner-repo-sha/` folder, which goes,
/// then the trails folder. `None` for other files and for names that are not UTF-8 (logged: Maltrail has none).
fn trail_path(member: &[u8], trails: &TrailFilter) -> Option<String> {
    let Ok(member) = std::str::from_utf8(member) else {
        tracing::warn!(name = %String::from_utf8_lossy(member), "skipping an archive member whose name is not UTF-8");
        return None;
    };
    let (_top, in_repository) = member.split_once('/')?;
    trails.relative(in_repository).map(str::to_owned)
}

/// A reader that remembers whether its source ran dry. tar stops without an error both at its end-of-archive
/// blocks and at the end of the data; this tells the two apart.
struct EndOfData<R> {
    inner: R,
    reached_end: bool,
}

impl<R> EndOfData<R> {
    fn new(inner: R) -> Self {
        Self { inner, reached_end: false }
    }
}

impl<R: Read> Read for EndOfData<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && !buf.is_empty() {
            self.reached_end = true;
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn run(bytes: &[u8]) -> (Vec<TrailFileContent>, io::Result<()>) {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
        let result = extract(bytes, &TrailFilter::new("trails/static"), &sender);
        drop(sender);
        let mut files = Vec::new();
        while let Ok(item) = receiver.try_recv() {
            files.push(item.unwrap());
        }
        (files, result)
    }

    #[test]
    fn keeps_trail_files_under_the_folder() {
        let bytes = archive(&[
            ("o-r-abc1234/README.md", b"readme"),
            ("o-r-abc1234/trails/static/malware/icarus _ransomware.txt", b"x.com\n"),
            ("o-r-abc1234/trails/static/mass_scanner.txt", b"1.2.3.4\n"),
            ("o-r-abc1234/trails/feeds/__init__.py", b""),
        ]);
        let (files, result) = run(&bytes);
        result.unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["malware/icarus _ransomware.txt", "mass_scanner.txt"]);
        assert_eq!(files[0].content, b"x.com\n");
    }

    #[test]
    fn a_cut_archive_is_an_error_wherever_it_is_cut() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("host{i}.example\n").into_bytes()).collect();
        let bytes = archive(&[("o-r-1/trails/static/a.txt", &big), ("o-r-1/trails/static/b.txt", b"b.example\n")]);
        for cut in [bytes.len() / 3, bytes.len() - 30, bytes.len() - 4] {
            let (_, result) = run(&bytes[..cut]);
            assert!(result.is_err(), "cut at {cut} of {}", bytes.len());
        }
        let (files, result) = run(&bytes);
        result.unwrap();
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn tar_without_end_blocks_is_an_error() {
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_path("o-r-1/trails/static/a.txt").unwrap();
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(b"a.b\n");
        tar.resize(1024, 0);
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut gzip, &tar).unwrap();
        let (files, result) = run(&gzip.finish().unwrap());
        assert_eq!(files.len(), 1);
        assert!(result.unwrap_err().to_string().contains("end-of-archive"));
    }
}
