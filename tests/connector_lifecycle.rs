//! The `maltrail-connector` binary as a process: refusing bad configuration before any network access, SIGTERM mid-run
//! then a restart that finishes the job, a state reset on the platform, JSON logs that never show a secret, and the
//! Prometheus metrics of a run.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::collector::Collector;
use support::fake_github::{self, FakeGitHub, FakeRepo};
use support::fake_opencti::{self, FakeOpenCti, MqConnection};
use support::process::Connector;
use support::rabbit;
use support::trails::{expected_indicator_ids, small_trail_set, trail_subset};

/// A fake GitHub serving the trails under `root`.
async fn fake_github_of(root: &Path, options: fake_github::FakeOptions) -> FakeGitHub {
    let repo = FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", root).expect("fake repo");
    FakeGitHub::start(repo, options).await
}

/// The variables that point the binary at the fakes, for one run of connector `id`.
fn base_env(opencti: &FakeOpenCti, github: &FakeGitHub, id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OPENCTI_URL", opencti.url()),
        ("OPENCTI_TOKEN", opencti.token().to_owned()),
        ("CONNECTOR_ID", id.to_owned()),
        ("CONNECTOR_RUN_AND_TERMINATE", "true".into()),
        ("MALTRAIL_API_BASE_URL", github.base_url()),
    ]
}

fn with(mut env: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    for (name, value) in extra {
        env.retain(|(n, _)| n != name);
        env.push((name, (*value).to_owned()));
    }
    env
}

/// The platform's copy of the state, parsed (`{}` when there is none).
fn state(opencti: &FakeOpenCti) -> serde_json::Value {
    opencti.state().filter(|s| !s.is_empty()).map_or(serde_json::json!({}), |s| serde_json::from_str(&s).expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_configuration_is_refused_before_any_network_access() {
    let trails = small_trail_set();
    let github = fake_github_of(trails.path(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions::default()).await;
    let base = base_env(&opencti, &github, &uuid::Uuid::new_v4().to_string());
    let pairs = base.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    maltrail_connector::settings::Config::from_env(pairs).expect("the base configuration is valid");

    let cases: [(&str, Option<&str>); 7] = [
        ("CONNECTOR_ID", Some("not-a-uuid")),
        ("CONNECTOR_DURATION_PERIOD", Some("1h")),
        ("CONNECTOR_LOG_LEVEL", Some("verbose")),
        ("OPENCTI_URL", None),
        ("MALTRAIL_CATEGORIES", Some("malware,trojans")),
        ("MQ_PORT", Some("amqp")),
        ("MQ_PORT", Some("70000")),
    ];
    for (variable, value) in cases {
        let mut env = base.clone();
        env.retain(|(name, _)| *name != variable);
        if let Some(value) = value {
            env.push((variable, value.to_owned()));
        }
        let mut connector = Connector::start(&env);
        let status = connector.exit(Duration::from_secs(5)).await;
        let stderr = connector.stderr();
        assert!(!status.success(), "{variable}={value:?} accepted; stderr:\n{stderr}");
        assert!(stderr.contains(variable), "{variable}={value:?}: stderr does not name it:\n{stderr}");
    }

    assert!(opencti.calls().is_empty(), "OpenCTI was called:\n{}", opencti.call_log());
    assert!(github.requests().is_empty(), "GitHub was called: {:?}", github.requests());
    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b_sigterm_mid_run_then_a_restart_carries_the_run_on() {
    let _broker = rabbit::broker_shared().await;
    // Fails with how to start RabbitMQ when it is not running.
    rabbit::close(rabbit::connect().await).await;
    // A run of several seconds: a large part of the snapshot, split by the platform, with a publish window small
    // enough that the connector cannot read far ahead of what the broker takes (so messages flow from the start).
    let trails = trail_subset(&[("malware", 600, 0..=u64::MAX), ("malicious", 60, 0..=u64::MAX)]);
    let expected = expected_indicator_ids(trails.path());
    let github = fake_github_of(trails.path(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let env = with(
        base_env(&opencti, &github, &connector_id),
        &[
            ("CONNECTOR_SPLIT", "platform"),
            ("CONNECTOR_BATCH_SIZE", "2000"),
            ("CONNECTOR_PUBLISH_WINDOW", "16"),
            ("MALTRAIL_CREATE_OBSERVABLES", "false"),
        ],
    );
    let collector = Collector::start(format!("push_{connector_id}"));

    // First run: interrupted as soon as messages flow.
    let mut first = Connector::start(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while collector.messages() == 0 {
        assert!(Instant::now() < deadline, "no message within 60 s; stderr:\n{}", first.stderr());
        assert!(first.child.try_wait().expect("status").is_none(), "exited early:\n{}", first.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.terminate();
    let terminated = Instant::now();
    let status = first.exit(Duration::from_secs(30)).await;
    let stderr = first.stderr();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let works = opencti.works();
    assert_eq!(works.len(), 1, "{works:?}");
    assert!(!works[0].processed, "the interrupted run's work stays open for the run to be carried on: {:?}", works[0]);
    let recorded = state(&opencti);
    assert!(recorded.get("last_commit").is_none(), "the state did not advance: {recorded}");
    assert_eq!(recorded["run"]["work_id"], works[0].id.as_str(), "the run in flight is recorded: {recorded}");
    eprintln!("first run: SIGTERM after {} messages, exit after {:?}", collector.messages(), terminated.elapsed());

    // Second start: the same run, carried on to its end (no second work, no new plan).
    let mut second = Connector::start(&env);
    let status = second.exit(Duration::from_secs(180)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", second.stderr());
    assert!(second.stderr().contains("carrying on the run in flight"), "{}", second.stderr());
    let collected = collector.finish().await;

    let works = opencti.works();
    assert_eq!(works.len(), 1, "{works:?}");
    let work = &works[0];
    assert!(work.friendly_name.as_deref().is_some_and(|n| n.starts_with("Maltrail full import")), "{work:?}");
    assert!(work.processed && !work.in_error, "{work:?}");
    assert!(state(&opencti).get("run").is_none(), "the run is over: {}", state(&opencti));
    let announced = work.expectations - work.errors.len() as i64;
    assert!(collected.messages_by_work.get(&work.id).copied().unwrap_or(0) > 0);
    assert_eq!(collected.singles_by_work.get(&work.id).copied().unwrap_or(0) as i64, announced);
    assert_eq!(state(&opencti)["last_commit"], github.head_sha().as_str());
    let missing = expected.difference(&collected.indicator_ids).count();
    assert_eq!(missing, 0, "of {} indicators, {missing} never reached the queue", expected.len());

    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_a_state_reset_on_the_platform_brings_a_full_import() {
    let _broker = rabbit::broker_shared().await;
    // Fails with how to start RabbitMQ when it is not running.
    rabbit::close(rabbit::connect().await).await;
    let trails = small_trail_set();
    let expected = expected_indicator_ids(trails.path());
    let github = fake_github_of(trails.path(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let env = base_env(&opencti, &github, &connector_id);
    let queue = format!("push_{connector_id}");

    let mut first = Connector::start(&env);
    assert!(first.exit(Duration::from_secs(60)).await.success(), "{}", first.stderr());
    assert_eq!(state(&opencti)["last_commit"], github.head_sha().as_str());
    rabbit::drain(&queue, Duration::from_secs(1)).await;

    // A user resets the connector's state in the platform's UI.
    opencti.reset_state(Some("{}".into()));
    let mut second = Connector::start(&env);
    assert!(second.exit(Duration::from_secs(60)).await.success(), "{}", second.stderr());

    let works = opencti.works();
    assert_eq!(works.len(), 2, "{works:?}");
    for work in &works {
        assert!(work.friendly_name.as_deref().is_some_and(|n| n.starts_with("Maltrail full import")), "{work:?}");
        assert!(work.processed && !work.in_error, "{work:?}");
    }
    let mut ids = HashSet::new();
    let messages = rabbit::drain(&queue, Duration::from_secs(2)).await;
    for message in &messages {
        let envelope = message.envelope();
        assert_eq!(envelope.work_id.as_deref(), Some(works[1].id.as_str()));
        ids.extend(envelope.objects().iter().filter(|o| o["type"] == "indicator").map(|o| o["id"].to_string()));
    }
    let ids: HashSet<String> = ids.into_iter().map(|id| id.trim_matches('"').to_owned()).collect();
    assert!(ids == expected, "the second run sends every indicator again ({} of {})", ids.len(), expected.len());
    assert_eq!(works[1].expectations - works[1].errors.len() as i64, messages.len() as i64);
    assert_eq!(state(&opencti)["last_commit"], github.head_sha().as_str());

    opencti.stop().await;
    github.stop();
}

/// A RabbitMQ user of its own, so that its password is a string no log has any other reason to hold. Deleted when
/// dropped.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    fn create() -> BrokerUser {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let user = BrokerUser { name: format!("maltrail-test-{suffix}"), password: format!("mq-pass-{suffix}") };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["-q", "delete_user", &self.name]).output();
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl").arg("-q").args(args).output().expect("run rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn d_json_logs_without_secrets() {
    let _broker = rabbit::broker_shared().await;
    // Fails with how to start RabbitMQ when it is not running.
    rabbit::close(rabbit::connect().await).await;
    let trails = small_trail_set();
    // A line the parser skips: logged at debug level, with its text.
    let odd = "# Reference: https://example.invalid/\nlifecycle-test.example\n18.197.239.109:66086\n";
    std::fs::write(trails.path().join("malware/zz_lifecycle_test.txt"), odd).expect("write a trail file");
    let github_token = format!("ghp_{}", uuid::Uuid::new_v4().simple());
    let github_options = fake_github::FakeOptions { token: Some(github_token.clone()), ..Default::default() };
    let github = fake_github_of(trails.path(), github_options).await;
    let user = tokio::task::spawn_blocking(BrokerUser::create).await.expect("broker user");
    // The platform hands out a password of its own too: the MQ_* variables override it.
    let platform_pass = format!("platform-pass-{}", uuid::Uuid::new_v4().simple());
    let connection = MqConnection { pass: platform_pass.clone(), ..MqConnection::default() };
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions { connection, ..Default::default() }).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let env = with(
        base_env(&opencti, &github, &connector_id),
        &[
            ("OPENCTI_JSON_LOGGING", "true"),
            ("CONNECTOR_LOG_LEVEL", "debug"),
            ("MALTRAIL_API_KEY", &github_token),
            ("MQ_USER", &user.name),
            ("MQ_PASS", &user.password),
        ],
    );

    // A failing call on each side, so that error paths (which quote URLs and answers) are in the logs too.
    opencti.fail_next_op("workAdd", 1, fake_opencti::Fault::Http(fake_opencti::StatusCode::BAD_GATEWAY));
    github.fail_next(1, fake_github::Fault::Status(fake_opencti::StatusCode::BAD_GATEWAY));

    let mut connector = Connector::start(&env);
    let status = connector.exit(Duration::from_secs(60)).await;
    let stderr = connector.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("OpenCTI call failed: retrying") && stderr.contains("GitHub request failed"), "{stderr}");
    assert!(opencti.works().first().is_some_and(|w| w.processed && !w.in_error), "{:?}", opencti.works());
    assert!(github.requests().iter().all(|r| r.status != Some(401)), "the API key is sent");

    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 5, "a run logs more than that:\n{stderr}");
    let mut debug_lines = 0;
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["level"].is_string(), "no level: {line}");
        let message = event.get("message").or_else(|| event.pointer("/fields/message"));
        assert!(message.is_some_and(serde_json::Value::is_string), "no message: {line}");
        debug_lines += usize::from(event["level"] == "DEBUG");
    }
    assert!(debug_lines > 0, "CONNECTOR_LOG_LEVEL=debug shows debug events (the skipped line)");
    for (name, secret) in [
        ("OPENCTI_TOKEN", opencti.token()),
        ("MALTRAIL_API_KEY", github_token.as_str()),
        ("MQ_PASS", user.password.as_str()),
        ("the platform's broker password", platform_pass.as_str()),
    ] {
        assert!(!stderr.contains(secret), "{name} appears in the logs:\n{stderr}");
    }

    drop(connector);
    opencti.stop().await;
    github.stop();
    tokio::task::spawn_blocking(move || drop(user)).await.expect("delete the broker user");
}

/// The value of the sample `name` (with its labels, e.g. `maltrail_runs_total{outcome="success"}`) in a Prometheus
/// text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_metrics_report_the_run_to_prometheus() {
    let _broker = rabbit::broker_shared().await;
    let trails = small_trail_set();
    let github = fake_github_of(trails.path(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
    let port_text = port.to_string();
    let env = with(
        base_env(&opencti, &github, &connector_id),
        &[
            ("CONNECTOR_RUN_AND_TERMINATE", "false"),
            ("CONNECTOR_DURATION_PERIOD", "PT1H"),
            ("CONNECTOR_EXPOSE_METRICS", "true"),
            ("CONNECTOR_METRICS_PORT", &port_text),
        ],
    );
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let mut connector = Connector::start(&env);
    opencti
        .wait_until(Duration::from_secs(60), "the first import", |fake| fake.works().iter().any(|w| w.processed))
        .await;

    let url = format!("http://127.0.0.1:{port}/metrics");
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", connector.stderr()));
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("metrics body");
    let work = opencti.works().remove(0);
    assert_eq!(metric(&text, "maltrail_runs_total{outcome=\"success\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "maltrail_runs_total{outcome=\"failed\"}"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "maltrail_messages_published_total"),
        Some(work.expectations as f64),
        "every expected message counted once confirmed:\n{text}"
    );
    let distinct = expected_indicator_ids(trails.path()).len() as f64;
    let sent = metric(&text, "maltrail_trails_sent_total").expect("trails sent");
    assert!(sent >= distinct, "{sent} trails sent, {distinct} distinct indicators in the files");
    assert_eq!(metric(&text, "maltrail_trails_revoked_total"), Some(0.0));
    let last_success = metric(&text, "maltrail_last_success_timestamp_seconds").expect("last success");
    assert!(last_success >= started.floor(), "{last_success} < {started}");
    // pycti's series, under pycti's names, for dashboards made for pycti connectors.
    assert_eq!(metric(&text, "bundles_sent_total"), Some(work.expectations as f64), "{text}");
    assert_eq!(metric(&text, "records_sent_total"), Some(work.expectations as f64), "{text}");
    assert_eq!(metric(&text, "runs_total"), Some(1.0), "{text}");
    assert!(metric(&text, "ping_api_total").is_some_and(|pings| pings >= 2.0), "first ping and state: {text}");
    assert_eq!(metric(&text, "ping_api_errors_total"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "state{state=\"idle\"}"), Some(1.0), "{text}");
    let not_found = reqwest::get(format!("http://127.0.0.1:{port}/")).await.expect("GET /");
    assert_eq!(not_found.status(), 404);

    // The health check the container runs: the binary's `health` command against the running connector.
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_maltrail-connector"))
        .args(["health", "--url", &format!("http://127.0.0.1:{port}/health")])
        .output()
        .expect("run the health command");
    assert!(health.status.success(), "health: {}", String::from_utf8_lossy(&health.stderr));
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_maltrail-connector"))
        .arg("health")
        .env("CONNECTOR_METRICS_PORT", port_text.as_str())
        .output()
        .expect("run the health command");
    assert!(health.status.success(), "health from CONNECTOR_METRICS_PORT: {}", String::from_utf8_lossy(&health.stderr));

    connector.terminate();
    let status = connector.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{}", connector.stderr());
    let gone = std::process::Command::new(env!("CARGO_BIN_EXE_maltrail-connector"))
        .args(["health", "--url", &format!("http://127.0.0.1:{port}/health")])
        .output()
        .expect("run the health command");
    assert!(!gone.status.success(), "a stopped connector is not healthy");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no answer from"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    rabbit::delete_queue(&format!("push_{connector_id}")).await;
    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f_a_recovered_broker_cut_logs_warnings_not_errors() {
    // Cutting this process tree's broker connections would also cut the other tests' ones.
    let _broker = rabbit::broker_exclusive().await;
    let trails = trail_subset(&[("malware", 30, 12_000..=20_000)]);
    let expected = expected_indicator_ids(trails.path());
    let github = fake_github_of(trails.path(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(fake_opencti::FakeOptions::default()).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let _queues = rabbit::QueueGuard::new(
        opencti_connector::jobs::QueueNames::new("maltrail", &connector_id).all().map(str::to_owned),
    );
    let env = with(base_env(&opencti, &github, &connector_id), &[("CONNECTOR_PUBLISH_WINDOW", "64")]);
    let collector = Collector::start(format!("push_{connector_id}"));
    let mut connector = Connector::start(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while collector.messages() < 2_000 {
        assert!(Instant::now() < deadline, "no messages flowing; stderr:\n{}", connector.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = rabbit::close_own_connections().await;
    assert!(cut >= 1, "no connection to cut");
    let status = connector.exit(Duration::from_secs(180)).await;
    let stderr = connector.stderr();
    assert_eq!(status.code(), Some(0), "the run completes after the cut; stderr:\n{stderr}");
    let collected = collector.finish().await;
    let warnings = ["RabbitMQ link lost", "leadership lost", "connection was lost"];
    assert!(warnings.iter().any(|w| stderr.contains(w)), "the cut hit the run:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|line| line.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "a recovered cut is no error (an alert on ERROR would fire):\n{}", errors.join("\n"));
    let missing = expected.difference(&collected.indicator_ids).count();
    assert_eq!(missing, 0, "nothing lost: {missing} indicators missing");
    opencti.stop().await;
    github.stop();
}
