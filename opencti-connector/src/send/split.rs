//! pycti-compatible pieces from a stream of STIX objects, without holding the bundle: one object per message,
//! `x_opencti_seq` = its dependency count, duplicates left out; and the batched alternative the platform splits,
//! bounded in objects and in bytes.
//!
//! pycti's `OpenCTIStix2Splitter` counts, for every object, 1 + the count of each object it references (through any
//! `*_ref`/`*_refs` property) that is present in the same bundle, then publishes in ascending count. A stream whose
//! objects come after everything they reference (our converter emits marking, author, family, then each trail's
//! indicator, observable and relationships) yields exactly the same counts one object at a time, and publishing in
//! stream order already puts every object after its references. Only the global sort differs, which the platform
//! does not need (its worker retries a piece whose references are missing; we never send one).

use std::collections::{HashMap, HashSet};

use proto_stix::bundle::{BundleWriter, piece};
use proto_stix::{ObjectType, StixId, StixObject};

/// One message's worth of STIX: a bundle and how many objects it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The bundle's JSON bytes.
    pub bundle: Vec<u8>,
    /// Objects in the bundle (1 in client split mode).
    pub objects: usize,
}

impl Piece {
    /// The expectations the message counts on its work (protocol §4): one for a single object, which the
    /// platform's worker imports and reports; none for several objects (sent with `no_split: false`), which the
    /// worker splits, adding its pieces' expectations itself and reporting nothing for the message.
    pub fn expectations(&self) -> u64 {
        u64::from(self.objects == 1)
    }
}

/// Turns a bundle's objects into pycti's single-object pieces, streaming.
#[derive(Debug)]
pub struct Sequencer {
    bundle_id: StixId,
    /// Dependency count of every object already sequenced in this bundle.
    deps: HashMap<StixId, u32>,
    json: Vec<u8>,
}

impl Sequencer {
    /// A sequencer for one bundle; every piece carries `bundle_id`, as pycti's pieces carry the original bundle id.
    pub fn new(bundle_id: StixId) -> Self {
        Self { bundle_id, deps: HashMap::new(), json: Vec::with_capacity(4096) }
    }

    pub fn bundle_id(&self) -> StixId {
        self.bundle_id
    }

    /// The dependency count pycti gives `object`: 1 + the count of each reference already in the bundle (a
    /// reference listed twice counts twice, as in pycti; a self-reference does not count).
    pub(crate) fn dependency_count(&self, object: &StixObject<'_>) -> u32 {
        let own = object.id();
        let mut count = 1u32;
        object.for_each_ref(|reference| {
            if reference != own {
                count = count.saturating_add(self.deps.get(&reference).copied().unwrap_or(0));
            }
        });
        count
    }

    /// The piece for `object`, or `None` when an object with its id is already in the bundle (pycti keeps one
    /// piece per id). Objects must come after the objects they reference.
    pub fn piece(&mut self, object: &StixObject<'_>) -> Option<Piece> {
        let id = object.id();
        if self.deps.contains_key(&id) {
            return None;
        }
        let seq = self.dependency_count(object);
        self.deps.insert(id, seq);
        self.json.clear();
        object.write_json(&mut self.json);
        Some(Piece { bundle: piece(self.bundle_id, seq, &self.json), objects: 1 })
    }

    /// Distinct objects sequenced so far.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }
}

/// Groups a bundle's objects into multi-object bundles of at most `max_objects` objects besides the header and at
/// most `max_bytes` bytes (unless one group alone is larger), which the platform's worker splits. Every batch
/// repeats the bundle's header objects
/// (marking, author, family) so that it is self-contained, and a trail's objects are never split across two
/// batches, so no batch references an object its worker has not seen: an object two trails share (one observable
/// for `1.2.3.4:80` and `1.2.3.4:443`) goes in every batch that needs it.
#[derive(Debug)]
pub struct Batcher {
    max_objects: usize,
    max_bytes: usize,
    header: Vec<Vec<u8>>,
    current: Option<BundleWriter>,
    /// Objects in `current` besides the header.
    current_objects: usize,
    batches: usize,
    /// Ids in the header and in the current batch.
    seen: HashSet<StixId>,
    header_ids: HashSet<StixId>,
}

impl Batcher {
    pub fn new(max_objects: usize, max_bytes: usize) -> Self {
        Self {
            max_objects: max_objects.max(1),
            max_bytes,
            header: Vec::new(),
            current: None,
            current_objects: 0,
            batches: 0,
            seen: HashSet::new(),
            header_ids: HashSet::new(),
        }
    }

    /// Adds an object every batch starts with. Header objects come before any group.
    pub fn push_header(&mut self, object: &StixObject<'_>) {
        if self.header_ids.insert(object.id()) {
            self.seen.insert(object.id());
            let mut json = Vec::new();
            object.write_json(&mut json);
            self.header.push(json);
        }
    }

    /// The JSON of the objects of `objects` the current batch does not hold yet, each once.
    fn new_objects(&self, objects: &[StixObject<'_>]) -> Vec<(StixId, Vec<u8>)> {
        let mut jsons: Vec<(StixId, Vec<u8>)> = Vec::with_capacity(objects.len());
        for object in objects {
            let id = object.id();
            if !self.seen.contains(&id) && !jsons.iter().any(|(seen, _)| *seen == id) {
                let mut json = Vec::with_capacity(1024);
                object.write_json(&mut json);
                jsons.push((id, json));
            }
        }
        jsons
    }

    /// Adds one trail's objects, kept in one batch. Returns the previous batch when these did not fit in it.
    pub fn push_group<'o>(&mut self, objects: impl IntoIterator<Item = StixObject<'o>>) -> Option<Piece> {
        let objects: Vec<StixObject<'o>> = objects.into_iter().collect();
        let mut jsons = self.new_objects(&objects);
        let added_bytes: usize = jsons.iter().map(|(_, json)| json.len() + 1).sum();
        let current_bytes = self.current.as_ref().map_or(0, BundleWriter::byte_len);
        let fits =
            self.current_objects + jsons.len() <= self.max_objects && current_bytes + added_bytes <= self.max_bytes;
        let mut finished = None;
        if self.current_objects > 0 && !fits {
            finished = self.take_current();
            // The new batch holds none of the last one's objects: some of these may be needed again.
            jsons = self.new_objects(&objects);
        }
        if jsons.is_empty() {
            return finished;
        }
        let jsons: Vec<Vec<u8>> = jsons
            .into_iter()
            .map(|(id, json)| {
                self.seen.insert(id);
                json
            })
            .collect();
        let header = &self.header;
        let writer = self.current.get_or_insert_with(|| {
            let mut writer = BundleWriter::new(StixId::random(ObjectType::Bundle), None);
            header.iter().for_each(|json| writer.push_json(json));
            writer
        });
        jsons.iter().for_each(|json| writer.push_json(json));
        self.current_objects += jsons.len();
        finished
    }

    fn take_current(&mut self) -> Option<Piece> {
        let writer = self.current.take()?;
        self.current_objects = 0;
        self.seen.clone_from(&self.header_ids);
        self.batches += 1;
        let objects = writer.object_count();
        Some(Piece { bundle: writer.finish(), objects })
    }

    /// The last batch. A bundle with a header and no group still goes out once, as the header alone.
    pub fn finish(&mut self) -> Option<Piece> {
        if self.current.is_none() && self.batches == 0 && !self.header.is_empty() {
            let mut writer = BundleWriter::new(StixId::random(ObjectType::Bundle), None);
            self.header.iter().for_each(|json| writer.push_json(json));
            self.current = Some(writer);
        }
        self.take_current()
    }
}

/// How a bundle becomes messages: pycti's client-side split, or batches the platform splits; or, to know what a
/// bundle will cost before sending it, pycti's pieces counted without being written.
#[derive(Debug)]
pub enum Splitter {
    Client(Sequencer),
    Platform(Batcher),
    /// The ids of the pieces pycti's split would give (one per distinct object): empty pieces, counted.
    CountClient(HashSet<StixId>),
}

impl Splitter {
    /// pycti's pieces, for one bundle.
    pub fn client() -> Self {
        Self::Client(Sequencer::new(StixId::random(ObjectType::Bundle)))
    }

    /// pycti's pieces, counted but not written.
    pub fn count_client() -> Self {
        Self::CountClient(HashSet::new())
    }

    /// Batches of at most `objects` objects and `bytes` bytes, for one bundle.
    pub fn platform(objects: usize, bytes: usize) -> Self {
        Self::Platform(Batcher::new(objects, bytes))
    }

    /// Adds an object every message of the bundle depends on (marking, author, family).
    pub fn header(&mut self, object: &StixObject<'_>, out: &mut Vec<Piece>) {
        match self {
            Self::Client(sequencer) => out.extend(sequencer.piece(object)),
            Self::Platform(batcher) => batcher.push_header(object),
            Self::CountClient(seen) => out.extend(counted(seen, object)),
        }
    }

    /// Adds one trail's objects.
    pub fn group<'o>(&mut self, objects: Vec<StixObject<'o>>, out: &mut Vec<Piece>) {
        match self {
            Self::Client(sequencer) => out.extend(objects.iter().filter_map(|object| sequencer.piece(object))),
            Self::Platform(batcher) => out.extend(batcher.push_group(objects)),
            Self::CountClient(seen) => out.extend(objects.iter().filter_map(|object| counted(seen, object))),
        }
    }

    /// Ends the bundle.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if let Self::Platform(batcher) = self {
            out.extend(batcher.finish());
        }
    }
}

/// An empty piece for `object` when its id is new to the bundle.
fn counted(seen: &mut HashSet<StixId>, object: &StixObject<'_>) -> Option<Piece> {
    seen.insert(object.id()).then(|| Piece { bundle: Vec::new(), objects: 1 })
}
