//! The connector's first run against a fake OpenCTI, a fake GitHub serving the full real snapshot, and the real
//! RabbitMQ: it registers, imports every trail, counts as many expectations as it publishes messages, and records
//! the commit in the state. A consumer drains the push queue while the run goes on, as the platform's workers do.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use maltrail_connector::connector::serve;
use opencti_connector::{Shutdown, Timings};
use support::fake_github::{self, FakeGitHub};
use support::fake_opencti::{FakeOpenCti, FakeOptions};
use support::rabbit;
use support::snapshot::{snapshot_dir, snapshot_repo};
use support::trails::expected_indicator_ids;

/// Indicator ids inside a bundle's JSON, without parsing it whole (the run moves gigabytes).
fn indicator_ids(bundle: &[u8], into: &mut HashSet<String>) -> usize {
    let text = String::from_utf8_lossy(bundle);
    let marker = "\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"";
    let mut count = 0;
    for (at, _) in text.match_indices(marker) {
        let start = at + marker.len();
        if let Some(id) = text.get(start..start + 47) {
            into.insert(id.to_owned());
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_run_imports_the_whole_snapshot() {
    let _broker = rabbit::broker_shared().await;
    let expected = expected_indicator_ids(&snapshot_dir());
    assert!(expected.len() > 1_500_000, "{} indicators expected", expected.len());

    let github = FakeGitHub::start(snapshot_repo(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let push_queue = format!("push_{connector_id}");

    let config = support::connector::config(
        &opencti,
        &connector_id,
        &[
            ("CONNECTOR_RUN_AND_TERMINATE", "true".into()),
            ("CONNECTOR_SPLIT", "platform".into()),
            ("CONNECTOR_BATCH_SIZE", "5000".into()),
            ("MALTRAIL_CREATE_OBSERVABLES", "false".into()),
            ("MALTRAIL_API_BASE_URL", github.base_url()),
        ],
    );

    // The platform's workers: consume the push queue while the connector publishes.
    let consumer = {
        let queue = push_queue.clone();
        tokio::spawn(async move {
            let connection = rabbit::connect().await;
            let channel = connection.create_channel().await.expect("channel");
            while !rabbit::queue_exists(&queue).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut ids = HashSet::new();
            let (mut messages, mut indicators, mut singles) = (0u64, 0usize, 0u64);
            let mut idle = 0;
            let mut work_ids = HashSet::new();
            loop {
                let got = channel
                    .basic_get(queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: true })
                    .await
                    .expect("basic.get");
                let Some(message) = got else {
                    idle += 1;
                    if idle > 50 && messages > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                idle = 0;
                messages += 1;
                let envelope: serde_json::Value = serde_json::from_slice(&message.delivery.data).expect("envelope");
                work_ids.insert(envelope["work_id"].as_str().unwrap_or_default().to_owned());
                let content = envelope["content"].as_str().expect("content");
                let bundle = base64::engine::general_purpose::STANDARD.decode(content).expect("base64");
                indicators += indicator_ids(&bundle, &mut ids);
                singles += u64::from(object_count(&bundle) == 1);
            }
            rabbit::close(connection).await;
            (messages, indicators, ids, work_ids, singles)
        })
    };

    let run = serve(config, Shutdown::new(), Timings::default());
    tokio::time::timeout(Duration::from_secs(900), run).await.expect("run within 15 minutes").expect("run succeeds");
    let (messages, indicators, ids, work_ids, singles) = consumer.await.expect("consumer");

    assert_eq!(ids.len(), expected.len(), "distinct indicators received");
    assert!(ids == expected, "the indicators received are the ones computed from the files");
    assert!(indicators >= ids.len());

    let works = opencti.works();
    assert_eq!(works.len(), 1, "one work per run");
    let work = &works[0];
    assert_eq!(work_ids.into_iter().collect::<Vec<_>>(), vec![work.id.clone()]);
    assert!(work.is_multipart && work.processed && !work.in_error, "{work:?}");
    let skipped_reported = work.errors.len() as i64;
    // The platform's rule: a message holding one object counts one expectation; a multi-object message the
    // platform's worker splits counts none (the worker adds its pieces' own).
    assert!(messages > 0);
    assert_eq!(work.expectations - skipped_reported, singles as i64, "expectations count the single-object messages");

    let state: serde_json::Value = serde_json::from_str(&opencti.state().expect("state")).expect("state JSON");
    assert_eq!(state["last_commit"], fake_github::SNAPSHOT_COMMIT);
    assert_eq!(state["source"], "github:stamparm/maltrail@master");

    opencti.stop().await;
    github.stop();
}

/// Objects in a bundle's JSON: every object, and the bundle itself, carries `"spec_version":"2.1"` once.
fn object_count(bundle: &[u8]) -> usize {
    String::from_utf8_lossy(bundle).matches("\"spec_version\":\"2.1\"").count().saturating_sub(1)
}
