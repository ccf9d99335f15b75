//! A run in pycti's client split mode, read back from the push queue as the platform's workers read it: every
//! envelope field, one object per piece with its `x_opencti_seq`, references before referrers, as many messages as
//! expectations on the work; and the same bundles written to a directory as `DIRECTORY_BUNDLE` files.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use maltrail_connector::connector::serve;
use maltrail_connector::convert::file_trails;
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::{Category, parse_file};
use opencti_connector::{Shutdown, Timings};
use serde_json::Value;
use support::fake_opencti::{FakeOpenCti, FakeOptions};
use support::rabbit;
use support::snapshot::snapshot_dir;

/// Every 100th snapshot file of the imported categories (about 30 files), copied into `dir`.
fn sample_trails(dir: &std::path::Path) -> BTreeSet<String> {
    let root = snapshot_dir();
    let mut indicators = BTreeSet::new();
    for path in list_trail_files(&root).expect("listing").into_iter().step_by(100) {
        let content = read_trail_file(&root, &path).expect("readable");
        let file = parse_file(&path, &content).expect("trail file");
        if file.category == Category::MassScanner {
            continue;
        }
        indicators.extend(file_trails(&file).iter().map(|t| t.id.to_string()));
        let target = dir.join(&path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, content).expect("copy");
    }
    indicators
}

fn references(object: &Value) -> Vec<String> {
    let mut refs = Vec::new();
    for (key, value) in object.as_object().into_iter().flatten() {
        if key.ends_with("_ref") {
            refs.extend(value.as_str().map(str::to_owned));
        } else if key.ends_with("_refs") {
            refs.extend(value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)));
        }
    }
    refs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_split_run_is_what_pycti_would_send() {
    let _broker = rabbit::broker_shared().await;
    let work_dir = tempfile::tempdir().expect("temp dir");
    let trails = work_dir.path().join("trails");
    let bundles = work_dir.path().join("bundles");
    let expected = sample_trails(&trails);
    assert!(expected.len() > 1_000, "{} indicators", expected.len());

    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let config = support::connector::config(
        &opencti,
        &connector_id,
        &[
            ("CONNECTOR_RUN_AND_TERMINATE", "true".into()),
            ("CONNECTOR_SEND_TO_DIRECTORY", "true".into()),
            ("CONNECTOR_SEND_TO_DIRECTORY_PATH", bundles.display().to_string()),
            ("MALTRAIL_DIRECTORY", trails.display().to_string()),
        ],
    );
    tokio::time::timeout(Duration::from_secs(300), serve(config, Shutdown::new(), Timings::default()))
        .await
        .expect("run within 5 minutes")
        .expect("run succeeds");

    let work = opencti.works().pop().expect("one work");
    let messages = rabbit::drain(&format!("push_{connector_id}"), Duration::from_millis(500)).await;
    assert_eq!(work.expectations - work.errors.len() as i64, messages.len() as i64, "expectations equal messages");

    // Envelopes (decode_envelope rejects any missing, extra or mistyped field) and pieces.
    let mut indicators = BTreeSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut per_bundle: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut previous: Option<(String, u64)> = None;
    for message in &messages {
        assert_eq!(message.delivery_mode, Some(2));
        assert_eq!(message.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(message.exchange, "amqp.worker.exchange");
        assert_eq!(message.routing_key, format!("push_routing_{connector_id}"));
        let envelope = message.envelope();
        assert_eq!(envelope.bundle_type, "QUEUE_BUNDLE");
        assert_eq!(envelope.applicant_id, opencti.connector_user_id());
        assert_eq!(envelope.work_id.as_deref(), Some(work.id.as_str()));
        assert!(envelope.entities_types.is_empty() && !envelope.update && !envelope.no_split);
        assert!(envelope.draft_id.is_none());

        let bundle = &envelope.content;
        let bundle_id = bundle["id"].as_str().expect("bundle id").to_owned();
        // action_sequence counts 1, 2, 3 ... within each bundle, as pycti's per-send enumeration.
        match &previous {
            Some((id, sequence)) if *id == bundle_id => assert_eq!(envelope.action_sequence, sequence + 1),
            _ => assert_eq!(envelope.action_sequence, 1, "a bundle starts at 1"),
        }
        previous = Some((bundle_id.clone(), envelope.action_sequence));
        let objects = envelope.objects();
        assert_eq!(objects.len(), 1, "one object per piece");
        assert!(bundle["x_opencti_seq"].as_u64().is_some_and(|seq| seq >= 1));
        let object = &objects[0];
        let id = object["id"].as_str().expect("id").to_owned();
        let in_bundle = per_bundle.entry(bundle_id).or_default();
        for reference in references(object) {
            assert!(in_bundle.contains(&reference) || seen.contains(&reference), "{id} arrived before {reference}");
        }
        in_bundle.insert(id.clone());
        seen.insert(id.clone());
        if object["type"] == "indicator" {
            indicators.insert(id);
        }
    }
    assert_eq!(indicators, expected, "every trail of the sample, as computed from the files");

    // The same bundles as DIRECTORY_BUNDLE files.
    let files: Vec<_> = std::fs::read_dir(&bundles).expect("bundles dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(files.len(), per_bundle.len(), "one file per bundle");
    let mut from_files = BTreeSet::new();
    for path in &files {
        let envelope: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON");
        assert_eq!(envelope["bundle_type"], "DIRECTORY_BUNDLE");
        assert_eq!(envelope["connector"]["id"], connector_id);
        assert!(envelope["connector"]["scope"].is_string(), "pycti writes CONNECTOR_SCOPE as a string");
        assert_eq!(envelope["applicant_id"], opencti.connector_user_id());
        for object in envelope["bundle"]["objects"].as_array().expect("objects") {
            if object["type"] == "indicator" {
                from_files.insert(object["id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    assert_eq!(from_files, expected);
    opencti.stop().await;
}
