//! The long-running service: scheduled runs every period, an unchanged head sends nothing, a state reset in the
//! platform is picked up by the next ping and leads to a full import, and shutdown between runs ends it cleanly with
//! a final ping carrying the state.

mod support;

use std::time::Duration;

use maltrail_connector::service::{self, Timings};
use maltrail_connector::shutdown::Shutdown;
use serde_json::Value;
use support::fake_github::{self, Change, FakeGitHub, FakeRepo};
use support::fake_opencti::{FakeOpenCti, FakeOptions};
use support::rabbit;

fn small_repo() -> FakeRepo {
    let mut repo = FakeRepo::new("stamparm/maltrail");
    repo.add_commit(
        "trails",
        "2026-08-20T08:00:00Z",
        [
            Change::put("trails/static/malware/alpha.txt", "# Aliases: Alpha\nalpha.example.com\n10.0.0.1:443\n"),
            Change::put("trails/static/suspicious/beta.txt", "beta.example.net\n/beta.php?id=\n"),
        ],
    );
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_follow_a_state_reset_and_stop_on_shutdown() {
    let _broker = rabbit::broker_shared().await;
    let github = FakeGitHub::start(small_repo(), fake_github::FakeOptions::default()).await;
    let head = github.head_sha();
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let config = support::connector::config(
        &opencti,
        &connector_id,
        &[("CONNECTOR_DURATION_PERIOD", "PT2S".into()), ("MALTRAIL_API_BASE_URL", github.base_url())],
    );
    let shutdown = Shutdown::new();
    let timings = Timings { ping_interval: Duration::from_millis(300) };
    let service = tokio::spawn(service::run_with(config, shutdown.clone(), timings));

    // First run: a full import; the next runs find the head unchanged and open no work.
    opencti
        .wait_until(Duration::from_secs(30), "a first import", |fake| fake.works().iter().any(|w| w.processed))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(opencti.works().len(), 1, "an unchanged head opens no work: {}", opencti.call_log());
    let state: Value = serde_json::from_str(&opencti.state().expect("state")).expect("JSON");
    assert_eq!(state["last_commit"], head);

    // A user resets the connector: the next ping adopts the empty state, the next run imports everything again.
    opencti.reset_state(Some("{}".into()));
    opencti.wait_until(Duration::from_secs(30), "a second full import", |fake| fake.works().len() == 2).await;
    opencti
        .wait_until(Duration::from_secs(30), "the second import done", |fake| fake.works().iter().all(|w| w.processed))
        .await;
    let works = opencti.works();
    assert!(works.iter().all(|w| w.friendly_name.as_deref().is_some_and(|n| n.starts_with("Maltrail full import"))));
    assert!(works.iter().all(|w| !w.in_error));

    // Shutdown between runs: a clean exit, the last ping carries the synced state.
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("the service stops within seconds")
        .expect("no panic")
        .expect("clean exit");
    let last = opencti.pings().pop().expect("a final ping");
    let state: Value = serde_json::from_str(last.state.as_deref().expect("state sent")).expect("JSON");
    assert_eq!(state["last_commit"], head);
    assert!(state["last_run"].is_string());

    rabbit::delete_queue(&format!("push_{connector_id}")).await;
    opencti.stop().await;
    github.stop();
}
