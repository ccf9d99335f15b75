//! Planning an incremental run: from the changed files' old and new contents, which trails to send, which to
//! revoke, and which `indicates` relationships to revoke.
//!
//! The rule: a trail is revoked only when it left the trail set. A trail removed from one file but present in any
//! changed file's new version (moved, or duplicated) stays active; and when revocation candidates remain, one pass
//! over the head revision (a single archive download on GitHub) keeps active every candidate still listed in a file
//! the change did not touch. Likewise a trail that left a family's file is unlinked from that family (its
//! `indicates` revoked) only if no file of the same family still lists it. So nothing is revoked that Maltrail
//! still lists, and no indicator is sent both active and revoked in one run.
//!
//! The plan keeps each file's bytes and the ids decided, never the parsed files: a file is parsed when it is looked
//! at, and again when it is sent (by whichever worker takes it), so memory follows one file, not the change.

use std::collections::{BTreeMap, HashMap, HashSet};

use proto_stix::StixId;
use proto_stix::id::malware_id;

use crate::convert::{Converter, Trail, family_names, file_trails, observation};
use crate::pipeline::FileSend;
use crate::source::{FileChange, Revision, Source, SourceError};
use crate::trails::{Category, TrailFile, parse_file};

/// One changed trail file and what to revoke of it (what to add follows from its two versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePlan {
    pub path: String,
    /// The content before, `None` when the file was added.
    pub old: Option<Vec<u8>>,
    /// The content after, `None` when the file was removed.
    pub new: Option<Vec<u8>>,
    /// Indicators of the old version to send revoked.
    pub revoked: HashSet<StixId>,
    /// `indicates` to revoke: (pattern, family name).
    pub revoked_relations: Vec<(String, String)>,
}

/// The plan of an incremental run.
#[derive(Debug, Clone, Default)]
pub(crate) struct IncrementalPlan {
    pub files: Vec<FilePlan>,
}

/// A changed file's two versions, parsed, and what to send of them.
pub(crate) struct ParsedChange {
    old: Option<TrailFile>,
    new: Option<TrailFile>,
}

impl ParsedChange {
    /// Parses a file plan's versions; `None` when neither is a trail file of a known category.
    pub fn of(plan: &FilePlan) -> Option<Self> {
        let old = plan.old.as_deref().and_then(|content| parse_file(&plan.path, content));
        let new = plan.new.as_deref().and_then(|content| parse_file(&plan.path, content));
        (old.is_some() || new.is_some()).then_some(Self { old, new })
    }

    /// The new version, for its skipped lines and counts.
    pub fn new_file(&self) -> Option<&TrailFile> {
        self.new.as_ref()
    }

    pub fn trails(&self) -> (Vec<Trail<'_>>, Vec<Trail<'_>>) {
        (self.old.as_ref().map(file_trails).unwrap_or_default(), self.new.as_ref().map(file_trails).unwrap_or_default())
    }

    /// What to send: the trails the new version added (when its category is imported), the old version's trails
    /// the plan revokes, and the relationships it unlinks.
    pub fn send<'a>(
        &'a self,
        plan: &FilePlan,
        old_trails: &'a [Trail<'a>],
        new_trails: &'a [Trail<'a>],
        converter: &Converter,
    ) -> Option<FileSend<'a>> {
        let file = self.new.as_ref().or(self.old.as_ref())?;
        let active = if converter.wants(file.category) {
            let old_ids: HashSet<StixId> = old_trails.iter().map(|t| t.id).collect();
            new_trails.iter().filter(|t| !old_ids.contains(&t.id)).collect()
        } else {
            Vec::new()
        };
        let revoked = match &self.old {
            Some(old) => old_trails.iter().filter(|t| plan.revoked.contains(&t.id)).map(|t| (old, t)).collect(),
            None => Vec::new(),
        };
        Some(FileSend { file, active, revoked, revoked_relations: plan.revoked_relations.clone() })
    }
}

/// The family (malware id) a malware file describes.
fn family_of(file: &TrailFile) -> Option<(StixId, String)> {
    (file.category == Category::Malware).then(|| {
        let (name, _) = family_names(file);
        (malware_id(&name), name)
    })
}

/// `Entry::value` without trailing `/`: every entry with the same pattern has this key.
fn prefilter_key(value: &str) -> &str {
    value.trim_end_matches('/')
}

/// Plans an incremental run from the changed files. Reads the head revision once more only when revocation
/// candidates remain after looking at the changed files.
pub(crate) async fn plan_incremental(
    source: &Source,
    head: &Revision,
    changes: Vec<FileChange>,
    converter: &Converter,
) -> Result<IncrementalPlan, SourceError> {
    let mut files: Vec<FilePlan> = changes
        .into_iter()
        .map(|change| FilePlan {
            path: change.path,
            old: change.old,
            new: change.new,
            revoked: HashSet::new(),
            revoked_relations: Vec::new(),
        })
        .filter(|plan| ParsedChange::of(plan).is_some())
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));

    // What the changed files list after the change, in any category: such trails stay active.
    let mut present: HashSet<StixId> = HashSet::new();
    let mut present_in_family: HashSet<(StixId, StixId)> = HashSet::new();
    for plan in &files {
        let Some(new) = plan.new.as_deref().and_then(|content| parse_file(&plan.path, content)) else { continue };
        let family = family_of(&new);
        for trail in file_trails(&new) {
            present.insert(trail.id);
            if let Some((family_id, _)) = &family {
                present_in_family.insert((trail.id, *family_id));
            }
        }
    }

    // Revocation candidates: indicator → prefilter key.
    let mut candidates: HashMap<StixId, String> = HashMap::new();
    // (indicator, family) → (pattern, family name, file index, prefilter key): relationships that may be revoked.
    let mut relation_candidates: BTreeMap<(StixId, StixId), (String, String, usize, String)> = BTreeMap::new();
    for (index, plan) in files.iter_mut().enumerate() {
        let Some(parsed) = ParsedChange::of(plan) else { continue };
        let category = parsed.new.as_ref().or(parsed.old.as_ref()).map(|f| f.category);
        if !category.is_some_and(|c| converter.wants(c)) {
            continue;
        }
        let (old_trails, new_trails) = parsed.trails();
        let new_ids: HashSet<StixId> = new_trails.iter().map(|t| t.id).collect();
        let old_family = parsed.old.as_ref().and_then(family_of);
        for trail in old_trails.iter().filter(|t| !new_ids.contains(&t.id)) {
            if !present.contains(&trail.id) {
                plan.revoked.insert(trail.id);
                candidates.insert(trail.id, prefilter_key(&trail.entry.value).to_owned());
            }
            // Leaving the family's file unlinks the trail from the family, unless the trail is revoked as a whole
            // or another file of the family lists it (both settled below).
            if let Some((family_id, family_name)) = &old_family
                && !present_in_family.contains(&(trail.id, *family_id))
            {
                let key = prefilter_key(&trail.entry.value).to_owned();
                relation_candidates
                    .insert((trail.id, *family_id), (trail.pattern.clone(), family_name.clone(), index, key));
            }
        }
    }

    if !candidates.is_empty() || !relation_candidates.is_empty() {
        check_against_head(source, head, &files, &mut candidates, &mut relation_candidates).await?;
    }

    for plan in &mut files {
        plan.revoked.retain(|id| candidates.contains_key(id));
    }
    // A trail revoked as a whole needs no unlinking.
    relation_candidates.retain(|(id, _), _| !candidates.contains_key(id));
    for (pattern, family, index, _) in relation_candidates.into_values() {
        if let Some(plan) = files.get_mut(index) {
            plan.revoked_relations.push((pattern, family));
        }
    }
    Ok(IncrementalPlan { files })
}

/// Keeps active every candidate still listed in a file of `head` the change did not touch: one pass over the head
/// revision, looking only at entries whose key is a candidate's.
async fn check_against_head(
    source: &Source,
    head: &Revision,
    files: &[FilePlan],
    candidates: &mut HashMap<StixId, String>,
    relation_candidates: &mut BTreeMap<(StixId, StixId), (String, String, usize, String)>,
) -> Result<(), SourceError> {
    let changed: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut keys: HashSet<String> = candidates.values().cloned().collect();
    keys.extend(relation_candidates.values().map(|(_, _, _, key)| key.clone()));
    let relation_ids: HashSet<StixId> = relation_candidates.keys().map(|(id, _)| *id).collect();
    tracing::info!(
        indicators = candidates.len(),
        relationships = relation_candidates.len(),
        "checking revocation candidates against the whole head revision"
    );
    let mut stream = source.files(head);
    let mut scratch = String::new();
    let (mut head_files, mut scanned_files) = (0u64, 0u64);
    while let Some(item) = stream.recv().await {
        let content = item?;
        head_files += 1;
        if changed.contains(content.path.as_str()) {
            continue;
        }
        let Some(file) = parse_file(&content.path, &content.content) else { continue };
        scanned_files += 1;
        let family = family_of(&file);
        for entry in file.entries.iter().filter(|e| keys.contains(prefilter_key(&e.value))) {
            let id = proto_stix::id::indicator_id(&observation(entry, &mut scratch).pattern());
            candidates.remove(&id);
            if let (Some((family_id, _)), true) = (&family, relation_ids.contains(&id)) {
                relation_candidates.remove(&(id, *family_id));
            }
        }
        if candidates.is_empty() && relation_candidates.is_empty() {
            break;
        }
    }
    // The trails folder vanished (moved, or a wrong MALTRAIL_PATH): that is no reason to revoke everything.
    if head_files == 0 {
        return Err(SourceError::Other(format!(
            "{} holds no trail file at {}: not revoking every trail (check MALTRAIL_PATH)",
            source.describe(),
            head.id
        )));
    }
    tracing::info!(scanned_files, "revocation candidates checked against the head revision");
    Ok(())
}
