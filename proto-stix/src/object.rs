//! The STIX 2.1 objects the connector emits, as serde types: identity, marking definition, malware, indicator,
//! relationship, and the value observables (ipv4-addr, ipv6-addr, domain-name, url), plus the OpenCTI extension
//! properties (`x_opencti_*`) the platform reads.
//!
//! Text is `Cow<'a, str>` so that objects built from a parsed trail file borrow from it instead of copying, and the
//! per-file lists every indicator repeats (labels, reference blocks, markings) are borrowed slices.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::StixId;
use crate::timestamp::Timestamp;

/// A list of strings shared or owned.
pub type Strings<'a> = Cow<'a, [Cow<'a, str>]>;

/// The `spec_version` property: always `2.1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecVersion;

impl Serialize for SpecVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("2.1")
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        if text == "2.1" {
            Ok(SpecVersion)
        } else {
            Err(serde::de::Error::custom(format!("spec_version `{text}` is not 2.1")))
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

// serde's `skip_serializing_if` passes `&field`, so the parameter must be `&Cow`.
#[allow(clippy::ptr_arg)]
fn is_empty<T: Clone>(value: &Cow<'_, [T]>) -> bool {
    value.is_empty()
}

/// An external reference (`external_references` entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExternalReference<'a> {
    pub source_name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Cow<'a, str>>,
}

/// The common properties of the domain and relationship objects (SDO/SRO) we emit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Common<'a> {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created: Timestamp,
    pub modified: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_ref: Option<StixId>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub revoked: bool,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub labels: Strings<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub external_references: Cow<'a, [ExternalReference<'a>]>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub object_marking_refs: Cow<'a, [StixId]>,
}

impl Common<'_> {
    /// Common properties with only the mandatory ones set.
    pub fn new(id: StixId, created: Timestamp, modified: Timestamp) -> Self {
        Self {
            spec_version: SpecVersion,
            id,
            created,
            modified,
            created_by_ref: None,
            revoked: false,
            labels: Cow::Borrowed(&[]),
            confidence: None,
            external_references: Cow::Borrowed(&[]),
            object_marking_refs: Cow::Borrowed(&[]),
        }
    }

    fn for_each_ref(&self, f: &mut impl FnMut(StixId)) {
        self.created_by_ref.into_iter().for_each(&mut *f);
        self.object_marking_refs.iter().copied().for_each(f);
    }
}

/// Identity SDO (the author of everything we emit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    pub name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    pub identity_class: Cow<'a, str>,
}

/// The `definition` of a marking definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MarkingContent<'a> {
    Tlp { tlp: Cow<'a, str> },
    Statement { statement: Cow<'a, str> },
}

/// Marking definition (TLP). See [`crate::marking`] for the objects OpenCTI recognises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkingDefinition<'a> {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub created: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_ref: Option<StixId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    pub definition_type: Cow<'a, str>,
    pub definition: MarkingContent<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_definition_type: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_definition: Option<Cow<'a, str>>,
}

/// Malware SDO (a family, for us).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Malware<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    pub name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub aliases: Strings<'a>,
    pub is_family: bool,
}

/// Indicator SDO, with the OpenCTI extension properties the platform reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    pub name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub indicator_types: Strings<'a>,
    pub pattern: Cow<'a, str>,
    pub pattern_type: Cow<'a, str>,
    pub valid_from: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_main_observable_type: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_detection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_create_observables: Option<bool>,
}

/// Relationship SRO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    pub relationship_type: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    pub source_ref: StixId,
    pub target_ref: StixId,
}

/// An observable (SCO) identified by its `value`: ipv4-addr, ipv6-addr, domain-name, url. SCOs have no
/// `created_by_ref` in STIX 2.1; OpenCTI reads the author from `x_opencti_created_by_ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueObservable<'a> {
    pub spec_version: SpecVersion,
    pub id: StixId,
    pub value: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub object_marking_refs: Cow<'a, [StixId]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_created_by_ref: Option<StixId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_opencti_description: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub x_opencti_labels: Strings<'a>,
}

/// Any object we emit; serialized with its `type` first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StixObject<'a> {
    Identity(Identity<'a>),
    MarkingDefinition(MarkingDefinition<'a>),
    Malware(Malware<'a>),
    Indicator(Indicator<'a>),
    Relationship(Relationship<'a>),
    Ipv4Addr(ValueObservable<'a>),
    Ipv6Addr(ValueObservable<'a>),
    DomainName(ValueObservable<'a>),
    Url(ValueObservable<'a>),
}

impl StixObject<'_> {
    pub fn id(&self) -> StixId {
        match self {
            Self::Identity(o) => o.common.id,
            Self::MarkingDefinition(o) => o.id,
            Self::Malware(o) => o.common.id,
            Self::Indicator(o) => o.common.id,
            Self::Relationship(o) => o.common.id,
            Self::Ipv4Addr(o) | Self::Ipv6Addr(o) | Self::DomainName(o) | Self::Url(o) => o.id,
        }
    }

    /// Calls `f` with every id this object references through a `*_ref` or `*_refs` property, in the order the
    /// properties are serialized (what pycti's splitter counts as dependencies).
    pub fn for_each_ref(&self, mut f: impl FnMut(StixId)) {
        match self {
            Self::Identity(o) => o.common.for_each_ref(&mut f),
            Self::MarkingDefinition(o) => o.created_by_ref.into_iter().for_each(f),
            Self::Malware(o) => o.common.for_each_ref(&mut f),
            Self::Indicator(o) => o.common.for_each_ref(&mut f),
            Self::Relationship(o) => {
                o.common.for_each_ref(&mut f);
                f(o.source_ref);
                f(o.target_ref);
            }
            Self::Ipv4Addr(o) | Self::Ipv6Addr(o) | Self::DomainName(o) | Self::Url(o) => {
                o.object_marking_refs.iter().copied().for_each(&mut f);
                o.x_opencti_created_by_ref.into_iter().for_each(f);
            }
        }
    }

    /// The object as JSON bytes appended to `out`, with no intermediate `serde_json::Value`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing these types into a Vec cannot fail: every map key is a string and no Serialize impl errs.
        let _ = serde_json::to_writer(out, self);
    }
}
