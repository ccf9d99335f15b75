//! Every id and pattern pycti and stix2 computed (tools/vectors/generate_ids.py → tests/data/pycti_id_vectors.json)
//! must come out of our parser, converter and proto-stix unchanged.

use maltrail_connector::convert::file_trails;
use maltrail_connector::trails::parse_file;
use proto_stix::id::{identity_id, indicator_id, malware_id, observable_value_id, relationship_id};
use proto_stix::{ObjectType, StixId, StixObject, Tlp};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pycti_id_vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key].as_str().unwrap_or_else(|| panic!("vector lacks string `{key}`: {v}"))
}

fn object_type(name: &str) -> ObjectType {
    ObjectType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"))
}

#[test]
fn trail_lines_give_pyctis_patterns_and_ids() {
    let vectors = vectors();
    let trails = vectors["trails"].as_array().expect("trails");
    assert!(trails.len() >= 500, "only {} trail vectors", trails.len());
    let mut forms = std::collections::BTreeSet::new();
    for v in trails {
        let file = match str_of(v, "file") {
            "(hand-picked)" => "malware/hand_picked.txt",
            file => file,
        };
        let trail = str_of(v, "trail");
        let parsed = parse_file(file, format!("{trail}\n").as_bytes()).expect("trail file path");
        assert!(parsed.skipped.is_empty(), "{trail:?} skipped: {:?}", parsed.skipped);
        let entry = &parsed.entries[0];
        assert_eq!(entry.form.as_str(), str_of(v, "form"), "form of {trail:?}");
        assert_eq!(entry.value, str_of(v, "value"), "value of {trail:?}");
        assert_eq!(entry.port.map(u64::from), v["port"].as_u64(), "port of {trail:?}");
        let trail_objects = file_trails(&parsed);
        assert_eq!(trail_objects[0].pattern, str_of(v, "pattern"), "pattern of {trail:?}");
        assert_eq!(indicator_id(&trail_objects[0].pattern).to_string(), str_of(v, "indicator_id"), "id of {trail:?}");
        if let Some(observable) = v.get("observable") {
            let id = observable_value_id(object_type(str_of(observable, "type")), str_of(observable, "value"));
            assert_eq!(id.to_string(), str_of(observable, "id"), "observable of {trail:?}");
        }
        forms.insert(entry.form);
    }
    assert_eq!(forms.len(), maltrail_connector::trails::Form::ALL.len(), "every form has vectors: {forms:?}");
}

#[test]
fn hard_cases_of_every_id_rule() {
    let vectors = vectors();
    for v in vectors["indicators"].as_array().expect("indicators") {
        assert_eq!(indicator_id(str_of(v, "pattern")).to_string(), str_of(v, "id"), "{v}");
    }
    for v in vectors["malware"].as_array().expect("malware") {
        assert_eq!(malware_id(str_of(v, "name")).to_string(), str_of(v, "id"), "{v}");
    }
    for v in vectors["identities"].as_array().expect("identities") {
        let id = identity_id(str_of(v, "name"), str_of(v, "identity_class"));
        assert_eq!(id.to_string(), str_of(v, "id"), "{v}");
    }
    for v in vectors["observables"].as_array().expect("observables") {
        let id = observable_value_id(object_type(str_of(v, "type")), str_of(v, "value"));
        assert_eq!(id.to_string(), str_of(v, "id"), "{v}");
    }
    for v in vectors["relationships"].as_array().expect("relationships") {
        let source: StixId = str_of(v, "source_ref").parse().expect("source id");
        let target: StixId = str_of(v, "target_ref").parse().expect("target id");
        let id = relationship_id(str_of(v, "relationship_type"), &source, &target);
        assert_eq!(id.to_string(), str_of(v, "id"), "{v}");
    }
}

#[test]
fn tlp_markings_are_the_stix2_objects() {
    let vectors = vectors();
    let markings = vectors["markings"].as_array().expect("markings");
    for (tlp, expected) in [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::Red].into_iter().zip(markings) {
        let ours = serde_json::to_value(StixObject::MarkingDefinition(tlp.marking_definition())).expect("json");
        assert_eq!(&ours, expected, "{tlp:?}");
    }
    let strict = &markings[4];
    let ours =
        serde_json::to_value(StixObject::MarkingDefinition(Tlp::AmberStrict.marking_definition())).expect("json");
    for key in ["id", "definition_type", "x_opencti_definition"] {
        assert_eq!(ours[key], strict[key], "amber+strict {key}");
    }
    assert_eq!(ours["x_opencti_definition_type"], "TLP");
    assert_eq!(ours["definition"]["statement"], "custom");
}
