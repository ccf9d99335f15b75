//! The runtime's example connector (`examples/minimal.rs`), built by `cargo test` and run as a process against the
//! fake OpenCTI and the real RabbitMQ: it registers, sends its bundle in pycti's pieces, saves its state and
//! completes its work, as its documentation says.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use testkit::fake_opencti::{FakeOpenCti, FakeOptions};
use testkit::rabbit;

/// `target/<profile>/examples/minimal`, beside this test's own binary in `target/<profile>/deps/`.
fn example_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's path");
    let profile = test.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let binary = profile.join("examples").join("minimal");
    assert!(binary.is_file(), "{} is missing: `cargo test` builds the examples", binary.display());
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_connector_registers_and_sends_its_bundle() {
    let _broker = rabbit::broker_shared().await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let binary = example_binary();
    let run = tokio::task::spawn_blocking({
        let (url, token, id) = (opencti.url(), opencti.token().to_owned(), connector_id.clone());
        move || {
            Command::new(binary)
                .env_clear()
                .env("OPENCTI_URL", url)
                .env("OPENCTI_TOKEN", token)
                .env("CONNECTOR_ID", id)
                .env("CONNECTOR_RUN_AND_TERMINATE", "true")
                .output()
                .expect("run the example")
        }
    });
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the example ends").expect("joined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the example failed:\n{stderr}");

    let registration = &opencti.registrations()[0];
    assert_eq!(registration["id"], connector_id.as_str());
    assert_eq!(registration["name"], "Example");
    assert_eq!(registration["slug"], "example");
    let works = opencti.works();
    assert_eq!(works.len(), 1, "{works:?}");
    let work = &works[0];
    assert!(work.processed && !work.in_error, "{work:?}");
    assert_eq!(work.expectations, 3, "marking, author and indicator: one piece each");
    let state: serde_json::Value = serde_json::from_str(&opencti.state().expect("state")).expect("state JSON");
    assert!(state["last_run"].is_string(), "{state}");

    let messages = rabbit::drain(&format!("push_{connector_id}"), Duration::from_millis(500)).await;
    assert_eq!(messages.len(), 3);
    let mut types = Vec::new();
    for message in &messages {
        let envelope: serde_json::Value = serde_json::from_slice(&message.body).expect("envelope");
        assert_eq!(envelope["work_id"], work.id.as_str());
        assert_eq!(envelope["bundle_type"], "QUEUE_BUNDLE");
        let content = envelope["content"].as_str().expect("content");
        let bundle = base64::engine::general_purpose::STANDARD.decode(content).expect("base64");
        let bundle: serde_json::Value = serde_json::from_slice(&bundle).expect("bundle");
        types.push(bundle["objects"][0]["type"].as_str().expect("type").to_owned());
    }
    assert_eq!(types, ["marking-definition", "identity", "indicator"], "references first");
    opencti.stop().await;
}
