//! The GitHub source against the fake GitHub API serving the real Maltrail snapshot: head with ETags, the full
//! listing from one tarball, incremental changes from trees and blobs, and its behaviour under faults.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use maltrail_connector::settings::MaltrailSettings as MaltrailConfig;
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::source::github::{GitHubSource, RetryPolicy};
use maltrail_connector::source::{FileChange, FileStream, Revision, SourceError, TrailFileContent};
use opencti_connector::settings::Secret;
use proto_stix::Timestamp;
use reqwest::StatusCode;
use support::fake_github::{
    Change, FakeGitHub, FakeOptions, FakeRepo, Fault, RequestRecord, SNAPSHOT_COMMIT, SNAPSHOT_DATE,
};
use support::snapshot::{snapshot_dir, snapshot_repo};

const REPO: &str = "stamparm/maltrail";
const TRAILS: &str = "trails/static";
const SNAPSHOT_FILES: usize = 3_113;
const ICARUS: &str = "malware/icarus _ransomware.txt";

/// Shows the source's logs (retries, waits) in a failing test's output, or with `--nocapture`.
fn logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("maltrail_connector=debug").try_init();
}

/// A tiny repository for tests that do not need the snapshot.
fn small_repo() -> FakeRepo {
    let mut repo = FakeRepo::new(REPO);
    repo.add_commit(
        "Initial trails",
        "2026-08-20T08:00:00Z",
        [
            Change::put("trails/static/malware/alpha.txt", "alpha.example\n"),
            Change::put("trails/static/malware/beta.txt", "beta.example\n10.0.0.1\n"),
            Change::put("README.md", "# readme\n"),
        ],
    );
    repo
}

/// The snapshot's trail files, read from disk: what the source must reproduce.
fn snapshot_files() -> BTreeMap<String, Vec<u8>> {
    let dir = snapshot_dir();
    let paths = list_trail_files(&dir).expect("list the snapshot");
    paths.into_iter().map(|path| (path.clone(), read_trail_file(&dir, &path).expect("read"))).collect()
}

fn local_file(relative: &str) -> Vec<u8> {
    read_trail_file(&snapshot_dir(), relative).expect("read a snapshot file")
}

/// Short delays so that retries cost milliseconds; a read timeout long enough for a loaded machine.
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: 5,
        max_rate_limit_wait: Duration::from_secs(10),
    }
}

fn config(base_url: String, token: Option<&str>) -> MaltrailConfig {
    MaltrailConfig {
        api_base_url: base_url,
        api_key: token.map(Secret::new),
        repository: REPO.into(),
        git_ref: "master".into(),
        path: TRAILS.into(),
        directory: None,
        job_inline_bytes: 1 << 20,
        refresh_max_patches: 0,
    }
}

fn source_with(github: &FakeGitHub, token: Option<&str>, policy: RetryPolicy) -> GitHubSource {
    GitHubSource::with_retry_policy(&config(github.base_url(), token), policy).expect("source")
}

fn source(github: &FakeGitHub) -> GitHubSource {
    source_with(github, None, quick_policy())
}

fn snapshot_revision() -> Revision {
    Revision { id: SNAPSHOT_COMMIT.into(), date: Some(Timestamp::parse_rfc3339(SNAPSHOT_DATE).unwrap()) }
}

/// Every item of a file stream: the files, then the error that ended it, if any (nothing may follow an error).
async fn drain(mut stream: FileStream) -> (Vec<TrailFileContent>, Option<SourceError>) {
    let mut files = Vec::new();
    while let Some(item) = stream.recv().await {
        match item {
            Ok(file) => files.push(file),
            Err(error) => {
                assert!(stream.recv().await.is_none(), "an error must end the stream");
                return (files, Some(error));
            }
        }
    }
    (files, None)
}

fn paths(log: &[RequestRecord]) -> Vec<&str> {
    log.iter().map(|r| r.path_and_query.as_str()).collect()
}

fn statuses(log: &[RequestRecord]) -> Vec<Option<u16>> {
    log.iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn head_returns_the_commit_then_asks_with_its_etag() {
    logs();
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let source = source(&github);
    assert_eq!(source.describe(), "github:stamparm/maltrail@master");

    let first = source.head().await.expect("head");
    assert_eq!(first, snapshot_revision());
    let again = source.head().await.expect("head again");
    assert_eq!(again, first);

    let log = github.requests();
    assert_eq!(paths(&log), ["/repos/stamparm/maltrail/commits/master"; 2]);
    assert_eq!(statuses(&log), [Some(200), Some(304)]);
    assert_eq!(log[0].if_none_match, None);
    assert!(log[1].if_none_match.is_some(), "the second request is conditional");
    assert_eq!(log[0].accept.as_deref(), Some("application/vnd.github+json"));

    let next = github.add_commit("Update", "2026-08-24T10:00:00Z", [Change::put("trails/static/malware/x.txt", "x\n")]);
    let moved = source.head().await.expect("head after a commit");
    assert_eq!(moved.id, next);
    assert_eq!(moved.date, Some(Timestamp::parse_rfc3339("2026-08-24T10:00:00Z").unwrap()));
    assert_eq!(github.requests()[2].status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stream_the_whole_snapshot_and_keep_the_token_on_the_api_host() {
    logs();
    let options = FakeOptions {
        token: Some("t0k3n".into()),
        separate_download_host: true,
        api_path_prefix: "/api/v3".into(),
        ..FakeOptions::default()
    };
    let github = FakeGitHub::start(snapshot_repo(), options).await;
    let source = source_with(&github, Some("t0k3n"), quick_policy());

    let started = Instant::now();
    let (files, error) = drain(source.files(&snapshot_revision())).await;
    let elapsed = started.elapsed();
    assert!(error.is_none(), "{error:?}");
    let bytes: usize = files.iter().map(|f| f.content.len()).sum();
    eprintln!("files(): {} files, {bytes} bytes in {elapsed:.2?}", files.len());

    assert_eq!(files.len(), SNAPSHOT_FILES);
    let received: BTreeMap<String, Vec<u8>> = files.into_iter().map(|f| (f.path, f.content)).collect();
    assert_eq!(received.len(), SNAPSHOT_FILES, "no path twice");
    assert!(received.contains_key(ICARUS));
    assert!(received.keys().all(|p| p.ends_with(".txt") && !p.starts_with("trails/")));
    let expected = snapshot_files();
    assert!(received.keys().eq(expected.keys()), "the same paths as the snapshot");
    for (path, content) in &expected {
        assert!(received[path] == *content, "{path} differs from the snapshot");
    }

    let log = github.requests();
    assert_eq!(log.len(), 2, "{log:#?}");
    let (api, download) = (&log[0], &log[1]);
    assert_eq!(api.path_and_query, format!("/api/v3/repos/{REPO}/tarball/{SNAPSHOT_COMMIT}"));
    assert_eq!((api.status, api.on_download_host), (Some(302), false));
    assert_eq!(api.authorization.as_deref(), Some("Bearer t0k3n"), "the API request carries the token");
    assert!(download.path_and_query.starts_with("/_codeload/"), "{}", download.path_and_query);
    assert_eq!((download.status, download.on_download_host), (Some(200), true));
    assert_eq!(download.authorization, None, "the token must not reach the download host");
}

/// The fixed commit of [`changes_list_each_changed_file_with_both_contents`]: one file per kind of change, plus
/// changes that are not trail files.
fn edit_trails(github: &FakeGitHub) -> String {
    let zeus = local_file("malware/zeus.txt");
    let computrace = local_file("suspicious/computrace.txt");
    let mut appended = zeus.clone();
    appended.extend_from_slice(b"new-zeus-panel.example\n203.0.113.7\n");
    github.add_commit(
        "Trail updates",
        "2026-08-24T12:00:00Z",
        [
            Change::put("trails/static/malware/zeus.txt", appended),
            Change::put("trails/static/suspicious/computrace.txt", without_last_lines(&computrace, 2)),
            Change::put("trails/static/malware/new_family.txt", "# New family\nnew-family.example\n"),
            Change::delete("trails/static/suspicious/bad_wpad.txt"),
            Change::rename(format!("trails/static/{ICARUS}"), "trails/static/malware/icarus_ransomware.txt"),
            Change::put("README.md", "changed\n"),
            Change::put("trails/static/malware/notes.md", "not a trail file\n"),
        ],
    )
}

fn without_last_lines(content: &[u8], count: usize) -> Vec<u8> {
    let text = std::str::from_utf8(content).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > count + 1, "the file needs more lines");
    lines[..lines.len() - count].iter().map(|line| format!("{line}\n")).collect::<String>().into_bytes()
}

#[tokio::test]
async fn changes_list_each_changed_file_with_both_contents() {
    logs();
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let source = source(&github);
    let head_sha = edit_trails(&github);
    let head = source.head().await.expect("head");
    assert_eq!(head.id, head_sha);
    let repo_file = |path: &str| github.repo().file(&head_sha, &format!("trails/static/{path}")).map(|c| c.to_vec());
    let old = local_file;

    github.reset_log();
    let changes = source.changes(SNAPSHOT_COMMIT, &head).await.expect("changes");
    let change = |path: &str, old: Option<Vec<u8>>, new: Option<Vec<u8>>| FileChange { path: path.into(), old, new };
    let expected = vec![
        change(ICARUS, Some(old(ICARUS)), None),
        change("malware/icarus_ransomware.txt", None, Some(old(ICARUS))),
        change("malware/new_family.txt", None, Some(b"# New family\nnew-family.example\n".to_vec())),
        change("malware/zeus.txt", Some(old("malware/zeus.txt")), repo_file("malware/zeus.txt")),
        change("suspicious/bad_wpad.txt", Some(old("suspicious/bad_wpad.txt")), None),
        change(
            "suspicious/computrace.txt",
            Some(old("suspicious/computrace.txt")),
            repo_file("suspicious/computrace.txt"),
        ),
    ];
    let summary = |list: &[FileChange]| -> Vec<(String, bool, bool)> {
        list.iter().map(|c| (c.path.clone(), c.old.is_some(), c.new.is_some())).collect()
    };
    assert_eq!(summary(&changes), summary(&expected));
    assert!(changes == expected, "contents differ");
    let zeus_new = changes[3].new.as_deref().expect("new zeus");
    assert!(zeus_new.ends_with(b"new-zeus-panel.example\n203.0.113.7\n"));

    // Two trees, then each distinct blob once: zeus and computrace twice, the added, deleted and renamed once.
    let log = github.requests();
    let (trees, blobs): (Vec<&str>, Vec<&str>) =
        paths(&log).into_iter().partition(|p| p.contains("/git/trees/") && p.ends_with("?recursive=1"));
    assert_eq!(trees.len(), 2, "{log:#?}");
    assert!(blobs.iter().all(|p| p.contains("/git/blobs/")), "{blobs:#?}");
    assert_eq!(blobs.len(), 7, "{blobs:#?}");
    assert!(log.len() <= 2 + 2 * changes.len());
    assert!(log.iter().all(|r| r.status == Some(200)));
    assert!(
        log.iter()
            .filter(|r| r.path_and_query.contains("/git/blobs/"))
            .all(|r| r.accept.as_deref() == Some("application/vnd.github.raw"))
    );
}

#[tokio::test]
async fn changes_of_the_same_revision_are_empty_and_an_unknown_base_is_reported() {
    logs();
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let source = source(&github);
    let head = snapshot_revision();
    assert_eq!(source.changes(SNAPSHOT_COMMIT, &head).await.expect("no changes"), []);

    let unknown = "0123456789abcdef0123456789abcdef01234567";
    match source.changes(unknown, &head).await {
        Err(SourceError::UnknownRevision(base)) => assert_eq!(base, unknown),
        other => panic!("expected UnknownRevision, got {other:?}"),
    }
    assert!(matches!(source.changes("dir:0011223344556677", &head).await, Err(SourceError::UnknownRevision(_))));
    assert!(github.requests().iter().all(|r| r.path_and_query.contains("/git/trees/")));

    // Same trees, different commits: nothing changed in the trails.
    let readme_only = github.add_commit("Docs", "2026-08-25T00:00:00Z", [Change::put("README.md", "new\n")]);
    let next = Revision { id: readme_only, date: None };
    assert_eq!(source.changes(SNAPSHOT_COMMIT, &next).await.expect("no trail changes"), []);
}

#[tokio::test]
async fn a_truncated_tree_falls_back_to_the_trails_folder() {
    logs();
    // 6 entries in all (README.md, trails, trails/static, …/malware, alpha, beta), 3 under trails/static.
    let options = FakeOptions { tree_entry_limit: 4, ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    let source = source(&github);
    let base = source.head().await.expect("head").id;
    github.add_commit(
        "Beta",
        "2026-08-21T00:00:00Z",
        [Change::put("trails/static/malware/beta.txt", "beta2.example\n")],
    );
    let head = source.head().await.expect("head");
    let changes = source.changes(&base, &head).await.expect("changes");
    let expected = FileChange {
        path: "malware/beta.txt".into(),
        old: Some(b"beta.example\n10.0.0.1\n".to_vec()),
        new: Some(b"beta2.example\n".to_vec()),
    };
    assert_eq!(changes, [expected]);
}

#[tokio::test]
async fn server_errors_and_resets_are_retried() {
    logs();
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let source = source(&github);
    github.fail_next(2, Fault::Status(StatusCode::BAD_GATEWAY));
    source.head().await.expect("head after two 502s");
    assert_eq!(statuses(&github.requests()), [Some(502), Some(502), Some(200)]);

    github.reset_log();
    github.fail_next(1, Fault::ResetConnection);
    let fresh = source_with(&github, None, quick_policy());
    fresh.head().await.expect("head after a reset");
    assert_eq!(statuses(&github.requests()), [None, Some(200)]);
}

#[tokio::test]
async fn retries_give_up_with_the_request_and_the_last_error() {
    logs();
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let policy = RetryPolicy { max_attempts: 3, ..quick_policy() };
    let source = source_with(&github, None, policy.clone());
    github.fail_next(10, Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    let message = match source.head().await {
        Err(SourceError::Other(message)) => message,
        other => panic!("expected Other, got {other:?}"),
    };
    assert!(message.contains("repos/stamparm/maltrail/commits/master"), "{message}");
    assert!(message.contains("503") && message.contains("3 attempts"), "{message}");
    assert_eq!(github.request_count(), 3);

    // Nobody listening: connection refused, retried, then reported.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let nowhere = GitHubSource::with_retry_policy(&config(format!("http://{address}"), None), policy).unwrap();
    match nowhere.head().await {
        Err(SourceError::Other(message)) => assert!(message.contains("3 attempts"), "{message}"),
        other => panic!("expected Other, got {other:?}"),
    }
}

#[tokio::test]
async fn an_exhausted_rate_limit_is_waited_out() {
    logs();
    let options = FakeOptions { rate_limit_window: Duration::from_secs(1), ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    let source = source(&github);
    github.set_rate_limit_remaining(0);
    let started = Instant::now();
    source.head().await.expect("head once the limit resets");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "waited {elapsed:?}");
    assert_eq!(statuses(&github.requests()), [Some(403), Some(200)], "one refusal, then one request after the wait");
}

#[tokio::test]
async fn a_secondary_rate_limit_waits_retry_after() {
    logs();
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let source = source(&github);
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::FORBIDDEN] {
        github.reset_log();
        github.fail_next(1, Fault::SecondaryRateLimit { status, retry_after_secs: 1 });
        let started = Instant::now();
        source.head().await.expect("head after Retry-After");
        assert!(started.elapsed() >= Duration::from_secs(1), "{status}: waited only {:?}", started.elapsed());
        assert_eq!(statuses(&github.requests())[0], Some(status.as_u16()));
        assert_eq!(github.request_count(), 2);
    }
}

#[tokio::test]
async fn a_refused_token_fails_at_once() {
    logs();
    let options = FakeOptions { token: Some("right".into()), ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    for token in [Some("wrong-token"), None] {
        github.reset_log();
        let source = source_with(&github, token, quick_policy());
        let started = Instant::now();
        let message = match source.head().await {
            Err(SourceError::Unauthorized(message)) => message,
            other => panic!("expected Unauthorized, got {other:?}"),
        };
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(message.contains("MALTRAIL_API_KEY"), "{message}");
        assert!(!message.contains("wrong-token"), "{message}");
        assert_eq!(github.request_count(), 1, "no retry");
    }
    let allowed = source_with(&github, Some("right"), quick_policy());
    allowed.head().await.expect("the right token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_failing_before_any_file_is_retried() {
    logs();
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let policy = RetryPolicy { read_timeout: Duration::from_secs(2), ..quick_policy() };
    let source = source_with(&github, None, policy);

    github.fail_next_matching("/_codeload/", 1, Fault::Hang(Duration::from_secs(10)));
    let (files, error) = drain(source.files(&snapshot_revision())).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(files.len(), SNAPSHOT_FILES);
    let downloads = github.requests().iter().filter(|r| r.path_and_query.starts_with("/_codeload/")).count();
    assert_eq!(downloads, 2, "the stalled download, then the one that worked");

    github.reset_log();
    github.fail_next_matching("/_codeload/", 1, Fault::ResetConnection);
    let (files, error) = drain(source.files(&snapshot_revision())).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(files.len(), SNAPSHOT_FILES);
    assert_eq!(statuses(&github.requests()), [Some(302), None, Some(302), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_midway_ends_with_an_error() {
    logs();
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let source = source(&github);
    let mut stream = source.files(&snapshot_revision());
    for _ in 0..20 {
        stream.recv().await.expect("an item").expect("a file");
    }
    github.stop();
    let (files, error) = drain(stream).await;
    let error = error.expect("the cut must end the stream with an error");
    assert!(20 + files.len() < SNAPSHOT_FILES);
    assert!(matches!(error, SourceError::Other(_)), "{error:?}");
    eprintln!("cut after {} files: {error}", 20 + files.len());
}
