//! The long-running service: scheduled runs every period, an unchanged head sends nothing, a state reset in the
//! platform is picked up by the next ping and leads to a full import, and shutdown between runs ends it cleanly with
//! a final ping carrying the state. A push queue over the threshold skips runs (said in the connector info) until it
//! drains; failed runs are tried again after growing waits, never in a hot loop.

mod support;

use std::time::Duration;

use maltrail_connector::connector::serve;
use opencti_connector::RetryTimings;
use opencti_connector::{Shutdown, Timings};
use serde_json::Value;
use support::fake_github::{self, Change, FakeGitHub, FakeRepo};
use support::fake_opencti::{FakeOpenCti, FakeOptions, Fault};
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

/// The service running in this process against the fakes, with a run every `period`.
struct Running {
    connector_id: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(
        opencti: &FakeOpenCti,
        github: &FakeGitHub,
        period: &str,
        extra: &[(&str, &str)],
        timings: Timings,
    ) -> Self {
        let connector_id = uuid::Uuid::new_v4().to_string();
        let mut env =
            vec![("CONNECTOR_DURATION_PERIOD", period.to_owned()), ("MALTRAIL_API_BASE_URL", github.base_url())];
        env.extend(extra.iter().map(|(name, value)| (*name, (*value).to_owned())));
        let config = support::connector::config(opencti, &connector_id, &env);
        let shutdown = Shutdown::new();
        let task = tokio::spawn(serve(config, shutdown.clone(), timings));
        Self { connector_id, shutdown, task }
    }

    /// Triggers shutdown, expects a clean exit within seconds, and deletes the push queue.
    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the service stops within seconds")
            .expect("no panic")
            .expect("clean exit");
        rabbit::delete_queue(&format!("push_{}", self.connector_id)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_follow_a_state_reset_and_stop_on_shutdown() {
    let _broker = rabbit::broker_shared().await;
    let github = FakeGitHub::start(small_repo(), fake_github::FakeOptions::default()).await;
    let head = github.head_sha();
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let timings = Timings { ping_interval: Duration::from_millis(300), ..Timings::default() };
    let service = Running::start(&opencti, &github, "PT2S", &[], timings);

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
    service.stop().await;
    let last = opencti.pings().pop().expect("a final ping");
    let state: Value = serde_json::from_str(last.state.as_deref().expect("state sent")).expect("JSON");
    assert_eq!(state["last_commit"], head);
    assert!(state["last_run"].is_string());

    opencti.stop().await;
    github.stop();
}

/// The `connectorInfo` of the last ping, if any.
fn last_info(opencti: &FakeOpenCti) -> Option<Value> {
    opencti.pings().into_iter().rev().find_map(|ping| ping.connector_info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_push_queue_skips_runs_until_it_drains() {
    let _broker = rabbit::broker_shared().await;
    let github = FakeGitHub::start(small_repo(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    opencti.set_queue_size_bytes(Some(5_000_000));
    let retries = RetryTimings { after_failure: Duration::from_secs(60), queue_recheck: Duration::from_millis(300) };
    let timings = Timings { ping_interval: Duration::from_millis(200), retries };
    let service = Running::start(&opencti, &github, "PT1H", &[("CONNECTOR_QUEUE_THRESHOLD", "1")], timings);

    // 5 MB queued, 1 MB allowed: runs are skipped, the queue re-checked every 300 ms, and the platform told.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(opencti.works().is_empty(), "no run while the queue is full: {}", opencti.call_log());
    let checks = opencti.calls_to("connector").len();
    assert!((3..=12).contains(&checks), "the queue is re-checked at the recheck pace, not a hot loop: {checks}");
    let info = last_info(&opencti).expect("pings carry the connector info");
    assert_eq!(info["buffering"], true, "{info}");
    assert_eq!(info["queue_threshold"], 1.0, "{info}");
    assert_eq!(info["queue_messages_size"], 5.0, "{info}");
    assert!(github.requests().is_empty(), "a skipped run does not touch the source");

    // The platform's workers catch up: the next check runs the import, and the info says so.
    opencti.set_queue_size_bytes(None);
    opencti
        .wait_until(Duration::from_secs(30), "the import once the queue drained", |fake| {
            fake.works().iter().any(|w| w.processed && !w.in_error)
        })
        .await;
    opencti
        .wait_until(Duration::from_secs(5), "a ping without buffering", |fake| {
            last_info(fake).is_some_and(|info| info["buffering"] == false && info["last_run_datetime"].is_string())
        })
        .await;

    service.stop().await;
    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_are_retried_after_growing_waits() {
    let _broker = rabbit::broker_shared().await;
    let github = FakeGitHub::start(small_repo(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    // The platform refuses the first three works (a GraphQL error is not retried inside a run: the run fails).
    opencti.fail_next_op("workAdd", 3, Fault::GraphqlError("Work creation refused".into(), "FORBIDDEN".into()));
    let retries = RetryTimings { after_failure: Duration::from_millis(300), queue_recheck: Duration::from_secs(60) };
    let timings = Timings { ping_interval: Duration::from_secs(40), retries };
    let service = Running::start(&opencti, &github, "PT1H", &[], timings);

    opencti
        .wait_until(Duration::from_secs(30), "an import after three failed runs", |fake| {
            fake.works().iter().any(|w| w.processed && !w.in_error)
        })
        .await;
    let attempts: Vec<_> = opencti.calls_to("workAdd").iter().map(|call| call.at).collect();
    assert_eq!(attempts.len(), 4, "three refused works, then one: {}", opencti.call_log());
    let gaps: Vec<Duration> = attempts.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(300), "no immediate retry: {gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(1_200), "the wait grows (300 ms doubling): {gaps:?}");
    assert!(gaps.iter().all(|gap| *gap < Duration::from_secs(30)), "a failure does not wait the hour: {gaps:?}");

    service.stop().await;
    opencti.stop().await;
    github.stop();
}
