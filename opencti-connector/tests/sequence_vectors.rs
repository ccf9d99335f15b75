//! The streaming sequencer makes exactly the pieces pycti's splitter makes (tools/vectors/generate_split.py →
//! tests/data/pycti_split_vectors.json): the same objects, the same `x_opencti_seq` each, the same expectation
//! count, and every reference published before the object that references it. The batched (platform) mode carries
//! the same objects in self-contained bundles.

use std::collections::{BTreeMap, HashSet};

use opencti_connector::send::{Batcher, Sequencer};
use proto_stix::{StixId, StixObject};
use serde_json::Value;

struct Case {
    name: String,
    bundle_id: StixId,
    objects: Vec<StixObject<'static>>,
    expectations: u64,
    left_out: usize,
    /// id → (x_opencti_seq, object)
    pieces: BTreeMap<String, (u64, Value)>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pycti_split_vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let vectors: Value = serde_json::from_str(&text).expect("JSON");
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(cases.len() >= 6, "{} cases", cases.len());
    cases
        .iter()
        .map(|case| Case {
            name: case["case"].as_str().unwrap_or_default().to_owned(),
            bundle_id: case["bundle_id"].as_str().and_then(|s| s.parse().ok()).expect("bundle id"),
            objects: case["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .map(|o| serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{e}: {o}")))
                .collect(),
            expectations: case["expectations"].as_u64().expect("expectations"),
            left_out: case["left_out"].as_array().map_or(0, Vec::len),
            pieces: case["pieces"]
                .as_array()
                .expect("pieces")
                .iter()
                .map(|p| {
                    let id = p["id"].as_str().expect("piece id").to_owned();
                    (id, (p["x_opencti_seq"].as_u64().expect("seq"), p["object"].clone()))
                })
                .collect(),
        })
        .collect()
}

/// Our pieces for a stream of objects: id → (seq, object), in publication order, with the bundle envelope checked.
fn sequence(bundle_id: StixId, objects: &[StixObject<'_>]) -> Vec<(String, u64, Value)> {
    let mut sequencer = Sequencer::new(bundle_id);
    let mut pieces = Vec::new();
    for object in objects {
        if let Some(piece) = sequencer.piece(object) {
            let bundle: Value = serde_json::from_slice(&piece.bundle).expect("piece is JSON");
            assert_eq!(bundle["type"], "bundle");
            assert_eq!(bundle["id"], bundle_id.to_string());
            assert_eq!(bundle["spec_version"], "2.1");
            let objects = bundle["objects"].as_array().expect("objects");
            assert_eq!(objects.len(), 1, "one object per piece");
            let object = objects[0].clone();
            let id = object["id"].as_str().expect("id").to_owned();
            pieces.push((id, bundle["x_opencti_seq"].as_u64().expect("seq"), object));
        }
    }
    pieces
}

fn references(object: &Value) -> Vec<String> {
    let mut refs = Vec::new();
    if let Some(map) = object.as_object() {
        for (key, value) in map {
            if key.ends_with("_ref") {
                refs.extend(value.as_str().map(str::to_owned));
            } else if key.ends_with("_refs") {
                refs.extend(value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)));
            }
        }
    }
    refs
}

#[test]
fn pieces_equal_pyctis_split() {
    for case in cases() {
        assert_eq!(case.left_out, 0, "{}: our objects are all supported", case.name);
        let ours = sequence(case.bundle_id, &case.objects);
        assert_eq!(ours.len() as u64, case.expectations, "{}: expectation count", case.name);
        let ours_by_id: BTreeMap<String, (u64, Value)> =
            ours.iter().map(|(id, seq, object)| (id.clone(), (*seq, object.clone()))).collect();
        assert_eq!(ours_by_id.len(), ours.len(), "{}: one piece per id", case.name);
        assert_eq!(ours_by_id.keys().collect::<Vec<_>>(), case.pieces.keys().collect::<Vec<_>>(), "{}", case.name);
        for (id, (seq, object)) in &case.pieces {
            let (our_seq, our_object) = &ours_by_id[id];
            assert_eq!(our_seq, seq, "{}: x_opencti_seq of {id}", case.name);
            assert_eq!(our_object, object, "{}: content of {id}", case.name);
        }
        // Streaming order: what an object references is already out.
        let mut published = HashSet::new();
        let in_bundle: HashSet<&String> = ours_by_id.keys().collect();
        for (id, _, object) in &ours {
            for reference in references(object) {
                if in_bundle.contains(&reference) {
                    assert!(published.contains(&reference), "{}: {id} published before {reference}", case.name);
                }
            }
            published.insert(id.clone());
        }
    }
}

#[test]
fn repeated_objects_make_no_extra_piece() {
    for case in cases() {
        let doubled: Vec<_> = case.objects.iter().chain(&case.objects).cloned().collect();
        let once = sequence(case.bundle_id, &case.objects);
        let twice = sequence(case.bundle_id, &doubled);
        assert_eq!(once, twice, "{}", case.name);
    }
}

#[test]
fn platform_batches_carry_every_object_self_contained() {
    for case in cases() {
        let header_count = case
            .objects
            .iter()
            .take_while(|o| {
                matches!(o, StixObject::MarkingDefinition(_) | StixObject::Identity(_) | StixObject::Malware(_))
            })
            .count();
        let (header, rest) = case.objects.split_at(header_count);
        let mut batcher = Batcher::new(10, 16 * 1024 * 1024);
        for object in header {
            batcher.push_header(object);
        }
        // Group a trail's objects as the converter emits them: an indicator starts a group, and a group holds
        // every object it references (the vectors' bundles list an observable two trails share only once).
        let by_id: BTreeMap<StixId, &StixObject<'_>> = case.objects.iter().map(|o| (o.id(), o)).collect();
        let header_ids: HashSet<StixId> = header.iter().map(StixObject::id).collect();
        let mut groups: Vec<Vec<StixObject<'_>>> = Vec::new();
        for object in rest {
            if matches!(object, StixObject::Indicator(_)) || groups.is_empty() {
                groups.push(Vec::new());
            }
            let group = groups.last_mut().expect("a group");
            let mut missing = Vec::new();
            object.for_each_ref(|reference| {
                if !header_ids.contains(&reference) && !group.iter().any(|o| o.id() == reference) {
                    missing.extend(by_id.get(&reference).map(|o| (*o).clone()));
                }
            });
            group.extend(missing);
            group.push(object.clone());
        }
        let mut batches = Vec::new();
        for group in groups {
            batches.extend(batcher.push_group(group));
        }
        batches.extend(batcher.finish());
        assert!(!batches.is_empty(), "{}", case.name);

        let mut carried = HashSet::new();
        for batch in &batches {
            let bundle: Value = serde_json::from_slice(&batch.bundle).expect("JSON");
            assert!(bundle.get("x_opencti_seq").is_none(), "the platform splits batches itself");
            let objects = bundle["objects"].as_array().expect("objects");
            assert_eq!(objects.len(), batch.objects);
            assert!(objects.len() <= 10 + header_count + 3, "{}: batch of {} objects", case.name, objects.len());
            let ids: HashSet<String> = objects.iter().filter_map(|o| o["id"].as_str().map(str::to_owned)).collect();
            for object in objects {
                for reference in references(object) {
                    assert!(ids.contains(&reference), "{}: batch lacks {reference}", case.name);
                }
                carried.insert(object["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        assert_eq!(carried.len(), case.pieces.len(), "{}: every object carried", case.name);
    }
}
