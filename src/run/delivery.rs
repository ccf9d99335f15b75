//! Where a run's bundles go: the platform's push queue (split into pieces, each counted as an expectation on the
//! work before it is published) and/or a directory of `DIRECTORY_BUNDLE` files.
//!
//! A bundle is built trail by trail; its pieces are published in chunks, each chunk's expectations added to the
//! work first (as pycti adds them before publishing), so a file of any size goes out in bounded memory.

use proto_stix::StixObject;

use crate::directory_output::{DirectoryBundle, DirectoryOutput};
use crate::opencti::{OpenCti, OpenCtiError};
use crate::publish::{Envelope, PublishError, Publisher};
use crate::sequence::{Piece, Splitter};

/// Pieces gathered before their expectations are added and they are published.
const CHUNK_PIECES: usize = 2_000;

/// Why a bundle could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    OpenCti(#[from] OpenCtiError),
    #[error("cannot write the bundle file: {0}")]
    Directory(#[from] std::io::Error),
}

/// The platform's queue, for one work.
pub struct QueueTarget<'r> {
    pub publisher: &'r mut Publisher,
    pub opencti: &'r OpenCti,
    pub work_id: String,
    pub envelope: Envelope,
    /// `Some(n)`: multi-object bundles of `n` objects the platform splits; `None`: pycti's pieces.
    pub batch_size: Option<usize>,
}

/// What a run delivered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub bundles: u64,
    /// Messages published (each one an expectation on the work).
    pub messages: u64,
    /// Objects in those messages (equal to `messages` in client split mode).
    pub objects: u64,
    /// Bundle files written.
    pub files: u64,
}

/// A run's outputs.
pub struct Delivery<'r> {
    queue: Option<QueueTarget<'r>>,
    directory: Option<&'r DirectoryOutput>,
    counts: DeliveryCounts,
}

/// A bundle being built.
pub struct OpenBundle {
    splitter: Option<Splitter>,
    file: Option<DirectoryBundle>,
    pieces: Vec<Piece>,
    /// 1-based `action_sequence` of the next message.
    sequence: u64,
}

impl<'r> Delivery<'r> {
    pub fn new(queue: Option<QueueTarget<'r>>, directory: Option<&'r DirectoryOutput>) -> Self {
        Self { queue, directory, counts: DeliveryCounts::default() }
    }

    pub fn counts(&self) -> DeliveryCounts {
        self.counts
    }

    /// Starts a bundle; `label` names its directory file.
    pub fn open(&self, label: &str) -> Result<OpenBundle, DeliveryError> {
        let splitter = self.queue.as_ref().map(|queue| Splitter::new(queue.batch_size));
        let file = self.directory.map(|directory| directory.begin(label)).transpose()?;
        Ok(OpenBundle { splitter, file, pieces: Vec::new(), sequence: 1 })
    }

    /// Publishes the bundle's pending pieces once there are enough of them (or all of them when `all`).
    pub async fn send_ready(&mut self, bundle: &mut OpenBundle, all: bool) -> Result<(), DeliveryError> {
        if bundle.pieces.is_empty() || (!all && bundle.pieces.len() < CHUNK_PIECES) {
            return Ok(());
        }
        let Some(queue) = self.queue.as_mut() else {
            bundle.pieces.clear();
            return Ok(());
        };
        queue.opencti.add_expectations(&queue.work_id, bundle.pieces.len() as u64).await?;
        for piece in bundle.pieces.drain(..) {
            let body = queue.envelope.message(bundle.sequence, &piece.bundle);
            bundle.sequence += 1;
            queue.publisher.publish(body).await?;
            self.counts.messages += 1;
            self.counts.objects += piece.objects as u64;
        }
        Ok(())
    }

    /// Ends the bundle: the last pieces are published and the directory file is completed.
    pub async fn close(&mut self, mut bundle: OpenBundle) -> Result<(), DeliveryError> {
        if let Some(splitter) = bundle.splitter.as_mut() {
            splitter.finish(&mut bundle.pieces);
        }
        self.send_ready(&mut bundle, true).await?;
        if let Some(file) = bundle.file.take() {
            file.finish()?;
            self.counts.files += 1;
        }
        self.counts.bundles += 1;
        Ok(())
    }

    /// Waits until RabbitMQ confirmed every published message: only then does a run count as delivered.
    pub async fn confirm_all(&mut self) -> Result<(), DeliveryError> {
        if let Some(queue) = self.queue.as_mut() {
            queue.publisher.flush().await?;
        }
        Ok(())
    }
}

impl OpenBundle {
    /// Adds an object every piece of the bundle may reference (marking, author, family).
    pub fn header(&mut self, object: &StixObject<'_>) -> Result<(), DeliveryError> {
        if let Some(file) = self.file.as_mut() {
            file.push(object)?;
        }
        if let Some(splitter) = self.splitter.as_mut() {
            splitter.header(object, &mut self.pieces);
        }
        Ok(())
    }

    /// Adds one trail's objects (in reference order).
    pub fn group(&mut self, objects: Vec<StixObject<'_>>) -> Result<(), DeliveryError> {
        if let Some(file) = self.file.as_mut() {
            for object in &objects {
                file.push(object)?;
            }
        }
        if let Some(splitter) = self.splitter.as_mut() {
            splitter.group(objects, &mut self.pieces);
        }
        Ok(())
    }
}
