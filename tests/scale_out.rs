//! Replicas of one connector, as processes of the built binary, on the real RabbitMQ, with the fake OpenCTI and
//! the fake GitHub: workers share a run's jobs and survive one of them killed; a leader killed mid-run is replaced
//! and its run carried on; a job that always fails is parked and named; two replicas started at once plan once.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::collector::Collector;
use support::fake_github::{self, FakeGitHub, FakeRepo};
use support::fake_opencti::{FakeOpenCti, FakeOptions, Work};
use support::process::Connector;
use support::rabbit;
use support::snapshot::snapshot_repo;
use support::trails::{expected_indicator_ids, small_trail_set, trail_subset};

/// The variables every replica of connector `id` gets: the fakes, and a platform split without observables (a
/// full snapshot in a minute).
fn replica_env(opencti: &FakeOpenCti, github: &FakeGitHub, id: &str, role: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OPENCTI_URL", opencti.url()),
        ("OPENCTI_TOKEN", opencti.token().to_owned()),
        ("CONNECTOR_ID", id.to_owned()),
        ("CONNECTOR_ROLE", role.to_owned()),
        ("CONNECTOR_DURATION_PERIOD", "PT1H".into()),
        ("CONNECTOR_SPLIT", "platform".into()),
        ("CONNECTOR_BATCH_SIZE", "5000".into()),
        ("MALTRAIL_CREATE_OBSERVABLES", "false".into()),
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

/// The connector's job queues, deleted when the test ends (even when it fails).
fn job_queues(id: &str) -> rabbit::QueueGuard {
    let names = opencti_connector::jobs::QueueNames::new("maltrail", id);
    rabbit::QueueGuard::new(names.all().map(str::to_owned))
}

/// The platform's copy of the state, parsed.
fn state(opencti: &FakeOpenCti) -> Value {
    opencti.state().filter(|s| !s.is_empty()).map_or(serde_json::json!({}), |s| serde_json::from_str(&s).expect("JSON"))
}

/// How many pings moved the state's `last_commit` to a new value.
fn state_advances(opencti: &FakeOpenCti) -> usize {
    let mut last = None;
    let mut advances = 0;
    for ping in opencti.pings() {
        let commit = ping
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|s| s["last_commit"].as_str().map(str::to_owned));
        if commit.is_some() && commit != last {
            advances += 1;
            last = commit;
        }
    }
    advances
}

/// Waits until the connector's work is processed; returns it.
async fn processed_work(opencti: &FakeOpenCti, timeout: Duration, replicas: &[&Connector]) -> Work {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(work) = opencti.works().into_iter().find(|w| w.processed) {
            return work;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|r| r.stderr()).collect();
            panic!(
                "no work processed after {timeout:?}; works {:?}\nlogs:\n{}",
                opencti.works(),
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tarball_downloads(github: &FakeGitHub) -> usize {
    github.requests().iter().filter(|r| r.path_and_query.contains("/tarball/")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_a_full_import_and_survive_one_killed() {
    let _broker = rabbit::broker_shared().await;
    let github = FakeGitHub::start(snapshot_repo(), fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let _queues = job_queues(&id);
    let expected = expected_indicator_ids(&support::snapshot::snapshot_dir());
    let collector = Collector::start(format!("push_{id}"));

    let scheduler_env =
        with(replica_env(&opencti, &github, &id, "scheduler"), &[("CONNECTOR_RUN_AND_TERMINATE", "true")]);
    let mut scheduler = Connector::start(&scheduler_env);
    let mut workers: Vec<Connector> =
        (0..3).map(|_| Connector::start(&replica_env(&opencti, &github, &id, "worker"))).collect();

    // Mid-run: once a first job is done, a worker in the middle of a job dies at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let busy = loop {
        let busy = workers.iter().position(|w| {
            let log = w.stderr();
            log.rfind("job started").is_some_and(|started| log.rfind("job done").is_none_or(|done| done < started))
        });
        let some_done = workers.iter().any(|w| w.stderr().contains("job done"));
        if let (Some(busy), true) = (busy, some_done) {
            break busy;
        }
        assert!(Instant::now() < deadline, "no worker busy in 2 minutes; scheduler:\n{}", scheduler.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers[busy].kill();

    let status = scheduler.exit(Duration::from_secs(600)).await;
    assert_eq!(status.code(), Some(0), "the run completes; scheduler:\n{}", scheduler.stderr());
    let collected = collector.finish().await;
    for worker in &workers {
        worker.terminate_if_running();
    }

    let missing = expected.difference(&collected.indicator_ids).count();
    assert_eq!(missing, 0, "of {} indicators, {missing} never reached the queue", expected.len());
    let works = opencti.works();
    assert_eq!(works.len(), 1, "one work for the run: {works:?}");
    assert!(works[0].processed && !works[0].in_error, "{:?}", works[0]);
    assert_eq!(state_advances(&opencti), 1, "the state advances once");
    assert_eq!(state(&opencti)["last_commit"], fake_github::SNAPSHOT_COMMIT);
    assert!(state(&opencti).get("run").is_none());
    assert_eq!(tarball_downloads(&github), 1, "one tarball, whatever the number of workers");
    let shared: usize = workers.iter().filter(|w| w.stderr().contains("job done")).count();
    assert!(shared >= 2, "the jobs were shared among the workers ({shared} did some)");
    let redone = workers.iter().any(|w| w.stderr().contains("previous_deliveries=1"));
    assert!(redone, "the killed worker's job went to another worker");
    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_mid_run_is_replaced_and_its_run_carried_on() {
    let _broker = rabbit::broker_shared().await;
    let trails = trail_subset(&[("malware", 400, 0..=u64::MAX), ("malicious", 40, 0..=u64::MAX)]);
    let expected = expected_indicator_ids(trails.path());
    let repo = FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", trails.path()).expect("repo");
    let github = FakeGitHub::start(repo, fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let _queues = job_queues(&id);
    let collector = Collector::start(format!("push_{id}"));
    // Small jobs and a small window, so that the run lasts beyond the takeover.
    let env = with(
        replica_env(&opencti, &github, &id, "all"),
        &[("CONNECTOR_PUBLISH_WINDOW", "4"), ("CONNECTOR_BATCH_SIZE", "300")],
    );
    let mut replicas = [Connector::start(&env), Connector::start(&env)];

    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        if let Some(index) = replicas.iter().position(|r| r.stderr().contains("every job is out")) {
            break index;
        }
        assert!(Instant::now() < deadline, "no leader published its jobs:\n{}", replicas[0].stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let other = 1 - leader;
    assert!(!replicas[other].stderr().contains("leading:"), "only one leads");
    replicas[leader].kill();
    let killed = Instant::now();
    replicas[other].wait_for_log("leading:", Duration::from_secs(30)).await;
    let takeover = killed.elapsed();
    replicas[other].wait_for_log("carrying on the run in flight", Duration::from_secs(30)).await;

    let work = processed_work(&opencti, Duration::from_secs(300), &[&replicas[other]]).await;
    assert!(!work.in_error, "{work:?}\n{}", replicas[other].stderr());
    let collected = collector.finish().await;
    replicas[other].terminate();
    replicas[other].exit(Duration::from_secs(30)).await;

    eprintln!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(30), "a new leader within 30 s, not {takeover:?}");
    assert_eq!(opencti.works().len(), 1, "the same work, carried on");
    assert_eq!(tarball_downloads(&github), 1, "the jobs were all out: the new leader did not plan again");
    let missing = expected.difference(&collected.indicator_ids).count();
    assert_eq!(missing, 0, "of {} indicators, {missing} never reached the queue", expected.len());
    let announced: u64 = work
        .message
        .as_deref()
        .and_then(|m| m.split(", ").find_map(|part| part.strip_suffix(" messages").and_then(|n| n.parse().ok())))
        .expect("the work's summary counts its messages");
    let published: u64 = collected.messages_by_work.values().sum();
    assert!(
        (published as f64) < 1.2 * announced as f64,
        "{published} messages published for a run of {announced}: below 1.2 times one import"
    );
    assert_eq!(state(&opencti)["last_commit"], github.head_sha().as_str());
    opencti.stop().await;
    github.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_always_fails_is_parked_and_the_run_names_it() {
    let _broker = rabbit::broker_shared().await;
    let trails = small_trail_set();
    let expected = expected_indicator_ids(trails.path());
    let repo = FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", trails.path()).expect("repo");
    // The largest file travels by reference (over the inline limit), and GitHub refuses its blob, every time.
    let (poison, content) = std::fs::read_dir(trails.path().join("malicious"))
        .expect("malicious/")
        .map(|e| e.expect("entry").path())
        .map(|path| (path.clone(), std::fs::read(&path).expect("read")))
        .max_by_key(|(_, content)| content.len())
        .expect("a file");
    let poison = format!("malicious/{}", poison.file_name().expect("name").to_string_lossy());
    let inline_limit = content.len() - 1;
    let sha = {
        use sha1::Digest as _;
        let mut hasher = sha1::Sha1::new();
        hasher.update(format!("blob {}\0", content.len()).as_bytes());
        hasher.update(&content);
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let github = FakeGitHub::start(repo, fake_github::FakeOptions::default()).await;
    github.fail_next_matching(
        &format!("/git/blobs/{sha}"),
        1_000,
        fake_github::Fault::Status(support::fake_opencti::StatusCode::NOT_FOUND),
    );
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let _queues = job_queues(&id);
    let collector = Collector::start(format!("push_{id}"));
    let limit = inline_limit.to_string();
    let env = with(
        replica_env(&opencti, &github, &id, "all"),
        &[
            ("CONNECTOR_RUN_AND_TERMINATE", "true"),
            ("MALTRAIL_JOB_INLINE_BYTES", &limit),
            ("CONNECTOR_SPLIT", "client"),
        ],
    );
    let mut connector = Connector::start(&env);
    let status = connector.exit(Duration::from_secs(180)).await;
    let stderr = connector.stderr();
    assert_eq!(status.code(), Some(1), "the run ends in error; stderr:\n{stderr}");
    let collected = collector.finish().await;

    let works = opencti.works();
    assert_eq!(works.len(), 1);
    let work = &works[0];
    assert!(work.processed && work.in_error, "{work:?}");
    let message = work.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("parked") && message.contains(&poison),
        "the work names the parked file: {message}\n{stderr}"
    );
    assert!(message.contains("404"), "and why: {message}");
    let attempts = stderr.matches("job failed: handed back to be tried again").count();
    assert!((2..=8).contains(&attempts), "bounded retries, {attempts} attempts:\n{stderr}");
    // The other files were delivered: every indicator but the poisoned file's.
    let poisoned = expected_indicator_ids_of(trails.path(), &poison);
    let delivered = expected.difference(&poisoned).filter(|id| !collected.indicator_ids.contains(*id)).count();
    assert_eq!(delivered, 0, "{delivered} indicators of the other files never reached the queue");
    let recorded = state(&opencti);
    assert!(recorded.get("last_commit").is_none() && recorded.get("run").is_none(), "nothing recorded: {recorded}");
    opencti.stop().await;
    github.stop();
}

/// The indicator ids of one file of `root`.
fn expected_indicator_ids_of(root: &std::path::Path, path: &str) -> std::collections::HashSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join(path);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("folder");
    std::fs::copy(root.join(path), &target).expect("copy");
    expected_indicator_ids(dir.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_started_at_once_plan_once() {
    let _broker = rabbit::broker_shared().await;
    let trails = small_trail_set();
    let repo = FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", trails.path()).expect("repo");
    let github = FakeGitHub::start(repo, fake_github::FakeOptions::default()).await;
    let opencti = FakeOpenCti::start(FakeOptions::default()).await;
    let id = uuid::Uuid::new_v4().to_string();
    let _queues = job_queues(&id);
    let env = replica_env(&opencti, &github, &id, "all");
    let mut replicas = [Connector::start(&env), Connector::start(&env)];
    let work = processed_work(&opencti, Duration::from_secs(120), &[&replicas[0], &replicas[1]]).await;
    assert!(!work.in_error, "{work:?}");
    // Long enough for a second planner, were there one, to open its work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaders = replicas.iter().filter(|r| r.stderr().contains("leading:")).count();
    assert_eq!(leaders, 1, "one replica leads");
    // The standby first: stopping the leader first would hand it the leadership on the way out.
    replicas.sort_by_key(|r| r.stderr().contains("leading:"));
    for replica in &mut replicas {
        replica.terminate();
        let status = replica.exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{}", replica.stderr());
    }
    assert_eq!(opencti.works().len(), 1, "one work");
    assert_eq!(tarball_downloads(&github), 1, "one plan");
    rabbit::delete_queue(&format!("push_{id}")).await;
    opencti.stop().await;
    github.stop();
}
