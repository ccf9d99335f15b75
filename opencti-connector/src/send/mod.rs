//! The sender: where a connector's bundles go. The platform's push queue (split into pycti's pieces, or into
//! multi-object bundles the platform splits, in pycti's envelope, published with confirms through a bounded
//! window), a directory of `DIRECTORY_BUNDLE` files, or both; or nowhere but a count (what a bundle would cost in
//! messages and expectations, before it is sent).
//!
//! A bundle is built object by object ([`OpenBundle`]); its messages go out in chunks as they come, so a bundle of
//! any size is sent in bounded memory. Each message's expectations follow the platform's rule (protocol §4): a
//! message holding one object counts one, a multi-object message the platform's worker splits counts none (the
//! worker adds its pieces' expectations itself).

mod directory;
mod endpoint;
mod envelope;
mod publisher;
mod split;
mod unverified_tls;

use std::sync::Arc;

use proto_stix::StixObject;

pub use directory::{ConnectorIdentity, DirectoryBundle, DirectoryOutput};
pub use endpoint::{AmqpEndpoint, EndpointError};
pub use envelope::Envelope;
pub use publisher::{PublishError, PublishOptions, PublishStats, Publisher};
pub use split::{Batcher, Piece, Sequencer, Splitter};

use crate::opencti::OpenCtiError;
use crate::settings::SplitMode;
use crate::work::Work;

/// Messages gathered before their expectations are announced and they are published.
const CHUNK_MESSAGES: usize = 2_000;

/// Why a bundle could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    OpenCti(#[from] OpenCtiError),
    #[error("cannot write the bundle file: {0}")]
    Directory(#[from] std::io::Error),
}

/// How bundles become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitSettings {
    pub mode: SplitMode,
    /// Most objects in a multi-object bundle ([`SplitMode::Platform`]).
    pub batch_size: usize,
    /// Most bytes of a multi-object bundle.
    pub batch_bytes: usize,
}

impl SplitSettings {
    /// pycti's: one object per message.
    pub const CLIENT: SplitSettings = SplitSettings { mode: SplitMode::Client, batch_size: 1, batch_bytes: 1 };

    fn splitter(&self, counting: bool) -> Splitter {
        match (self.mode, counting) {
            (SplitMode::Client, false) => Splitter::client(),
            (SplitMode::Client, true) => Splitter::count_client(),
            (SplitMode::Platform, _) => Splitter::platform(self.batch_size, self.batch_bytes),
        }
    }
}

/// Who announces the expectations of the messages a sender publishes.
#[derive(Debug, Clone)]
pub enum Expectations {
    /// The sender, on this work, for each chunk before publishing it (as pycti adds them before publishing).
    Announce(Work),
    /// Someone else did, before the sender was given the messages (a leader, for a whole job): the sender counts.
    AnnouncedElsewhere,
}

/// The platform's queue, for one work.
#[derive(Debug)]
pub struct QueueSink {
    pub publisher: Publisher,
    pub envelope: Envelope,
    pub expectations: Expectations,
}

/// What a sender did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounts {
    pub bundles: u64,
    /// Messages published (or, for a counting sender, that would be).
    pub messages: u64,
    /// Objects in those messages.
    pub objects: u64,
    /// Expectations those messages count on the work (platform rule: one per single-object message).
    pub expectations: u64,
    /// Bytes of the messages published (envelopes included).
    pub bytes: u64,
    /// Bundle files written.
    pub files: u64,
}

/// Sends bundles to the queue and/or a directory, or counts what they would cost.
#[derive(Debug)]
pub struct Sender {
    queue: Option<QueueSink>,
    directory: Option<Arc<DirectoryOutput>>,
    split: SplitSettings,
    counts: SendCounts,
}

/// A bundle being built.
#[derive(Debug)]
pub struct OpenBundle {
    /// `None` for a sender that only writes files (nothing to split).
    splitter: Option<Splitter>,
    file: Option<DirectoryBundle>,
    pending: Vec<Piece>,
    /// 1-based `action_sequence` of the next message.
    sequence: u64,
}

impl Sender {
    /// A sender to the queue and/or the directory.
    pub fn new(queue: Option<QueueSink>, directory: Option<Arc<DirectoryOutput>>, split: SplitSettings) -> Self {
        Self { queue, directory, split, counts: SendCounts::default() }
    }

    /// A sender that only counts: what bundles would cost in messages and expectations with `split`.
    pub fn counting(split: SplitSettings) -> Self {
        Self::new(None, None, split)
    }

    pub fn counts(&self) -> SendCounts {
        self.counts
    }

    /// Starts a bundle; `label` names its directory file.
    pub fn bundle(&self, label: &str) -> Result<OpenBundle, SendError> {
        let file = self.directory.as_ref().map(|directory| directory.begin(label)).transpose()?;
        let counting = self.queue.is_none() && self.directory.is_none();
        let splits = self.queue.is_some() || counting;
        Ok(OpenBundle {
            splitter: splits.then(|| self.split.splitter(counting)),
            file,
            pending: Vec::new(),
            sequence: 1,
        })
    }

    /// Publishes the bundle's pending messages once there are enough of them to be worth a round (or all of
    /// them when `all`).
    pub async fn send_ready(&mut self, bundle: &mut OpenBundle, all: bool) -> Result<(), SendError> {
        if bundle.pending.is_empty() || (!all && bundle.pending.len() < CHUNK_MESSAGES) {
            return Ok(());
        }
        let expectations: u64 = bundle.pending.iter().map(Piece::expectations).sum();
        let Some(queue) = self.queue.as_mut() else {
            for piece in bundle.pending.drain(..) {
                self.counts.messages += 1;
                self.counts.objects += piece.objects as u64;
            }
            self.counts.expectations += expectations;
            return Ok(());
        };
        if let (Expectations::Announce(work), true) = (&queue.expectations, expectations > 0) {
            work.add_expectations(expectations).await?;
        }
        self.counts.expectations += expectations;
        for piece in bundle.pending.drain(..) {
            let body = queue.envelope.message(bundle.sequence, &piece.bundle);
            bundle.sequence += 1;
            self.counts.bytes += body.len() as u64;
            queue.publisher.publish(body).await?;
            crate::metrics::global().published(piece.objects as u64);
            self.counts.messages += 1;
            self.counts.objects += piece.objects as u64;
        }
        Ok(())
    }

    /// Ends the bundle: the last messages are published and the directory file is completed.
    pub async fn close(&mut self, mut bundle: OpenBundle) -> Result<(), SendError> {
        if let Some(splitter) = bundle.splitter.as_mut() {
            splitter.finish(&mut bundle.pending);
        }
        self.send_ready(&mut bundle, true).await?;
        if let Some(file) = bundle.file.take() {
            file.finish()?;
            self.counts.files += 1;
        }
        self.counts.bundles += 1;
        Ok(())
    }

    /// Waits until RabbitMQ confirmed every published message: only then does anything count as sent.
    pub async fn confirm_all(&mut self) -> Result<(), SendError> {
        if let Some(queue) = self.queue.as_mut() {
            queue.publisher.flush().await?;
        }
        Ok(())
    }

    /// The publisher, for a drain or its counters.
    pub fn publisher(&mut self) -> Option<&mut Publisher> {
        self.queue.as_mut().map(|queue| &mut queue.publisher)
    }

    /// Closes the broker connection (after [`Sender::confirm_all`], nothing is lost).
    pub async fn close_connection(self) {
        if let Some(queue) = self.queue {
            queue.publisher.close().await;
        }
    }
}

impl OpenBundle {
    /// Adds an object every message of the bundle may reference (marking, author, family).
    pub fn header(&mut self, object: &StixObject<'_>) -> Result<(), SendError> {
        if let Some(file) = self.file.as_mut() {
            file.push(object)?;
        }
        if let Some(splitter) = self.splitter.as_mut() {
            splitter.header(object, &mut self.pending);
        }
        Ok(())
    }

    /// Adds a group of objects that go together (one trail's, in reference order).
    pub fn group(&mut self, objects: Vec<StixObject<'_>>) -> Result<(), SendError> {
        if let Some(file) = self.file.as_mut() {
            for object in &objects {
                file.push(object)?;
            }
        }
        if let Some(splitter) = self.splitter.as_mut() {
            splitter.group(objects, &mut self.pending);
        }
        Ok(())
    }
}
