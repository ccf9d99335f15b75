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
    /// Until when the indicator holds; the platform revokes it after (and a revoked one is sent with the time of
    /// its revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
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

/// One field of a [`Patch`]: pycti's `EditInput` (`value` is always a list; `true` a JSON boolean, since the
/// platform's revocation tests `=== true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldPatch<'a> {
    pub key: Cow<'a, str>,
    pub value: Vec<serde_json::Value>,
    pub operation: Cow<'a, str>,
}

impl FieldPatch<'static> {
    /// `key` replaced by `value`.
    pub fn replace(key: &'static str, value: serde_json::Value) -> Self {
        Self { key: Cow::Borrowed(key), value: vec![value], operation: Cow::Borrowed("replace") }
    }
}

/// pycti's edit of an object the platform holds (`opencti_operation: "patch"`, `id` the edited object's): the
/// platform's worker applies it with pycti's `apply_patch`, through the platform's edit mutation, so it changes
/// fields an upsert leaves alone (protocol §8). A patch of a relationship carries its `source_ref` and
/// `target_ref`, which pycti's splitter (run by the worker too) requires of any relationship.
///
/// A patch never shares a bundle with the object it edits: pycti's splitter keys a bundle's objects by id (and by
/// the id in the OpenCTI extension), so one of the two would be lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patch<'a> {
    #[serde(rename = "type")]
    pub object_type: Cow<'a, str>,
    pub spec_version: SpecVersion,
    pub id: StixId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<StixId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<StixId>,
    pub opencti_operation: Cow<'a, str>,
    pub opencti_field_patch: Vec<FieldPatch<'a>>,
}

impl<'a> Patch<'a> {
    /// A patch of `target` (an object the platform holds, not a relationship) setting `fields`.
    pub fn of(target: StixId, fields: Vec<FieldPatch<'a>>) -> Self {
        Self {
            object_type: Cow::Borrowed(target.object_type().as_str()),
            spec_version: SpecVersion,
            id: target,
            source_ref: None,
            target_ref: None,
            opencti_operation: Cow::Borrowed("patch"),
            opencti_field_patch: fields,
        }
    }

    /// A patch of the relationship `id` from `source` to `target`, setting `fields`.
    pub fn of_relationship(id: StixId, source: StixId, target: StixId, fields: Vec<FieldPatch<'a>>) -> Self {
        Self { source_ref: Some(source), target_ref: Some(target), ..Self::of(id, fields) }
    }
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
    /// An edit of an object the platform holds; its `type` is the edited object's.
    #[serde(untagged)]
    Patch(Patch<'a>),
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
            Self::Patch(o) => o.id,
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
            Self::Patch(_) => {}
        }
    }

    /// The object as JSON bytes appended to `out`, with no intermediate `serde_json::Value`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing these types into a Vec cannot fail: every map key is a string and no Serialize impl errs.
        let _ = serde_json::to_writer(out, self);
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;
    use crate::id::{ObjectType, indicator_id, malware_id, relationship_id};

    #[test]
    fn patches_serialize_as_pycti_reads_them() {
        let target = indicator_id("[domain-name:value = 'evil.example']");
        let patch = StixObject::Patch(Patch::of(target, vec![FieldPatch::replace("revoked", serde_json::json!(true))]));
        let value = serde_json::to_value(&patch).unwrap();
        assert_eq!(value["type"], "indicator");
        assert_eq!(value["id"], target.to_string());
        assert_eq!(value["opencti_operation"], "patch");
        assert_eq!(
            value["opencti_field_patch"],
            serde_json::json!([{"key": "revoked", "value": [true], "operation": "replace"}])
        );
        assert!(value.get("source_ref").is_none());
        assert_eq!(patch.id().object_type(), ObjectType::Indicator);
        let back: StixObject<'_> = serde_json::from_value(value).unwrap();
        assert_eq!(back, patch, "a patch reads back as a patch, not as the object it edits");

        let family = malware_id("Emotet");
        let id = relationship_id("indicates", &target, &family);
        let relationship =
            Patch::of_relationship(id, target, family, vec![FieldPatch::replace("revoked", serde_json::json!(true))]);
        let value = serde_json::to_value(StixObject::Patch(relationship)).unwrap();
        assert_eq!(value["type"], "relationship");
        assert_eq!(value["source_ref"], target.to_string());
        assert_eq!(value["target_ref"], family.to_string());
    }
}
