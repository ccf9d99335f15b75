//! The full listing: one tarball of a commit, streamed through gzip and tar on a blocking thread, its trail files
//! sent one by one as they come out of the archive (the ~58 MB of trails are never held whole).
//!
//! The download itself is read ahead of the extraction, as fast as the network gives it: the run consumes files
//! at the pace RabbitMQ confirms them (minutes for a first import, with pauses while the broker reconnects), and a
//! socket left unread that long may be closed by GitHub's side, failing the whole import. The compressed archive
//! (~19 MB) is at most what the read-ahead holds.

use std::io::{self, Read};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::Sender;
use tokio_util::bytes::Bytes;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::TrailFilter;
use super::http::{Api, Get};
use crate::source::{SourceError, TrailFileContent};
use opencti_connector::error_chain;

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
    let reader = SyncIoBridge::new(StreamReader::new(read_ahead(api.body_stream(response))));
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

/// Drains `body` on a task of its own into an unbounded queue, and reads from that queue: the download finishes at
/// network speed whatever the pace of the reader. An error ends the stream after the chunks before it.
fn read_ahead(
    body: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let failed = chunk.is_err();
            // The reader went away (the run stopped): stop downloading.
            if sender.send(chunk).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }))
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

    #[tokio::test]
    async fn the_download_is_read_ahead_of_a_slow_reader_and_keeps_its_error() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let chunks = (0..100).map(|i| Ok(Bytes::from(vec![i as u8; 1024]))).chain([Err(io::Error::other("reset"))]);
        let body = futures_util::stream::iter(chunks).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let mut ahead = read_ahead(body);
        // Nothing read yet: the whole body is pulled from the network anyway.
        for _ in 0..100 {
            if pulled.load(Ordering::SeqCst) == 101 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(pulled.load(Ordering::SeqCst), 101, "every chunk pulled before the reader asked");
        let mut bytes = 0;
        let ended_with = loop {
            match ahead.next().await {
                Some(Ok(chunk)) => bytes += chunk.len(),
                other => break other,
            }
        };
        assert_eq!(bytes, 100 * 1024, "the chunks before the error, in full");
        assert!(matches!(ended_with, Some(Err(ref e)) if e.to_string() == "reset"), "then the error: {ended_with:?}");
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
