//! Trail model → STIX 2.1 objects: the author, the TLP marking, one Malware per malware family, and per trail an
//! Indicator, optionally its observable with a `based-on` relationship, and `indicates` to the family.
//!
//! The modelling (names, descriptions, labels, scores, references) is documented in `docs/MODELLING.md`. Objects
//! borrow from the parsed file, and everything a file's indicators share (labels, reference blocks, markings) is
//! built once per file and borrowed by each indicator.

mod observation;

use std::borrow::Cow;
use std::collections::HashMap;

use proto_stix::id::{identity_id, indicator_id, malware_id, observable_value_id, relationship_id};
use proto_stix::{
    Common, ExternalReference, Identity, Indicator, MainObservableType, Malware, Relationship, StixId, StixObject,
    Timestamp, Tlp, ValueObservable,
};

pub(crate) use observation::observable_type;
pub use observation::observation;

use crate::trails::{Category, Entry, Reference, TrailFile};

/// The author's name: every object we emit is created by this identity.
pub(crate) const AUTHOR_NAME: &str = "Maltrail";
/// A fixed creation date for the author, so that every run emits the very same identity object.
const AUTHOR_CREATED: Timestamp = Timestamp::from_unix_millis(1_420_070_400_000); // 2015-01-01

/// The `x_opencti_score` of each category's indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    pub malware: u8,
    pub malicious: u8,
    pub suspicious: u8,
    pub mass_scanner: u8,
}

impl Default for Scores {
    fn default() -> Self {
        Self { malware: 80, malicious: 70, suspicious: 40, mass_scanner: 10 }
    }
}

impl Scores {
    pub fn of(&self, category: Category) -> u8 {
        match category {
            Category::Malware => self.malware,
            Category::Malicious => self.malicious,
            Category::Suspicious => self.suspicious,
            Category::MassScanner => self.mass_scanner,
        }
    }
}

/// The conversion knobs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvertOptions {
    /// Categories to import (default: malware, malicious, suspicious).
    pub categories: Vec<Category>,
    /// Emit the observable of each trail with a `based-on` relationship (default: on).
    pub create_observables: bool,
    pub scores: Scores,
    pub tlp: Tlp,
    /// How long an indicator holds after it is sent (or refreshed): its `valid_until` is that much later.
    #[serde(with = "seconds")]
    pub validity: std::time::Duration,
    /// Where a trail file is browsed, e.g. `https://github.com/stamparm/maltrail/blob/master/trails/static`;
    /// each indicator links to its file there.
    pub file_link_base: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            categories: vec![Category::Malware, Category::Malicious, Category::Suspicious],
            create_observables: true,
            scores: Scores::default(),
            tlp: Tlp::Clear,
            validity: DEFAULT_VALIDITY,
            file_link_base: "https://github.com/stamparm/maltrail/blob/master/trails/static".into(),
        }
    }
}

/// `MALTRAIL_VALIDITY`'s default: 30 days, so that a trail Maltrail still lists stays valid through a month of the
/// connector being down (the refresh renews it every third of that), and one it stops listing expires within a
/// month even were its revocation lost.
pub const DEFAULT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A duration as whole seconds, in job payloads.
mod seconds {
    pub fn serialize<S: serde::Serializer>(duration: &std::time::Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<std::time::Duration, D::Error> {
        let seconds = <u64 as serde::Deserialize>::deserialize(deserializer)?;
        Ok(std::time::Duration::from_secs(seconds))
    }
}

/// The times an object carries: `valid_from` (and `created`) is when the trail entered Maltrail where known, else
/// when the connector first sent it; `now` is this run's time (`modified`, and the time of a revocation);
/// `valid_until` ends the validity of what is sent active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Times {
    pub valid_from: Timestamp,
    pub now: Timestamp,
    pub valid_until: Timestamp,
}

impl Times {
    /// The times of a run at `now`, for trails valid from `valid_from`, valid for `validity`.
    pub fn new(valid_from: Timestamp, now: Timestamp, validity: std::time::Duration) -> Self {
        let validity_ms = i64::try_from(validity.as_millis()).unwrap_or(i64::MAX / 2);
        let valid_until = Timestamp::from_unix_millis(now.unix_millis().saturating_add(validity_ms));
        Self {
            valid_from,
            now,
            valid_until: valid_until.max(Timestamp::from_unix_millis(valid_from.unix_millis() + 1)),
        }
    }

    /// When a revoked indicator ceases to hold: now, and always after `valid_from`.
    pub fn revoked_until(&self) -> Timestamp {
        self.now.max(Timestamp::from_unix_millis(self.valid_from.unix_millis() + 1))
    }

    fn common<'x>(&self, id: StixId) -> Common<'x> {
        Common::new(id, self.valid_from, self.now.max(self.valid_from))
    }
}

/// Converts trail files with one set of options; holds the shared objects.
#[derive(Debug, Clone)]
pub struct Converter {
    options: ConvertOptions,
    author: Identity<'static>,
    marking_refs: [StixId; 1],
}

impl Converter {
    pub fn new(options: ConvertOptions) -> Self {
        let author_id = identity_id(AUTHOR_NAME, "organization");
        let mut common = Common::new(author_id, AUTHOR_CREATED, AUTHOR_CREATED);
        common.external_references = Cow::Owned(vec![ExternalReference {
            source_name: "GitHub".into(),
            description: Some("Maltrail, a malicious traffic detection system, and its static trails".into()),
            url: Some("https://github.com/stamparm/maltrail".into()),
            external_id: None,
        }]);
        let author = Identity {
            common,
            name: AUTHOR_NAME.into(),
            description: Some(
                "Maltrail (github.com/stamparm/maltrail) curates static trails: domains, IP addresses, URLs and \
                 paths of malware infrastructure, malicious and suspicious services and mass scanners."
                    .into(),
            ),
            identity_class: "organization".into(),
        };
        let marking_refs = [options.tlp.id()];
        Self { options, author, marking_refs }
    }

    pub fn options(&self) -> &ConvertOptions {
        &self.options
    }

    /// Whether trails of this category are imported.
    pub fn wants(&self, category: Category) -> bool {
        self.options.categories.contains(&category)
    }

    pub(crate) fn author_id(&self) -> StixId {
        self.author.common.id
    }

    /// The objects every bundle starts with: the TLP marking, then the author.
    pub fn shared_objects(&self) -> [StixObject<'static>; 2] {
        [
            StixObject::MarkingDefinition(self.options.tlp.marking_definition()),
            StixObject::Identity(self.author.clone()),
        ]
    }

    /// A converter for one file's trails.
    pub fn file<'a>(&'a self, file: &'a TrailFile, times: Times) -> FileConverter<'a> {
        FileConverter::new(self, file, times)
    }

    /// `indicates` from an indicator to a family, revoked: sent when a trail left a family's file but stays in the
    /// trail set elsewhere, so OpenCTI stops linking it to the old family.
    pub(crate) fn revoked_indicates(&self, pattern: &str, family: &str, times: Times) -> StixObject<'_> {
        let source = indicator_id(pattern);
        let target = malware_id(family);
        let mut common = times.common(relationship_id("indicates", &source, &target));
        common.revoked = true;
        common.created_by_ref = Some(self.author_id());
        common.object_marking_refs = Cow::Borrowed(&self.marking_refs);
        StixObject::Relationship(Relationship {
            common,
            relationship_type: "indicates".into(),
            description: None,
            source_ref: source,
            target_ref: target,
        })
    }
}

/// One trail of a file: the entries sharing one pattern (`evil.com` and `.evil.com`, or a value listed twice),
/// merged so that a bundle never holds two different objects with one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail<'a> {
    pub pattern: String,
    /// The indicator's id, derived from the pattern.
    pub id: StixId,
    /// What OpenCTI shows as the indicator's main observable type.
    pub main_observable_type: MainObservableType,
    /// The first entry with this pattern: its text names the indicator.
    pub entry: &'a Entry,
    /// The distinct reference blocks of every entry with this pattern, in file order.
    pub blocks: Vec<usize>,
}

/// The file's trails, one per distinct pattern, in file order.
pub fn file_trails(file: &TrailFile) -> Vec<Trail<'_>> {
    let mut trails: Vec<Trail<'_>> = Vec::with_capacity(file.entries.len());
    let mut index: HashMap<StixId, usize> = HashMap::with_capacity(file.entries.len());
    let mut scratch = String::new();
    for entry in &file.entries {
        let observation = observation(entry, &mut scratch);
        let pattern = observation.pattern();
        let id = indicator_id(&pattern);
        match index.get(&id) {
            Some(&at) => {
                let trail = &mut trails[at];
                if let Some(block) = entry.block.filter(|b| !trail.blocks.contains(b)) {
                    trail.blocks.push(block);
                }
            }
            None => {
                index.insert(id, trails.len());
                let main_observable_type = observation.main_observable_type();
                let blocks = entry.block.into_iter().collect();
                trails.push(Trail { pattern, id, main_observable_type, entry, blocks });
            }
        }
    }
    trails
}

/// The family a malware file describes: the first `# Aliases:` name, else the file stem; the other names and the
/// stem become aliases (no name twice, ignoring case).
pub fn family_names(file: &TrailFile) -> (String, Vec<String>) {
    let name = file.aliases.first().cloned().unwrap_or_else(|| file.stem.clone());
    let mut aliases: Vec<String> = Vec::new();
    for candidate in file.aliases.iter().skip(1).chain(std::iter::once(&file.stem)) {
        let lower = candidate.to_lowercase();
        if lower != name.to_lowercase() && !aliases.iter().any(|a| a.to_lowercase() == lower) {
            aliases.push(candidate.clone());
        }
    }
    (name, aliases)
}

fn reference_source_name(url: &str) -> &str {
    let host = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = host.split(['/', '?', '#']).next().unwrap_or(host);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.strip_prefix("www.").unwrap_or(host);
    if host.is_empty() { "reference" } else { host }
}

fn external_reference(reference: &Reference) -> ExternalReference<'_> {
    ExternalReference {
        source_name: reference_source_name(&reference.url).into(),
        description: reference.note.as_deref().map(Cow::Borrowed),
        url: Some(Cow::Borrowed(&reference.url)),
        external_id: None,
    }
}

/// Converts one file's trails; everything the file's objects share is built once here.
#[derive(Debug)]
pub struct FileConverter<'a> {
    converter: &'a Converter,
    file: &'a TrailFile,
    times: Times,
    score: u8,
    labels: Vec<Cow<'a, str>>,
    description: String,
    indicator_types: [Cow<'static, str>; 1],
    /// Per reference block: its references, then the link to the file.
    block_refs: Vec<Vec<ExternalReference<'a>>>,
    /// The link to the file alone, for entries outside any block.
    file_refs: [ExternalReference<'a>; 1],
    family: Option<Malware<'a>>,
}

impl<'a> FileConverter<'a> {
    fn new(converter: &'a Converter, file: &'a TrailFile, times: Times) -> Self {
        let options = &converter.options;
        let file_url = proto_stix::uri::encode_url(&format!("{}/{}", options.file_link_base, file.path))
            .map(Cow::into_owned)
            .unwrap_or_else(|| options.file_link_base.clone());
        let file_link = ExternalReference {
            source_name: "Maltrail".into(),
            description: Some(format!("Maltrail trail file {}", file.path).into()),
            url: Some(file_url.into()),
            external_id: None,
        };
        let block_refs = file
            .blocks
            .iter()
            .map(|block| block.iter().map(external_reference).chain([file_link.clone()]).collect())
            .collect();
        let family = (file.category == Category::Malware).then(|| {
            let (name, aliases) = family_names(file);
            let mut common = times.common(malware_id(&name));
            common.created_by_ref = Some(converter.author_id());
            common.object_marking_refs = Cow::Borrowed(&converter.marking_refs);
            common.labels = Cow::Owned(vec![Cow::Borrowed("maltrail")]);
            common.external_references = Cow::Owned(vec![file_link.clone()]);
            Malware {
                common,
                description: Some(
                    format!("Malware family whose infrastructure Maltrail tracks in {}.", file.path).into(),
                ),
                name: name.into(),
                aliases: Cow::Owned(aliases.into_iter().map(Cow::Owned).collect()),
                is_family: true,
            }
        });
        let description = match (&family, file.category) {
            (Some(malware), _) => format!("Maltrail trail: infrastructure of the malware family {}", malware.name),
            (None, Category::Malicious) => format!("Maltrail trail: malicious ({})", file.stem),
            (None, Category::Suspicious) => format!("Maltrail trail: suspicious ({})", file.stem),
            (None, _) => "Maltrail trail: known mass scanner".to_owned(),
        };
        let indicator_type = match file.category {
            Category::Malware | Category::Malicious => "malicious-activity",
            Category::Suspicious => "anomalous-activity",
            Category::MassScanner => "benign",
        };
        Self {
            converter,
            file,
            times,
            score: options.scores.of(file.category),
            labels: vec![
                Cow::Borrowed("maltrail"),
                Cow::Borrowed(file.category.as_str()),
                Cow::Borrowed(file.stem.as_str()),
            ],
            description,
            indicator_types: [Cow::Borrowed(indicator_type)],
            block_refs,
            file_refs: [file_link],
            family,
        }
    }

    /// The family object, for a malware file.
    pub fn family(&self) -> Option<&Malware<'a>> {
        self.family.as_ref()
    }

    /// The objects that open the file's bundle after the shared ones: the family, for a malware file.
    pub fn header(&self) -> Option<StixObject<'a>> {
        self.family.clone().map(StixObject::Malware)
    }

    fn common<'t>(&'t self, id: StixId) -> Common<'t> {
        let mut common = self.times.common(id);
        common.created_by_ref = Some(self.converter.author_id());
        common.object_marking_refs = Cow::Borrowed(&self.converter.marking_refs);
        common
    }

    /// The objects of one trail, in reference order: indicator, observable, `based-on`, `indicates`. A revoked
    /// trail is its indicator alone, with `revoked: true`.
    pub fn trail_objects<'t>(&'t self, trail: &'t Trail<'a>, revoked: bool, out: &mut impl FnMut(StixObject<'t>)) {
        let entry = trail.entry;
        let indicator_id = trail.id;
        let mut common = self.common(indicator_id);
        common.revoked = revoked;
        common.labels = Cow::Borrowed(&self.labels);
        common.external_references = self.external_references(trail);
        let description = match &entry.comment {
            Some(comment) => format!("{} (comment: {comment})", self.description),
            None => self.description.clone(),
        };
        out(StixObject::Indicator(Indicator {
            common,
            name: Cow::Borrowed(&entry.text),
            description: Some(description.into()),
            indicator_types: Cow::Borrowed(&self.indicator_types),
            pattern: Cow::Borrowed(&trail.pattern),
            pattern_type: Cow::Borrowed("stix"),
            valid_from: self.times.valid_from,
            valid_until: Some(if revoked { self.times.revoked_until() } else { self.times.valid_until }),
            x_opencti_score: Some(self.score),
            x_opencti_main_observable_type: Some(Cow::Borrowed(trail.main_observable_type.as_str())),
            x_opencti_detection: Some(self.file.category != Category::MassScanner),
            x_opencti_create_observables: Some(false),
        }));
        if revoked {
            return;
        }
        if self.converter.options.create_observables
            && let Some(object_type) = observable_type(entry.form)
        {
            let observable_id = observable_value_id(object_type, &entry.value);
            let observable = ValueObservable {
                spec_version: proto_stix::SpecVersion,
                id: observable_id,
                value: Cow::Borrowed(&entry.value),
                object_marking_refs: Cow::Borrowed(&self.converter.marking_refs),
                x_opencti_created_by_ref: Some(self.converter.author_id()),
                x_opencti_score: Some(self.score),
                x_opencti_description: None,
                x_opencti_labels: Cow::Borrowed(&self.labels),
            };
            out(match object_type {
                proto_stix::ObjectType::Ipv4Addr => StixObject::Ipv4Addr(observable),
                proto_stix::ObjectType::Ipv6Addr => StixObject::Ipv6Addr(observable),
                proto_stix::ObjectType::DomainName => StixObject::DomainName(observable),
                _ => StixObject::Url(observable),
            });
            out(self.relationship("based-on", indicator_id, observable_id));
        }
        if let Some(family) = &self.family {
            out(self.relationship("indicates", indicator_id, family.common.id));
        }
    }

    /// The trail's references: its block's (borrowed, shared by the block's trails) or, for a trail listed in
    /// several blocks, the union of theirs.
    fn external_references<'t>(&'t self, trail: &Trail<'a>) -> Cow<'t, [ExternalReference<'t>]> {
        match trail.blocks.as_slice() {
            [] => Cow::Borrowed(&self.file_refs[..]),
            [block] => Cow::Borrowed(&self.block_refs[*block][..]),
            blocks => {
                let mut refs: Vec<ExternalReference<'t>> = Vec::new();
                for reference in blocks.iter().flat_map(|b| &self.block_refs[*b]) {
                    if !refs.contains(reference) {
                        refs.push(reference.clone());
                    }
                }
                Cow::Owned(refs)
            }
        }
    }

    fn relationship<'t>(&'t self, kind: &'static str, source: StixId, target: StixId) -> StixObject<'t> {
        StixObject::Relationship(Relationship {
            common: self.common(relationship_id(kind, &source, &target)),
            relationship_type: Cow::Borrowed(kind),
            description: None,
            source_ref: source,
            target_ref: target,
        })
    }
}
