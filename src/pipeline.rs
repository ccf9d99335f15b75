//! One trail file's bundle, laid out once for every purpose (a run's queue and directory, the export's files, the
//! count of what a bundle will cost): the marking and the author, the family, each trail's objects in reference
//! order, then what is revoked; and, in a bundle of their own, the patches that revoke it through the platform's
//! edit path ([`crate::lifecycle`]). Counts what it lays out, the one place trails and objects are counted.

use std::collections::{BTreeMap, HashSet};

use opencti_connector::send::{SendError, Sender};
use proto_stix::{ObjectType, StixId, StixObject};

use crate::convert::{Converter, Times, Trail};
use crate::lifecycle;
use crate::trails::TrailFile;

/// One file's trails to send: active ones, revoked ones (from the file's previous version), and `indicates`
/// relationships to revoke (pattern, family name).
#[derive(Debug)]
pub struct FileSend<'a> {
    pub file: &'a TrailFile,
    pub active: Vec<&'a Trail<'a>>,
    pub revoked: Vec<(&'a TrailFile, &'a Trail<'a>)>,
    pub revoked_relations: Vec<(String, String)>,
}

impl<'a> FileSend<'a> {
    /// Every trail of `file`, active (a full import).
    pub fn all(file: &'a TrailFile, trails: &'a [Trail<'a>]) -> Self {
        Self { file, active: trails.iter().collect(), revoked: Vec::new(), revoked_relations: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.active.is_empty() && self.revoked.is_empty() && self.revoked_relations.is_empty()
    }
}

/// What was laid out, over any number of files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Laid {
    /// Indicators sent active.
    pub trails_sent: u64,
    /// Indicators sent revoked.
    pub trails_revoked: u64,
    /// `indicates` relationships sent revoked (a trail that left a family but stays elsewhere).
    pub relations_revoked: u64,
    /// Distinct objects per file, by type.
    pub objects: BTreeMap<&'static str, u64>,
    /// Patches (edits of objects the platform holds), apart from the objects.
    pub patches: u64,
}

impl Laid {
    pub fn merge(&mut self, other: Laid) {
        self.trails_sent += other.trails_sent;
        self.trails_revoked += other.trails_revoked;
        self.relations_revoked += other.relations_revoked;
        for (kind, n) in other.objects {
            *self.objects.entry(kind).or_default() += n;
        }
        self.patches += other.patches;
    }

    pub(crate) fn total_objects(&self) -> u64 {
        self.objects.values().sum()
    }

    fn count(&mut self, object: &StixObject<'_>) {
        *self.objects.entry(object.id().object_type().as_str()).or_default() += 1;
    }
}

/// Lays `send` out into one bundle of `sender`, and counts it in `laid`. Objects a file repeats (an observable two
/// trails share, `1.2.3.4:80` and `1.2.3.4:443`) are sent once.
pub async fn send_file(
    sender: &mut Sender,
    converter: &Converter,
    send: &FileSend<'_>,
    times: Times,
    laid: &mut Laid,
) -> Result<(), SendError> {
    if send.is_empty() {
        return Ok(());
    }
    let mut bundle = sender.bundle(&send.file.path)?;
    for object in converter.shared_objects() {
        laid.count(&object);
        bundle.header(&object)?;
    }
    let file_converter = converter.file(send.file, times);
    if !send.active.is_empty()
        && let Some(family) = file_converter.header()
    {
        laid.count(&family);
        bundle.header(&family)?;
    }
    let mut shared: HashSet<StixId> = HashSet::new();
    for trail in &send.active {
        let mut objects: Vec<StixObject<'_>> = Vec::with_capacity(4);
        file_converter.trail_objects(trail, false, &mut |object| {
            let id = object.id();
            let repeatable = matches!(
                id.object_type(),
                ObjectType::Ipv4Addr | ObjectType::Ipv6Addr | ObjectType::DomainName | ObjectType::Url
            );
            if !repeatable || shared.insert(id) {
                objects.push(object);
            }
        });
        objects.iter().for_each(|object| laid.count(object));
        bundle.group(objects)?;
        laid.trails_sent += 1;
        sender.send_ready(&mut bundle, false).await?;
    }
    // Revoked, as upserts: what creates a revoked indicator the platform never received (protocol §8)...
    let mut patches: Vec<StixObject<'static>> = Vec::with_capacity(send.revoked.len() + send.revoked_relations.len());
    for (old_file, trail) in &send.revoked {
        let old_converter = converter.file(old_file, times);
        let mut objects: Vec<StixObject<'_>> = Vec::with_capacity(1);
        old_converter.trail_objects(trail, true, &mut |object| objects.push(object));
        objects.iter().for_each(|object| laid.count(object));
        bundle.group(objects)?;
        patches.push(lifecycle::revoke(trail.id));
        laid.trails_revoked += 1;
    }
    for (pattern, family) in &send.revoked_relations {
        let relation = converter.revoked_indicates(pattern, family, times);
        laid.count(&relation);
        if let StixObject::Relationship(r) = &relation {
            patches.push(lifecycle::revoke_relationship(r.common.id, r.source_ref, r.target_ref));
        }
        bundle.group(vec![relation])?;
        laid.relations_revoked += 1;
    }
    sender.close(bundle).await?;
    // ...and as patches, what revokes one it holds: in a bundle of their own, never beside the object they edit.
    send_patches(sender, &format!("{} revocations", send.file.path), patches, laid).await
}

/// Sends `patches` in one bundle (one per message in client mode, as pycti sends them), labelled `label`.
pub async fn send_patches(
    sender: &mut Sender,
    label: &str,
    patches: Vec<StixObject<'static>>,
    laid: &mut Laid,
) -> Result<(), SendError> {
    if patches.is_empty() {
        return Ok(());
    }
    let mut bundle = sender.bundle(label)?;
    for patch in patches {
        laid.patches += 1;
        bundle.group(vec![patch])?;
        sender.send_ready(&mut bundle, false).await?;
    }
    sender.close(bundle).await
}
