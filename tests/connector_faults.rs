//! The connector service against one fault at a time (GitHub rate limit and 502s, OpenCTI down, failing or refusing
//! the token, a broker cut mid-run, a broker host only valid inside the platform's network), then recovery: nothing
//! lost, the state advanced to the head commit, as many expectations as messages.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maltrail_connector::connector::serve;
use maltrail_connector::settings::Config;
use opencti_connector::{Shutdown, Timings};
use support::fake_github::{self, FakeGitHub, FakeRepo};
use support::fake_opencti::{self, AuthFailure, FakeOpenCti, MqConnection, Outcome, StatusCode, Work};
use support::rabbit;
use support::trails::{expected_indicator_ids, small_trail_set, trail_subset};
use tempfile::TempDir;
use tracing::instrument::WithSubscriber;

/// Longest a run against the fakes may take before the test calls it a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What reached a push queue.
struct Received {
    messages: usize,
    indicator_ids: HashSet<String>,
    work_ids: HashSet<Option<String>>,
}

/// Consumes `queue` until it stays empty for two seconds.
async fn drain_indicators(queue: &str) -> Received {
    let messages = rabbit::drain(queue, Duration::from_secs(2)).await;
    let mut received = Received { messages: messages.len(), indicator_ids: HashSet::new(), work_ids: HashSet::new() };
    for message in &messages {
        let envelope = message.envelope();
        received.work_ids.insert(envelope.work_id.clone());
        for object in envelope.objects() {
            if object["type"] == "indicator" {
                received.indicator_ids.insert(object["id"].as_str().expect("indicator id").to_owned());
            }
        }
    }
    received
}

/// The connector's log lines, captured (the service logs through `tracing`).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let buffer = self.0.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer.clone()))
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|line| line.contains(needle)).count()
    }
}

/// A fake GitHub serving a trail set, a fake OpenCTI, and a fresh connector id.
struct Setup {
    expected: HashSet<String>,
    github: FakeGitHub,
    opencti: FakeOpenCti,
    connector_id: String,
    logs: Logs,
    _trails: TempDir,
}

impl Setup {
    async fn start(trails: TempDir, github: fake_github::FakeOptions, opencti: fake_opencti::FakeOptions) -> Setup {
        // Fails with how to start RabbitMQ when it is not running.
        rabbit::close(rabbit::connect().await).await;
        let expected = expected_indicator_ids(trails.path());
        assert!(!expected.is_empty());
        let repo = FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", trails.path()).expect("fake repo");
        Setup {
            expected,
            github: FakeGitHub::start(repo, github).await,
            opencti: FakeOpenCti::start(opencti).await,
            connector_id: uuid::Uuid::new_v4().to_string(),
            logs: Logs::default(),
            _trails: trails,
        }
    }

    async fn small() -> Setup {
        Setup::start(small_trail_set(), fake_github::FakeOptions::default(), fake_opencti::FakeOptions::default()).await
    }

    fn push_queue(&self) -> String {
        format!("push_{}", self.connector_id)
    }

    /// The service's configuration: the fakes, this connector id, one run, plus `extra` variables.
    fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut env =
            vec![("CONNECTOR_RUN_AND_TERMINATE", "true".to_owned()), ("MALTRAIL_API_BASE_URL", self.github.base_url())];
        env.extend(extra.iter().map(|(name, value)| (*name, (*value).to_owned())));
        support::connector::config(&self.opencti, &self.connector_id, &env)
    }

    /// Runs the service to its end (one run), logging into `self.logs`; a hang fails the test.
    async fn run(&self, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let run =
            serve(self.config(extra), Shutdown::new(), Timings::default()).with_subscriber(self.logs.subscriber());
        match tokio::time::timeout(RUN_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => panic!("the connector did not finish within {RUN_TIMEOUT:?}; logs:\n{}", self.logs.text()),
        }
    }

    /// Checks the outcome of a run that recovered: one work, processed, not in error, as many expectations as
    /// messages (`exact`; else at least as many messages, for a run that re-published after a cut), every expected
    /// indicator in the queue, and the state at the head commit.
    async fn assert_recovered(&self, exact: bool) -> Work {
        let received = drain_indicators(&self.push_queue()).await;
        let works = self.opencti.works();
        assert_eq!(works.len(), 1, "one work; calls:\n{}", self.opencti.call_log());
        let work = works[0].clone();
        assert!(work.processed && !work.in_error, "{work:?}\nlogs:\n{}", self.logs.text());
        assert_eq!(received.work_ids, HashSet::from([Some(work.id.clone())]), "every message names the work");
        let published = work.expectations - work.errors.len() as i64;
        if exact {
            assert_eq!(published, received.messages as i64, "expectations equal messages");
        } else {
            assert!(received.messages as i64 >= published, "{} messages, {published} expected", received.messages);
        }
        let missing: Vec<_> = self.expected.difference(&received.indicator_ids).take(5).collect();
        assert!(missing.is_empty(), "{} indicators never reached the queue, e.g. {missing:?}", missing.len());
        let state: serde_json::Value = serde_json::from_str(&self.opencti.state().expect("state")).expect("state JSON");
        assert_eq!(state["last_commit"], self.github.head_sha().as_str(), "state: {state}");
        work
    }

    async fn stop(self) {
        self.opencti.stop().await;
        self.github.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_exhausted_github_rate_limit_is_waited_out() {
    let _broker = rabbit::broker_shared().await;
    let github = fake_github::FakeOptions { rate_limit_window: Duration::from_secs(2), ..Default::default() };
    let setup = Setup::start(small_trail_set(), github, fake_opencti::FakeOptions::default()).await;
    setup.github.set_rate_limit_remaining(0);

    let started = Instant::now();
    setup.run(&[]).await.expect("the run succeeds once the limit resets");
    let took = started.elapsed();

    let requests = setup.github.requests();
    assert!(requests[0].path_and_query.contains("/commits/master"), "{requests:?}");
    assert_eq!(requests[0].status, Some(403), "the first request hits the exhausted limit");
    let later = requests.iter().skip(1).find(|r| r.path_and_query == requests[0].path_and_query);
    assert_eq!(later.and_then(|r| r.status), Some(200), "the same request succeeds after the reset: {requests:?}");
    assert!(took >= Duration::from_millis(1500), "the run waited for the reset, took {took:?}");
    assert_eq!(setup.logs.count("GitHub rate limit exhausted: waiting for its reset"), 1, "{}", setup.logs.text());
    setup.assert_recovered(true).await;
    setup.stop().await;
}

/// 502 twice on the requests whose path contains `path`, then the run must succeed anyway.
async fn github_502_twice_on(path: &str) {
    let _broker = rabbit::broker_shared().await;
    let setup = Setup::small().await;
    setup.github.fail_next_matching(path, 2, fake_github::Fault::Status(StatusCode::BAD_GATEWAY));

    setup.run(&[]).await.expect("the run succeeds after the retries");

    let statuses: Vec<_> =
        setup.github.requests().into_iter().filter(|r| r.path_and_query.contains(path)).map(|r| r.status).collect();
    assert_eq!(statuses[..2], [Some(502), Some(502)], "{statuses:?}");
    assert!(matches!(statuses[2], Some(200 | 302)), "the third attempt goes through: {statuses:?}");
    // The tarball is read by a task of its own, whose logs this test's capture does not see.
    if path == "/commits/" {
        assert_eq!(setup.logs.count("GitHub request failed: retrying"), 2, "{}", setup.logs.text());
    }
    setup.assert_recovered(true).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b1_github_502_on_the_commit_request_is_retried() {
    github_502_twice_on("/commits/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b2_github_502_on_the_tarball_is_retried() {
    github_502_twice_on("/tarball/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_opencti_down_at_start_is_waited_for() {
    let _broker = rabbit::broker_shared().await;
    let setup = Setup::small().await;
    setup.opencti.set_down(true).await;

    let comes_back = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        setup.opencti.set_down(false).await;
    };
    let (result, ()) = tokio::join!(setup.run(&[]), comes_back);
    result.expect("the run succeeds once OpenCTI is back");

    let retries = setup.logs.count("OpenCTI call failed: retrying");
    assert!(
        retries >= 2,
        "the connector keeps retrying while OpenCTI is down ({retries} retries):\n{}",
        setup.logs.text()
    );
    let calls = setup.opencti.calls();
    let first = calls.first().expect("calls once back up");
    assert!(first.at - setup.opencti.started_at() >= Duration::from_secs(3), "nothing got through while down");
    // At start, and again on taking the leadership, to read the platform's latest state.
    assert_eq!(setup.opencti.registrations().len(), 2);
    setup.assert_recovered(true).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn d_opencti_502_on_work_add_is_retried() {
    let _broker = rabbit::broker_shared().await;
    let setup = Setup::small().await;
    setup.opencti.fail_next_op("workAdd", 1, fake_opencti::Fault::Http(StatusCode::BAD_GATEWAY));

    setup.run(&[]).await.expect("the run succeeds after the retry");

    let outcomes: Vec<_> = setup.opencti.calls_to("workAdd").into_iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, [Outcome::Http(502), Outcome::Ok]);
    setup.assert_recovered(true).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_broker_connection_cut_mid_run_is_survived() {
    // Cutting this process's broker connections would also cut the other tests' ones.
    let _broker = rabbit::broker_exclusive().await;
    // Tens of thousands of messages (client split, observables), so that the run is still going when the cut lands.
    let trails = trail_subset(&[("malware", 30, 12_000..=20_000)]);
    let setup = Setup::start(trails, fake_github::FakeOptions::default(), fake_opencti::FakeOptions::default()).await;
    let queue = setup.push_queue();

    let cut = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count = rabbit::message_count(&queue).await.unwrap_or(0);
            if count >= 3_000 {
                break count;
            }
            assert!(Instant::now() < deadline, "messages never started flowing (logs:\n{})", setup.logs.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let in_queue_at_cut = {
        let run = setup.run(&[]);
        tokio::pin!(run);
        let in_queue_at_cut = tokio::select! {
            count = cut => count,
            result = &mut run => panic!("the run ended before the cut: {result:?}"),
        };
        // The run is not polled while the connections are cut: it resumes on a dead link.
        let cut_connections = rabbit::close_own_connections().await;
        assert!(cut_connections >= 1, "no connection to cut");
        run.await.expect("the run completes after reconnecting");
        in_queue_at_cut
    };

    let logs = setup.logs.text();
    assert!(
        logs.contains("RabbitMQ link lost"),
        "the cut hit the run mid-way (at {in_queue_at_cut} messages):\n{logs}"
    );
    assert!(logs.contains("RabbitMQ link restored"), "{logs}");
    let work = setup.assert_recovered(false).await;
    assert!(work.expectations > 20_000, "a run big enough to be cut: {} expectations", work.expectations);
    eprintln!("cut with {in_queue_at_cut} messages in the queue, of {} expected", work.expectations);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f_wrong_opencti_token_is_fatal_at_once() {
    let _broker = rabbit::broker_shared().await;
    for auth_failure in [AuthFailure::GraphqlError, AuthFailure::Http401] {
        let opencti = fake_opencti::FakeOptions { auth_failure, ..Default::default() };
        let setup = Setup::start(small_trail_set(), fake_github::FakeOptions::default(), opencti).await;

        let started = Instant::now();
        let error = setup.run(&[("OPENCTI_TOKEN", "not-the-token")]).await.expect_err("a refused token is fatal");
        let took = started.elapsed();

        let message = format!("{error:#}");
        assert!(message.contains("OPENCTI_TOKEN"), "{auth_failure:?}: {message}");
        assert!(!message.contains("not-the-token"), "the token is not printed: {message}");
        assert!(took < Duration::from_secs(10), "{auth_failure:?}: gave up after {took:?}");
        assert_eq!(setup.opencti.calls().len(), 1, "no retry: {}", setup.opencti.call_log());
        assert!(setup.opencti.works().is_empty() && setup.opencti.registrations().is_empty());
        assert!(setup.github.requests().is_empty(), "GitHub untouched");
        setup.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn g_mq_variables_override_the_connection_the_platform_hands_out() {
    let _broker = rabbit::broker_shared().await;
    // A platform that hands out its own network's broker address and credentials.
    let connection = MqConnection {
        host: "rabbitmq".into(),
        port: 5673,
        user: "opencti-internal".into(),
        pass: "internal-secret".into(),
        ..MqConnection::default()
    };
    let opencti = fake_opencti::FakeOptions { connection, ..Default::default() };
    let setup = Setup::start(small_trail_set(), fake_github::FakeOptions::default(), opencti).await;

    let overrides = [("MQ_HOST", "127.0.0.1"), ("MQ_PORT", "5672"), ("MQ_USER", "guest"), ("MQ_PASS", "guest")];
    setup.run(&overrides).await.expect("the run reaches the broker through the MQ_* overrides");

    assert!(!setup.logs.text().contains("RabbitMQ unreachable"), "{}", setup.logs.text());
    setup.assert_recovered(true).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h_a_trails_path_without_files_fails_the_run_and_records_nothing() {
    let _broker = rabbit::broker_shared().await;
    let setup = Setup::small().await;
    let error = setup.run(&[("MALTRAIL_PATH", "trails/statik")]).await.expect_err("run-and-terminate exits non-zero");
    assert!(error.to_string().contains("the run failed"), "{error:#}");
    let works = setup.opencti.works();
    assert_eq!(works.len(), 1, "{}", setup.opencti.call_log());
    assert!(works[0].processed && works[0].in_error, "{:?}", works[0]);
    let message = works[0].message.clone().unwrap_or_default();
    assert!(message.contains("holds no trail file") && message.contains("MALTRAIL_PATH"), "{message}");
    let state = setup.opencti.state().unwrap_or_default();
    assert!(!state.contains("last_commit"), "nothing recorded as synced: {state}");
    rabbit::delete_queue(&setup.push_queue()).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i_a_reset_answered_to_the_runs_own_ping_is_adopted() {
    let _broker = rabbit::broker_shared().await;
    let setup = Setup::small().await;
    // The run's first addExpectations hangs a little: the user resets the state meanwhile.
    setup.opencti.fail_next_op("workEdit.addExpectations", 1, fake_opencti::Fault::Hang(Duration::from_millis(800)));
    let run = setup.run(&[]);
    let reset = async {
        setup.opencti.wait_until(Duration::from_secs(30), "a work", |fake| !fake.works().is_empty()).await;
        setup.opencti.reset_state(Some("{}".into()));
    };
    let (result, ()) = tokio::join!(run, reset);
    result.expect("the run itself succeeds");
    let work = setup.opencti.works().remove(0);
    assert!(work.processed && !work.in_error, "{work:?}");
    assert!(work.message.as_deref().is_some_and(|m| m.contains("state reset during the run")), "{work:?}");
    // The state ping after the run was answered with the reset state: adopted, so the final ping keeps it empty
    // and the next run starts over (before, the final ping wrote the synced commit back over the reset).
    let state = setup.opencti.state().unwrap_or_default();
    assert!(!state.contains("last_commit"), "the reset stands: {state}\nlogs:\n{}", setup.logs.text());
    assert_eq!(setup.logs.count("the platform's state was reset"), 1, "{}", setup.logs.text());
    rabbit::delete_queue(&setup.push_queue()).await;
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn j_shutdown_while_waiting_out_a_rate_limit_ends_at_once() {
    let _broker = rabbit::broker_shared().await;
    let github = fake_github::FakeOptions { rate_limit_window: Duration::from_secs(3_600), ..Default::default() };
    let setup = Setup::start(small_trail_set(), github, fake_opencti::FakeOptions::default()).await;
    setup.github.set_rate_limit_remaining(0);
    let shutdown = Shutdown::new();
    let service = tokio::spawn(
        serve(setup.config(&[]), shutdown.clone(), Timings::default()).with_subscriber(setup.logs.subscriber()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.logs.count("GitHub rate limit exhausted") == 0 {
        assert!(Instant::now() < deadline, "no rate-limit wait; logs:\n{}", setup.logs.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), service)
        .await
        .expect("shutdown does not wait for the hour-long reset")
        .expect("no panic")
        .expect("a clean exit");
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert!(setup.opencti.works().is_empty(), "no work opened after shutdown: {}", setup.opencti.call_log());
    rabbit::delete_queue(&setup.push_queue()).await;
    setup.stop().await;
}
