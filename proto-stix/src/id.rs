//! STIX identifiers, and the deterministic ids pycti and the STIX 2.1 spec derive from an object's contributing
//! properties, so that our objects merge with every other producer's.
//!
//! An id is `<type>--<UUIDv5(namespace, canonical JSON of the contributing properties)>`, the namespace being
//! `00abedb4-aa42-466c-9c01-fed23315a9b7` for both pycti's domain objects and the spec's observables. The JSON is
//! RFC 8785 (JCS) as `stix2.canonicalization` writes it; [`canonical_json`] implements the part ids need.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The UUIDv5 namespace of every generated id (pycti and STIX 2.1 SCOs alike).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x00abedb4_aa42_466c_9c01_fed23315a9b7);

/// The object types this crate knows, as they appear before the `--` of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Bundle,
    DomainName,
    Identity,
    Indicator,
    Ipv4Addr,
    Ipv6Addr,
    Malware,
    MarkingDefinition,
    Relationship,
    Url,
}

impl ObjectType {
    const ALL: [ObjectType; 10] = [
        Self::Bundle,
        Self::DomainName,
        Self::Identity,
        Self::Indicator,
        Self::Ipv4Addr,
        Self::Ipv6Addr,
        Self::Malware,
        Self::MarkingDefinition,
        Self::Relationship,
        Self::Url,
    ];

    /// The STIX type name, e.g. `ipv4-addr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bundle => "bundle",
            Self::DomainName => "domain-name",
            Self::Identity => "identity",
            Self::Indicator => "indicator",
            Self::Ipv4Addr => "ipv4-addr",
            Self::Ipv6Addr => "ipv6-addr",
            Self::Malware => "malware",
            Self::MarkingDefinition => "marking-definition",
            Self::Relationship => "relationship",
            Self::Url => "url",
        }
    }

    /// The type named `name`, if this crate models it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A STIX identifier, `<type>--<uuid>`. Stored as a type tag and 16 bytes: ids are hashed and compared by the
/// million when pieces are sequenced and deduplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StixId {
    object_type: ObjectType,
    uuid: Uuid,
}

/// Why a text is not a [`StixId`] this crate can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StixIdError {
    text: String,
}

impl fmt::Display for StixIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a STIX id of a known type (`<type>--<uuid>`)", self.text)
    }
}

impl std::error::Error for StixIdError {}

impl StixId {
    pub const fn new(object_type: ObjectType, uuid: Uuid) -> Self {
        Self { object_type, uuid }
    }

    /// A random (UUIDv4) id, as STIX producers give bundles.
    pub fn random(object_type: ObjectType) -> Self {
        Self::new(object_type, Uuid::new_v4())
    }

    /// The deterministic id of an object whose contributing properties are `properties` (name, value pairs).
    pub fn derived(object_type: ObjectType, properties: &[(&str, &str)]) -> Self {
        Self::new(object_type, Uuid::new_v5(&NAMESPACE, canonical_json(properties).as_bytes()))
    }

    pub const fn object_type(&self) -> ObjectType {
        self.object_type
    }

    pub const fn uuid(&self) -> Uuid {
        self.uuid
    }
}

/// Room for the longest id: `marking-definition--` + 36.
const ID_BUFFER: usize = 64;

impl StixId {
    /// Writes the id into `buffer` without the formatting machinery (ids are written by the million).
    fn encode<'b>(&self, buffer: &'b mut [u8; ID_BUFFER]) -> &'b str {
        let kind = self.object_type.as_str().as_bytes();
        buffer[..kind.len()].copy_from_slice(kind);
        buffer[kind.len()..kind.len() + 2].copy_from_slice(b"--");
        let start = kind.len() + 2;
        let len = self.uuid.hyphenated().encode_lower(&mut buffer[start..]).len();
        // Type names and hyphenated UUIDs are ASCII.
        std::str::from_utf8(&buffer[..start + len]).unwrap_or_default()
    }
}

impl fmt::Display for StixId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode(&mut [0; ID_BUFFER]))
    }
}

impl FromStr for StixId {
    type Err = StixIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || StixIdError { text: text.to_owned() };
        let (kind, uuid) = text.split_once("--").ok_or_else(error)?;
        let object_type = ObjectType::from_name(kind).ok_or_else(error)?;
        // Only the canonical lowercase hyphenated form is an id; `Uuid::parse_str` accepts more.
        if uuid.len() != 36 || uuid.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(error());
        }
        let uuid = Uuid::parse_str(uuid).map_err(|_| error())?;
        Ok(Self::new(object_type, uuid))
    }
}

impl Serialize for StixId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.encode(&mut [0; ID_BUFFER]))
    }
}

impl<'de> Deserialize<'de> for StixId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The RFC 8785 (JCS) canonical JSON of a flat object of string members, exactly as `stix2.canonicalization`
/// writes it: members sorted by name (UTF-16 code units), no whitespace, strings escaped minimally (`"`, `\`,
/// and control characters only; `\b \f \n \r \t` in short form, others as `\u00xx`), non-ASCII kept as is.
pub fn canonical_json(properties: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = properties.iter().collect();
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut out = String::with_capacity(properties.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>() + 2);
    out.push('{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, name);
        out.push(':');
        push_json_string(&mut out, value);
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    // Copy runs that need no escaping in one go; only `"`, `\` and control characters are escaped.
    while let Some(at) = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            control => {
                use fmt::Write;
                let _ = write!(out, "\\u{control:04x}");
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Python's `str.strip()`: removes leading and trailing characters Python calls whitespace. That is Unicode
/// `White_Space` (Rust's `char::is_whitespace`) plus the information separators U+001C..U+001F.
pub fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// pycti `Indicator.generate_id(pattern)`: `{"pattern": pattern.strip()}`.
pub fn indicator_id(pattern: &str) -> StixId {
    StixId::derived(ObjectType::Indicator, &[("pattern", py_strip(pattern))])
}

/// pycti `Malware.generate_id(name)`: `{"name": name.lower().strip()}`.
pub fn malware_id(name: &str) -> StixId {
    let name = name.to_lowercase();
    StixId::derived(ObjectType::Malware, &[("name", py_strip(&name))])
}

/// pycti `Identity.generate_id(name, identity_class)`: `{"name": name.lower().strip(), "identity_class":
/// identity_class.lower()}`.
pub fn identity_id(name: &str, identity_class: &str) -> StixId {
    let name = name.to_lowercase();
    let class = identity_class.to_lowercase();
    StixId::derived(ObjectType::Identity, &[("name", py_strip(&name)), ("identity_class", &class)])
}

/// pycti `StixCoreRelationship.generate_id(relationship_type, source_ref, target_ref)` without start or stop time:
/// `{"relationship_type", "source_ref", "target_ref"}`.
pub fn relationship_id(relationship_type: &str, source_ref: &StixId, target_ref: &StixId) -> StixId {
    let source = source_ref.to_string();
    let target = target_ref.to_string();
    StixId::derived(
        ObjectType::Relationship,
        &[("relationship_type", relationship_type), ("source_ref", &source), ("target_ref", &target)],
    )
}

/// STIX 2.1 id of an observable whose only contributing property is `value` (ipv4-addr, ipv6-addr, domain-name,
/// url, email-addr...), as the spec (§2.9) and the `stix2` library derive it.
pub fn observable_value_id(object_type: ObjectType, value: &str) -> StixId {
    StixId::derived(object_type, &[("value", value)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let id = indicator_id("[ipv4-addr:value = '1.2.3.4']");
        let text = id.to_string();
        assert!(text.starts_with("indicator--"));
        assert_eq!(text.parse::<StixId>(), Ok(id));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<StixId>(&format!("\"{text}\"")).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "indicator",
            "indicator--",
            "indicator--not-a-uuid",
            "attack-pattern--613f2e26-407d-48c7-9eca-b8e91df99dc9",
            "indicator--613F2E26-407D-48C7-9ECA-B8E91DF99DC9",
            "indicator--613f2e26407d48c79ecab8e91df99dc9",
        ] {
            assert!(bad.parse::<StixId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn canonical_json_sorts_and_escapes_minimally() {
        assert_eq!(
            canonical_json(&[("value", "a\"b\\c\n\u{1}\u{7f}é€😀"), ("name", "x")]),
            "{\"name\":\"x\",\"value\":\"a\\\"b\\\\c\\n\\u0001\u{7f}é€😀\"}"
        );
        assert_eq!(canonical_json(&[]), "{}");
    }

    #[test]
    fn py_strip_matches_python_whitespace() {
        assert_eq!(py_strip(" \t\u{1c}\u{85}\u{a0}x y\u{3000}\u{1f}\n"), "x y");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x", "zero-width space is not whitespace in Python");
    }

    #[test]
    fn known_ids() {
        // Values computed with pycti 7 (see tools/vectors); the full set is checked in tests/pycti_vectors.rs.
        assert_eq!(
            identity_id("Maltrail", "organization").to_string(),
            identity_id("  maltrail ", "ORGANIZATION").to_string()
        );
    }
}
