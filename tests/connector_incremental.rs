//! A second run against a new head commit: only the changes are sent. Trails added to a file become indicators
//! (dated by the commit), a trail removed everywhere is revoked, a trail moved to another file or still listed in an
//! untouched file stays active (its link to the family it left is revoked), a deleted file's trails are revoked unless
//! listed elsewhere, a new file is imported, and the requests to GitHub grow with the changed files, not with the
//! 3,113 files.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use maltrail_connector::connector::serve;
use maltrail_connector::convert::{Trail, family_names, file_trails};
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::{Category, TrailFile, parse_file};
use opencti_connector::{Shutdown, Timings};
use proto_stix::StixId;
use proto_stix::id::{malware_id, relationship_id};
use serde_json::Value;
use support::fake_github::{self, Change, FakeGitHub};
use support::fake_opencti::{FakeOpenCti, FakeOptions};
use support::rabbit;
use support::snapshot::{snapshot_dir, snapshot_repo};

const NEW_DATE: &str = "2026-08-30T12:00:00Z";

struct Snapshot {
    files: Vec<TrailFile>,
    /// indicator id → indices of the files listing it
    listed_in: HashMap<StixId, Vec<usize>>,
}

fn load_snapshot() -> Snapshot {
    let root = snapshot_dir();
    let mut files = Vec::new();
    for path in list_trail_files(&root).expect("listing") {
        let content = read_trail_file(&root, &path).expect("readable");
        files.push(parse_file(&path, &content).expect("trail file"));
    }
    let mut listed_in: HashMap<StixId, Vec<usize>> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        for trail in file_trails(file) {
            let places = listed_in.entry(trail.id).or_default();
            if places.last() != Some(&index) {
                places.push(index);
            }
        }
    }
    Snapshot { files, listed_in }
}

impl Snapshot {
    fn family(&self, index: usize) -> Option<StixId> {
        let file = &self.files[index];
        (file.category == Category::Malware).then(|| malware_id(&family_names(file).0))
    }

    fn unique<'a>(&self, trails: &'a [Trail<'a>]) -> Option<&'a Trail<'a>> {
        trails.iter().find(|t| self.listed_in[&t.id].len() == 1)
    }
}

/// The file's content without the given lines (1-based).
fn without_lines(content: &[u8], lines: &[u32]) -> Vec<u8> {
    let text = String::from_utf8_lossy(content);
    let kept: Vec<&str> =
        text.split('\n').enumerate().filter(|(i, _)| !lines.contains(&(*i as u32 + 1))).map(|(_, l)| l).collect();
    kept.join("\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_run_sends_only_the_changes() {
    let _broker = rabbit::broker_shared().await;
    let snapshot = load_snapshot();
    let root = snapshot_dir();

    // A: a malware family file with a trail only it lists (X, moved to B) and one another file lists too (Y).
    let (a, x_text, y_text, y_elsewhere) = snapshot
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.category == Category::Malware && !f.aliases.is_empty())
        .find_map(|(index, file)| {
            let trails = file_trails(file);
            let x = snapshot.unique(&trails)?;
            let y = trails.iter().find(|t| {
                let places = &snapshot.listed_in[&t.id];
                places.len() == 2 && places.iter().all(|p| snapshot.files[*p].category != Category::MassScanner)
            })?;
            let elsewhere = *snapshot.listed_in[&y.id].iter().find(|p| **p != index)?;
            Some((index, x.entry.text.clone(), y.entry.text.clone(), elsewhere))
        })
        .expect("a malware file with a unique and a shared trail");
    let file_a = &snapshot.files[a];
    let trails_a = file_trails(file_a);
    let x = trails_a.iter().find(|t| t.entry.text == x_text).expect("X");
    let y = trails_a.iter().find(|t| t.entry.text == y_text).expect("Y");

    // B: another family; D: a malicious file with a unique trail Z; E: a small malware file, deleted.
    let taken = |i: usize| i == a || i == y_elsewhere;
    let b = (0..snapshot.files.len())
        .find(|&i| !taken(i) && snapshot.family(i).is_some_and(|f| Some(f) != snapshot.family(a)))
        .expect("B");
    let (d, z_text) = (0..snapshot.files.len())
        .filter(|&i| !taken(i) && i != b && snapshot.files[i].category == Category::Malicious)
        .find_map(|i| {
            let trails = file_trails(&snapshot.files[i]);
            snapshot.unique(&trails).map(|t| (i, t.entry.text.clone()))
        })
        .expect("D");
    let e = (0..snapshot.files.len())
        .find(|&i| {
            !taken(i)
                && i != b
                && i != d
                && snapshot.files[i].category == Category::Malware
                && (3..=15).contains(&snapshot.files[i].entries.len())
                && file_trails(&snapshot.files[i]).iter().any(|t| snapshot.listed_in[&t.id].len() > 1)
                && file_trails(&snapshot.files[i]).iter().any(|t| snapshot.listed_in[&t.id].len() == 1)
        })
        .expect("E");
    let trails_d = file_trails(&snapshot.files[d]);
    let z = trails_d.iter().find(|t| t.entry.text == z_text).expect("Z");
    let trails_e = file_trails(&snapshot.files[e]);

    // The commit.
    let path = |i: usize| format!("trails/static/{}", snapshot.files[i].path);
    let content = |i: usize| read_trail_file(&root, &snapshot.files[i].path).expect("readable");
    let mut b_content = content(b);
    b_content.extend_from_slice(format!("\n{x_text}\nadded-one.example.net\n203.0.113.77:8443\n").as_bytes());
    let new_file =
        "# Aliases: Zz Test Family\n# Reference: https://example.org/zz\nzz-new-family.example.com\n198.51.100.9\n";
    let changes = vec![
        Change::put(path(a), without_lines(&content(a), &[x.entry.line, y.entry.line])),
        Change::put(path(b), b_content),
        Change::put(path(d), without_lines(&content(d), &[z.entry.line])),
        Change::delete(path(e)),
        Change::put("trails/static/malware/zz_test_family.txt", new_file),
        Change::put("README.md", "changed\n"),
    ];

    let github = FakeGitHub::start(snapshot_repo(), fake_github::FakeOptions::default()).await;
    let head = github.add_commit("test changes", NEW_DATE, changes);
    // Refreshed a moment ago: this run refreshes nothing (the refresh has tests of its own).
    let state = serde_json::json!({
        "last_commit": fake_github::SNAPSHOT_COMMIT,
        "last_run": "2026-08-23T00:00:00Z",
        "source": "github:stamparm/maltrail@master",
        "refreshed_through": proto_stix::Timestamp::now().to_string(),
    });
    let opencti =
        FakeOpenCti::start(FakeOptions { initial_state: Some(state.to_string()), ..FakeOptions::default() }).await;
    let connector_id = uuid::Uuid::new_v4().to_string();
    let config = support::connector::config(
        &opencti,
        &connector_id,
        &[("CONNECTOR_RUN_AND_TERMINATE", "true".into()), ("MALTRAIL_API_BASE_URL", github.base_url())],
    );
    github.reset_log();
    tokio::time::timeout(Duration::from_secs(300), serve(config, Shutdown::new(), Timings::default()))
        .await
        .expect("run within 5 minutes")
        .expect("run succeeds");

    // What reached the queue.
    let messages = rabbit::drain(&format!("push_{connector_id}"), Duration::from_millis(500)).await;
    let mut active = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    let mut revoked_relations = BTreeSet::new();
    let mut indicator_valid_from = BTreeSet::new();
    let mut revocation_patches = BTreeSet::new();
    for message in &messages {
        for object in message.envelope().objects() {
            let id = object["id"].as_str().unwrap_or_default().to_owned();
            if object["opencti_operation"] == "patch" {
                assert_eq!(
                    object["opencti_field_patch"],
                    serde_json::json!([{"key": "revoked", "value": [true], "operation": "replace"}]),
                    "{object}"
                );
                assert!(message.envelope().objects().len() == 1, "one patch per message in client mode");
                revocation_patches.insert(id);
                continue;
            }
            let is_revoked = object["revoked"] == Value::Bool(true);
            match (object["type"].as_str(), is_revoked) {
                (Some("indicator"), false) => {
                    indicator_valid_from.insert(object["valid_from"].as_str().unwrap_or_default().to_owned());
                    active.insert(id);
                }
                (Some("indicator"), true) => {
                    revoked.insert(id);
                }
                (Some("relationship"), true) => {
                    revoked_relations.insert(id);
                }
                _ => {}
            }
        }
    }

    let id = |text: &str, file: &str| {
        let parsed = parse_file(file, format!("{text}\n").as_bytes()).expect("trail");
        file_trails(&parsed)[0].id.to_string()
    };
    let expected_active: BTreeSet<String> = [
        x.id.to_string(),
        id("added-one.example.net", "malware/x.txt"),
        id("203.0.113.77:8443", "malware/x.txt"),
        id("zz-new-family.example.com", "malware/x.txt"),
        id("198.51.100.9", "malware/x.txt"),
    ]
    .into_iter()
    .collect();
    assert_eq!(active, expected_active, "active indicators: the added and moved trails only");
    assert_eq!(indicator_valid_from, BTreeSet::from(["2026-08-30T12:00:00.000Z".to_owned()]), "dated by the commit");

    let mut expected_revoked: BTreeSet<String> = BTreeSet::from([z.id.to_string()]);
    expected_revoked.extend(trails_e.iter().filter(|t| snapshot.listed_in[&t.id].len() == 1).map(|t| t.id.to_string()));
    assert_eq!(revoked, expected_revoked, "revoked: trails that left Maltrail, and only those");
    assert!(active.is_disjoint(&revoked), "never active and revoked in one run");
    assert!(!revoked.contains(&y.id.to_string()), "Y is still listed in {}", snapshot.files[y_elsewhere].path);

    // Links to a family a trail left but that no longer lists it are revoked.
    let family_a = snapshot.family(a).expect("A is a family");
    let mut expected_relations = BTreeSet::from([relationship_id("indicates", &x.id, &family_a).to_string()]);
    if snapshot.family(y_elsewhere) != Some(family_a) {
        expected_relations.insert(relationship_id("indicates", &y.id, &family_a).to_string());
    }
    let family_e = snapshot.family(e).expect("E is a family");
    for trail in trails_e.iter().filter(|t| snapshot.listed_in[&t.id].len() > 1) {
        let still_in_family =
            snapshot.listed_in[&trail.id].iter().any(|&i| i != e && snapshot.family(i) == Some(family_e));
        if !still_in_family {
            expected_relations.insert(relationship_id("indicates", &trail.id, &family_e).to_string());
        }
    }
    assert_eq!(revoked_relations, expected_relations, "revoked `indicates`");
    // Each revocation also goes as a patch, which the platform applies whatever the indicator's decay (§8).
    let revoked_anything: BTreeSet<String> = revoked.union(&revoked_relations).cloned().collect();
    assert_eq!(revocation_patches, revoked_anything, "a revocation patch for each revoked object");

    // Requests grow with the changed files: head, two trees, blobs, and one archive to check candidates.
    let requests = github.requests();
    assert!(requests.len() <= 4 + 2 * 6 + 2, "{} requests: {:#?}", requests.len(), requests);
    assert!(requests.iter().filter(|r| r.path_and_query.contains("/git/blobs/")).count() <= 2 * 5);

    let works = opencti.works();
    assert_eq!(works.len(), 1);
    let work = &works[0];
    assert!(work.processed && !work.in_error, "{work:?}");
    let name = work.friendly_name.clone().unwrap_or_default();
    assert!(name.starts_with(&format!("Maltrail update 8adace1..{}", &head[..7])), "{name}");
    assert_eq!(work.expectations - work.errors.len() as i64, messages.len() as i64, "expectations equal messages");

    let state: Value = serde_json::from_str(&opencti.state().expect("state")).expect("JSON");
    assert_eq!(state["last_commit"], head);
    // The trails it added wait for the next run's un-revocation (any of them may be one revoked before).
    let reinstate: BTreeSet<String> =
        state["reinstate"].as_array().expect("reinstate").iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    let added: BTreeSet<String> = expected_active.iter().filter(|id| **id != x.id.to_string()).cloned().collect();
    assert!(reinstate.is_superset(&added), "{reinstate:?} holds {added:?}");
    opencti.stop().await;
    github.stop();
}
