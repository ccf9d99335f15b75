//! Self-test of the fake GitHub API (tests/support/fake_github) over the real Maltrail snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;
use testkit::fake_github::sha1::{git_blob_sha, git_object_id, sha1_hex};
use testkit::fake_github::{Change, FakeGitHub, FakeOptions, FakeRepo, Fault, SNAPSHOT_COMMIT};
use testkit::snapshot::{snapshot_dir, snapshot_repo};

const REPO: &str = "stamparm/maltrail";
const TRAILS: &str = "trails/static";
const SNAPSHOT_FILES: usize = 3_113;
/// Files the fake adds outside the trails: LICENSE, README.md, core/settings.py, trails/feeds/__init__.py.
const EXTRA_FILES: usize = 4;
/// `git hash-object` of two snapshot files, computed with git when this test was written.
const EMOTET_BLOB: &str = "05647df579700343ee915a4661a7f865a568e4d9";
const ICARUS_BLOB: &str = "604008044476160f346453252608c7c79b2f7fd0";

fn local_file(relative: &str) -> Vec<u8> {
    let path = snapshot_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A tiny repository for tests that do not need the snapshot.
fn small_repo() -> FakeRepo {
    let mut repo = FakeRepo::new(REPO);
    repo.add_commit(
        "Initial trails",
        "2026-08-20T08:00:00Z",
        [
            Change::put("trails/static/malware/alpha.txt", "# Reference: https://example.com/a\nalpha.example\n"),
            Change::put("trails/static/malware/beta.txt", "beta.example\n10.0.0.1\n"),
            Change::put("README.md", "# readme\n"),
        ],
    );
    repo
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client")
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", String::from_utf8_lossy(&self.body));
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no header {name}"))
    }
}

async fn fetch(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Answer { status, headers, body }
}

async fn get(url: &str) -> Answer {
    fetch(client().get(url)).await
}

fn decode_github_base64(content: &str) -> Vec<u8> {
    let joined: String = content.split('\n').collect();
    base64::engine::general_purpose::STANDARD.decode(joined).expect("base64")
}

#[test]
fn sha1_and_git_ids_match_known_vectors() {
    assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    let two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(sha1_hex(two_blocks), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    assert_eq!(sha1_hex(&vec![b'a'; 1_000_000]), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    assert_eq!(git_blob_sha(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
    assert_eq!(git_object_id("tree", b""), "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
}

#[test]
fn snapshot_loads_with_git_blob_ids() {
    let started = Instant::now();
    let repo = FakeRepo::from_snapshot(REPO, TRAILS, snapshot_dir()).expect("load the snapshot");
    eprintln!("from_snapshot: {:.2?}", started.elapsed());

    let head = repo.head();
    assert_eq!(head.sha, SNAPSHOT_COMMIT);
    assert_eq!(head.date, "2026-08-23T00:00:00Z");
    let trails: Vec<&String> = head.files.keys().filter(|p| p.starts_with("trails/static/")).collect();
    assert_eq!(trails.len(), SNAPSHOT_FILES);
    assert_eq!(head.files.len(), SNAPSHOT_FILES + EXTRA_FILES);
    for outside in ["LICENSE", "README.md", "core/settings.py", "trails/feeds/__init__.py"] {
        assert!(head.files.contains_key(outside), "{outside} missing");
    }
    assert_eq!(head.files["trails/static/malware/emotet.txt"].blob_sha, EMOTET_BLOB);
    assert_eq!(head.files["trails/static/malware/icarus _ransomware.txt"].blob_sha, ICARUS_BLOB);
    assert_eq!(git_blob_sha(&local_file("malware/emotet.txt")), EMOTET_BLOB);

    // Every blob id against git itself, when git is installed.
    let dir = snapshot_dir();
    let relative: Vec<String> = trails.iter().map(|p| p["trails/static/".len()..].to_owned()).collect();
    match git_hash_objects(&dir, &relative) {
        Some(ids) => {
            for (path, id) in relative.iter().zip(ids) {
                assert_eq!(head.files[&format!("trails/static/{path}")].blob_sha, id, "{path}");
            }
        }
        None => eprintln!("git is not installed: blob ids checked against the recorded ids only"),
    }
}

/// `git hash-object` of each path (relative to `dir`), or None when git cannot run.
fn git_hash_objects(dir: &Path, relative: &[String]) -> Option<Vec<String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(["hash-object", "--no-filters", "--stdin-paths"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = relative.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn commits_endpoint_answers_json_sha_and_not_modified() {
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let url = format!("{}/repos/{REPO}/commits/master", github.base_url());

    let first = get(&url).await;
    let commit = first.json();
    assert_eq!(commit["sha"], SNAPSHOT_COMMIT);
    assert_eq!(commit["commit"]["committer"]["date"], "2026-08-23T00:00:00Z");
    assert_eq!(commit["commit"]["author"]["date"], "2026-08-23T00:00:00Z");
    let tree_sha = commit["commit"]["tree"]["sha"].as_str().expect("tree sha");
    assert_eq!(tree_sha, github.repo().head().tree_sha);
    assert_eq!(commit["parents"].as_array().expect("parents").len(), 0);
    assert_eq!(commit["files"].as_array().expect("files").len(), 300, "root commit: first 300 files, as added");
    let remaining: u32 = first.header("x-ratelimit-remaining").parse().expect("number");

    let etag = first.header("etag").to_owned();
    let again = fetch(client().get(&url).header(header::IF_NONE_MATCH, &etag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("x-ratelimit-remaining"), remaining.to_string(), "a 304 is free");

    let sha = fetch(client().get(&url).header(header::ACCEPT, "application/vnd.github.sha")).await;
    assert_eq!(sha.status, StatusCode::OK);
    assert_eq!(String::from_utf8(sha.body).expect("text"), SNAPSHOT_COMMIT);
    let by_sha = get(&format!("{}/repos/{REPO}/commits/{}", github.base_url(), &SNAPSHOT_COMMIT[..7])).await;
    assert_eq!(by_sha.json()["sha"], SNAPSHOT_COMMIT);

    let next = github.add_commit("Update", "2026-08-24T10:00:00Z", [Change::put("trails/static/malware/x.txt", "x\n")]);
    let moved = fetch(client().get(&url).header(header::IF_NONE_MATCH, &etag)).await;
    let moved_json = moved.json();
    assert_eq!(moved_json["sha"], next.as_str());
    assert_eq!(moved_json["parents"][0]["sha"], SNAPSHOT_COMMIT);
    assert_eq!(moved_json["files"][0]["filename"], "trails/static/malware/x.txt");

    let unknown = get(&format!("{}/repos/{REPO}/commits/no-such-branch", github.base_url())).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let other_repo = get(&format!("{}/repos/someone/else/commits/master", github.base_url())).await;
    assert_eq!(other_repo.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn trees_list_every_trail_blob_with_git_ids() {
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let base = github.base_url();
    let tree = get(&format!("{base}/repos/{REPO}/git/trees/{SNAPSHOT_COMMIT}?recursive=1")).await.json();
    assert_eq!(tree["truncated"], false);
    let entries = tree["tree"].as_array().expect("tree");
    let blobs: BTreeMap<&str, &Value> =
        entries.iter().filter(|e| e["type"] == "blob").map(|e| (e["path"].as_str().expect("path"), e)).collect();
    let trail_blobs = blobs.keys().filter(|p| p.starts_with("trails/static/")).count();
    assert_eq!(trail_blobs, SNAPSHOT_FILES);
    assert_eq!(blobs.len(), SNAPSHOT_FILES + EXTRA_FILES);
    let dirs: BTreeSet<&str> =
        entries.iter().filter(|e| e["type"] == "tree").map(|e| e["path"].as_str().expect("path")).collect();
    for dir in ["core", "trails", "trails/feeds", "trails/static", "trails/static/malware", "trails/static/malicious"] {
        assert!(dirs.contains(dir), "no tree entry for {dir}");
    }
    let emotet = blobs["trails/static/malware/emotet.txt"];
    assert_eq!(emotet["sha"], EMOTET_BLOB);
    assert_eq!(emotet["mode"], "100644");
    assert_eq!(emotet["size"], local_file("malware/emotet.txt").len());
    assert_eq!(blobs["trails/static/malware/icarus _ransomware.txt"]["sha"], ICARUS_BLOB);

    // By branch name, and one level of a sub-tree by its sha.
    let by_branch = get(&format!("{base}/repos/{REPO}/git/trees/master?recursive=1")).await.json();
    assert_eq!(by_branch["sha"], tree["sha"]);
    let static_sha = entries.iter().find(|e| e["path"] == "trails/static").expect("trails/static")["sha"].clone();
    let static_tree = get(&format!("{base}/repos/{REPO}/git/trees/{}", static_sha.as_str().expect("sha"))).await.json();
    let names: Vec<&str> =
        static_tree["tree"].as_array().expect("tree").iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["malicious", "malware", "mass_scanner.txt", "mass_scanner_cidr.txt", "suspicious"]);
}

#[tokio::test]
async fn blobs_come_as_wrapped_base64_or_raw() {
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let url = format!("{}/repos/{REPO}/git/blobs/{ICARUS_BLOB}", github.base_url());
    let expected = local_file("malware/icarus _ransomware.txt");

    let blob = get(&url).await.json();
    assert_eq!(blob["encoding"], "base64");
    assert_eq!(blob["size"], expected.len());
    let content = blob["content"].as_str().expect("content");
    assert!(content.split_terminator('\n').all(|line| line.len() <= 60), "wrapped at 60");
    assert!(content.contains('\n'));
    assert_eq!(decode_github_base64(content), expected);

    let raw = fetch(client().get(&url).header(header::ACCEPT, "application/vnd.github.raw+json")).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, expected);
    let missing = get(&format!("{}/repos/{REPO}/git/blobs/{}", github.base_url(), "0".repeat(40))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn contents_api_truncates_directories_and_skips_large_content() {
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let base = github.base_url();

    let listing = get(&format!("{base}/repos/{REPO}/contents/trails/static/malware")).await.json();
    let listing = listing.as_array().expect("array");
    assert_eq!(listing.len(), 1_000, "GitHub lists at most 1,000 entries of a directory");
    assert!(listing.iter().all(|e| e["type"] == "file"));
    let root = get(&format!("{base}/repos/{REPO}/contents/trails/static?ref={SNAPSHOT_COMMIT}")).await.json();
    let kinds: Vec<(&str, &str)> = root
        .as_array()
        .expect("array")
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("malware", "dir")) && kinds.contains(&("mass_scanner.txt", "file")), "{kinds:?}");

    let large = std::fs::read_dir(snapshot_dir().join("malware"))
        .expect("malware dir")
        .map(|e| e.expect("entry").path())
        .find(|p| std::fs::metadata(p).expect("metadata").len() > 1024 * 1024)
        .expect("a trail file over 1 MiB");
    let name = large.file_name().unwrap().to_str().unwrap().to_owned();
    let url = format!("{base}/repos/{REPO}/contents/trails/static/malware/{name}");
    let object = get(&url).await.json();
    assert_eq!(object["encoding"], "none");
    assert_eq!(object["content"], "");
    assert_eq!(object["size"], std::fs::metadata(&large).unwrap().len());
    let raw = fetch(client().get(&url).header(header::ACCEPT, "application/vnd.github.raw")).await;
    assert_eq!(raw.body, std::fs::read(&large).unwrap());

    let small =
        get(&format!("{base}/repos/{REPO}/contents/trails/static/malware/icarus%20_ransomware.txt")).await.json();
    assert_eq!(small["encoding"], "base64");
    assert_eq!(small["sha"], ICARUS_BLOB);
    assert_eq!(decode_github_base64(small["content"].as_str().unwrap()), local_file("malware/icarus _ransomware.txt"));
    let missing = get(&format!("{base}/repos/{REPO}/contents/trails/static/nope.txt")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn compare_lists_added_removed_modified_and_renamed_files() {
    let github = FakeGitHub::start(snapshot_repo(), FakeOptions::default()).await;
    let base = github.base_url();
    let mut scanner = local_file("mass_scanner.txt");
    scanner.extend_from_slice(b"192.0.2.7 # scanner.example\n");
    let added = b"# Reference: https://example.com/new\nnew-family.example\n".to_vec();
    let head = github.add_commit(
        "Trail update",
        "2026-08-24T10:00:00Z",
        [
            Change::put("trails/static/malware/new_family.txt", added.clone()),
            Change::delete("trails/static/malware/emotet.txt"),
            Change::rename(
                "trails/static/malware/icarus _ransomware.txt",
                "trails/static/malware/icarus_ransomware.txt",
            ),
            Change::put("trails/static/mass_scanner.txt", scanner.clone()),
        ],
    );

    let compare = get(&format!("{base}/repos/{REPO}/compare/{SNAPSHOT_COMMIT}...master")).await.json();
    assert_eq!(compare["status"], "ahead");
    assert_eq!(compare["ahead_by"], 1);
    assert_eq!(compare["behind_by"], 0);
    assert_eq!(compare["total_commits"], 1);
    assert_eq!(compare["commits"][0]["sha"], head.as_str());
    assert_eq!(compare["commits"][0]["commit"]["committer"]["date"], "2026-08-24T10:00:00Z");
    let files: BTreeMap<&str, &Value> =
        compare["files"].as_array().expect("files").iter().map(|f| (f["filename"].as_str().unwrap(), f)).collect();
    assert_eq!(files.len(), 4, "{files:#?}");
    let new_family = files["trails/static/malware/new_family.txt"];
    assert_eq!(new_family["status"], "added");
    assert_eq!(new_family["sha"], git_blob_sha(&added));
    assert_eq!((new_family["additions"].as_u64(), new_family["deletions"].as_u64()), (Some(2), Some(0)));
    let emotet = files["trails/static/malware/emotet.txt"];
    assert_eq!(emotet["status"], "removed");
    assert!(emotet["sha"].is_null());
    assert_eq!(emotet["additions"], 0);
    assert!(emotet["deletions"].as_u64().unwrap() > 100);
    let renamed = files["trails/static/malware/icarus_ransomware.txt"];
    assert_eq!(renamed["status"], "renamed");
    assert_eq!(renamed["previous_filename"], "trails/static/malware/icarus _ransomware.txt");
    assert_eq!(renamed["sha"], ICARUS_BLOB);
    assert_eq!(renamed["changes"], 0);
    let modified = files["trails/static/mass_scanner.txt"];
    assert_eq!(modified["status"], "modified");
    assert_eq!(modified["sha"], git_blob_sha(&scanner));
    assert_eq!((modified["additions"].as_u64(), modified["deletions"].as_u64()), (Some(1), Some(0)));

    // The single-commit endpoint lists the same files.
    let commit = get(&format!("{base}/repos/{REPO}/commits/{head}")).await.json();
    assert_eq!(commit["files"].as_array().unwrap().len(), 4);

    let behind = get(&format!("{base}/repos/{REPO}/compare/{head}...{SNAPSHOT_COMMIT}")).await.json();
    assert_eq!((behind["status"].as_str(), behind["behind_by"].as_u64()), (Some("behind"), Some(1)));
    assert!(behind["files"].as_array().unwrap().is_empty());
    let identical = get(&format!("{base}/repos/{REPO}/compare/{head}...master")).await.json();
    assert_eq!(identical["status"], "identical");

    // A rewritten history (force push): the old head and the new one have diverged.
    let side =
        github.repo().add_commit_on(SNAPSHOT_COMMIT, "Rewrite", "2026-08-25T00:00:00Z", [Change::delete("README.md")]);
    github.set_ref("master", &side);
    let diverged = get(&format!("{base}/repos/{REPO}/compare/{head}...master")).await.json();
    assert_eq!(diverged["status"], "diverged");
    assert_eq!((diverged["ahead_by"].as_u64(), diverged["behind_by"].as_u64()), (Some(1), Some(1)));
    assert_eq!(diverged["merge_base_commit"]["sha"], SNAPSHOT_COMMIT);
    assert_eq!(diverged["files"][0]["filename"], "README.md");

    let unknown = get(&format!("{base}/repos/{REPO}/compare/{}...master", "1".repeat(40))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn compare_caps_its_file_list_and_detects_edited_renames() {
    let options = FakeOptions { compare_file_limit: 2, api_path_prefix: "/api/v3".into(), ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    let base = github.base_url();
    assert!(base.ends_with("/api/v3"), "{base}");
    let first = github.head_sha();
    github.add_commit(
        "Many files",
        "2026-08-21T08:00:00Z",
        (0..5).map(|i| Change::put(format!("trails/static/malware/f{i}.txt"), format!("f{i}.example\n"))),
    );
    let capped = get(&format!("{base}/repos/{REPO}/compare/{first}...master")).await.json();
    assert_eq!(capped["files"].as_array().unwrap().len(), 2, "the limit applies");

    let before = github.head_sha();
    let alpha = github.repo().file("master", "trails/static/malware/alpha.txt").expect("alpha");
    let mut edited = alpha.to_vec();
    edited.extend_from_slice(b"alpha2.example\n");
    github.add_commit(
        "Rename and edit",
        "2026-08-22T08:00:00Z",
        [Change::delete("trails/static/malware/alpha.txt"), Change::put("trails/static/malicious/alpha.txt", edited)],
    );
    let compare = get(&format!("{base}/repos/{REPO}/compare/{before}...master")).await.json();
    let file = &compare["files"][0];
    assert_eq!(file["status"], "renamed", "{compare:#}");
    assert_eq!(file["previous_filename"], "trails/static/malware/alpha.txt");
    assert_eq!((file["additions"].as_u64(), file["deletions"].as_u64()), (Some(1), Some(0)));

    let paged = fetch(client().get(format!("{base}/repos/{REPO}/compare/{first}...master?per_page=1"))).await;
    assert!(paged.header("link").contains("rel=\"next\""));
    assert_eq!(paged.json()["commits"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarball_redirects_to_a_download_host_without_credentials() {
    let options = FakeOptions { token: Some("s3cret".into()), separate_download_host: true, ..FakeOptions::default() };
    let github = FakeGitHub::start(snapshot_repo(), options).await;
    assert_ne!(github.base_url(), github.download_base_url());
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
    let authed = reqwest::Client::builder().default_headers(headers).build().expect("client");

    let started = Instant::now();
    let download = fetch(authed.get(format!("{}/repos/{REPO}/tarball/master", github.base_url()))).await;
    let download_time = started.elapsed();
    assert_eq!(download.status, StatusCode::OK);
    eprintln!("tarball download (generation streamed): {download_time:.2?}, {} bytes", download.body.len());

    let log = github.requests();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log[0].path_and_query.ends_with("/tarball/master"));
    assert_eq!(log[0].status, Some(302));
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert!(!log[0].on_download_host);
    assert!(log[1].path_and_query.starts_with(&format!("/_codeload/{REPO}/legacy.tar.gz/{SNAPSHOT_COMMIT}")));
    assert!(log[1].on_download_host);
    assert_eq!(log[1].authorization, None, "the token must not go to another host");

    let started = Instant::now();
    let again = fetch(authed.get(format!("{}/repos/{REPO}/tarball/{SNAPSHOT_COMMIT}", github.base_url()))).await;
    assert_eq!(again.body, download.body, "the same bytes, from the cache");
    eprintln!("tarball download again (cached): {:.2?}", started.elapsed());

    let started = Instant::now();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&download.body[..]));
    let mut files = BTreeMap::new();
    let mut emotet = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let (top, inner) = path.split_once('/').expect("top folder");
        assert_eq!(top, "stamparm-maltrail-8adace1");
        if inner == "trails/static/malware/emotet.txt" {
            entry.read_to_end(&mut emotet).expect("read");
        }
        files.insert(inner.to_owned(), entry.header().size().expect("size"));
    }
    eprintln!("tarball unpack (client side): {:.2?}", started.elapsed());
    let repo = github.repo();
    let expected: BTreeMap<String, u64> = repo.head().files.iter().map(|(p, f)| (p.clone(), f.size as u64)).collect();
    assert_eq!(files, expected, "the archive holds exactly the tree");
    assert_eq!(emotet, local_file("malware/emotet.txt"));
}

#[tokio::test]
async fn tarball_on_the_same_host_redirects_to_the_same_port() {
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/repos/{REPO}/tarball", github.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/_codeload/{REPO}/legacy.tar.gz/{}", github.base_url(), github.head_sha()));
    let archive = get(&location).await;
    assert_eq!(archive.status, StatusCode::OK);
    assert_eq!(archive.body[..2], [0x1f, 0x8b], "gzip");
}

#[tokio::test]
async fn rate_limit_runs_out_then_refills_at_reset() {
    let options = FakeOptions { rate_limit: 3, rate_limit_window: Duration::from_secs(2), ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    let url = format!("{}/repos/{REPO}/commits/master", github.base_url());
    let mut etag = String::new();
    for expected_remaining in ["2", "1", "0"] {
        let answer = get(&url).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-ratelimit-limit"), "3");
        assert_eq!(answer.header("x-ratelimit-remaining"), expected_remaining);
        etag = answer.header("etag").to_owned();
    }
    let refused = get(&url).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    let message = serde_json::from_slice::<Value>(&refused.body).unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("API rate limit exceeded"), "{message}");
    let conditional = fetch(client().get(&url).header(header::IF_NONE_MATCH, &etag)).await;
    assert_eq!(conditional.status, StatusCode::NOT_MODIFIED, "304s are free, even at 0");

    let reset: u64 = refused.header("x-ratelimit-reset").parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let wait = Duration::from_secs(reset).saturating_sub(now);
    assert!(wait <= Duration::from_secs(3), "reset {reset} is {wait:?} away");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let after = get(&url).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.header("x-ratelimit-remaining"), "2");

    github.set_rate_limit_remaining(0);
    assert_eq!(get(&url).await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&format!("{}/rate_limit", github.base_url())).await.json()["rate"]["remaining"], 0);
}

#[tokio::test]
async fn injected_faults_fail_then_the_fake_recovers() {
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let base = github.base_url();
    let url = format!("{base}/repos/{REPO}/commits/master");

    github.fail_next(1, Fault::Status(StatusCode::BAD_GATEWAY));
    let failed = get(&url).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(failed.header("content-type").starts_with("text/html"));
    assert_eq!(get(&url).await.status, StatusCode::OK);

    github.fail_next_matching("/git/trees/", 1, Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(get(&url).await.status, StatusCode::OK, "not the scoped path");
    let tree_url = format!("{base}/repos/{REPO}/git/trees/master?recursive=1");
    assert_eq!(get(&tree_url).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&tree_url).await.status, StatusCode::OK);

    github.fail_next(1, Fault::ResetConnection);
    let error = client().get(&url).send().await.expect_err("connection reset");
    assert!(!error.is_timeout(), "{error:?}");
    assert_eq!(get(&url).await.status, StatusCode::OK);

    github.fail_next(1, Fault::Hang(Duration::from_secs(3)));
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let error = quick.get(&url).send().await.expect_err("timeout");
    assert!(error.is_timeout(), "{error:?}");

    github.fail_next(1, Fault::SecondaryRateLimit { status: StatusCode::TOO_MANY_REQUESTS, retry_after_secs: 1 });
    let limited = get(&url).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), "1");
    assert_eq!(get(&url).await.status, StatusCode::OK);

    let statuses: Vec<Option<u16>> = github.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Some(502), Some(200), Some(200), Some(503), Some(200), None, Some(200), None, Some(429), Some(200)]
    );
    github.reset_log();
    assert_eq!(github.request_count(), 0);
}

#[tokio::test]
async fn a_token_is_enforced_when_configured() {
    let options = FakeOptions { token: Some("t0k3n".into()), ..FakeOptions::default() };
    let github = FakeGitHub::start(small_repo(), options).await;
    let url = format!("{}/repos/{REPO}/commits/master", github.base_url());

    let anonymous = get(&url).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_slice::<Value>(&anonymous.body).unwrap()["message"], "Bad credentials");
    let wrong = fetch(client().get(&url).header(header::AUTHORIZATION, "Bearer nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    for scheme in ["Bearer", "token"] {
        let ok = fetch(client().get(&url).header(header::AUTHORIZATION, format!("{scheme} t0k3n"))).await;
        assert_eq!(ok.status, StatusCode::OK, "{scheme}");
    }
    let seen: Vec<Option<String>> = github.requests().into_iter().map(|r| r.authorization).collect();
    assert_eq!(seen, [None, Some("Bearer nope".into()), Some("Bearer t0k3n".into()), Some("token t0k3n".into())]);
}

#[tokio::test]
async fn a_stopped_fake_answers_nothing_even_on_open_connections() {
    let github = FakeGitHub::start(small_repo(), FakeOptions::default()).await;
    let url = format!("{}/repos/{REPO}/commits/master", github.base_url());
    let keep_alive = client();
    assert_eq!(fetch(keep_alive.get(&url)).await.status, StatusCode::OK);
    github.stop();
    keep_alive.get(&url).send().await.expect_err("the pooled connection is reset");
    client().get(&url).send().await.expect_err("new connections are refused");
}
