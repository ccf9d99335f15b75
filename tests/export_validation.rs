//! The export of a sample of real trail files, chosen across every category and every form, passes the OASIS
//! STIX 2.1 validator, and every distinct pattern shape passes the STIX pattern grammar
//! (tools/validate/validate_bundles.py, run with the validator's virtualenv that tools/test.sh installs).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use maltrail_connector::convert::{ConvertOptions, Converter};
use maltrail_connector::export::{ExportOptions, export};
use maltrail_connector::source::Source;
use maltrail_connector::source::directory::DirectorySource;
use maltrail_connector::source::directory::{list_trail_files, read_trail_file};
use maltrail_connector::trails::{Category, Form, parse_file};
use opencti_connector::send::{ConnectorIdentity, DirectoryOutput};
use proto_stix::{Timestamp, Tlp};
use support::snapshot::snapshot_dir;

/// Files per category in the sample (all of them when a category has fewer).
const PER_CATEGORY: usize = 100;
/// Sampled files hold at most this many trails, except those picked for a rare form.
const SMALL_FILE: usize = 300;

/// Trail forms the snapshot does not hold (domain:port, IPv6 CIDR) and a few hard cases, as one more file.
const HAND_PICKED: &str = "# Reference: https://example.org/report?id={1,2} (# note)\n\
kuitrafes.ru:8080\n2001:db8::/32\n[fe80::1]:8443\nпример.рф\nexample.com/путь?q='x'\n/gate.php?id=\n\
seek[0-9]+\\.(a|b)\\.com\n";

fn python() -> PathBuf {
    let path = std::env::var_os("STIX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/stix-venv/bin/python")));
    assert!(
        path.is_file(),
        "the STIX validator's Python is not at {} — run the suite with `bash tools/test.sh` (it installs \
         tools/validate/requirements.txt into target/stix-venv) or set STIX_PYTHON",
        path.display()
    );
    path
}

/// Picks the sample: for every form the smallest file holding it, then small files spread over each category.
fn choose_sample(root: &Path) -> Vec<String> {
    let mut described: Vec<(String, Category, usize, BTreeSet<Form>)> = Vec::new();
    for path in list_trail_files(root).expect("snapshot listing") {
        let content = read_trail_file(root, &path).expect("readable");
        let file = parse_file(&path, &content).expect("trail file");
        let forms = file.entries.iter().map(|e| e.form).collect();
        described.push((path, file.category, file.entries.len(), forms));
    }
    let mut chosen = BTreeSet::new();
    for form in Form::ALL {
        if let Some((path, ..)) =
            described.iter().filter(|(_, _, _, forms)| forms.contains(&form)).min_by_key(|(_, _, n, _)| *n)
        {
            chosen.insert(path.clone());
        }
    }
    for category in Category::ALL {
        let small: Vec<_> = described
            .iter()
            .filter(|(_, c, n, _)| *c == category && (*n <= SMALL_FILE || category == Category::MassScanner))
            .collect();
        let stride = (small.len() / PER_CATEGORY).max(1);
        chosen.extend(small.iter().step_by(stride).take(PER_CATEGORY).map(|(path, ..)| path.clone()));
    }
    chosen.into_iter().collect()
}

#[test]
fn exported_sample_passes_the_oasis_validator() {
    let python = python();
    let root = snapshot_dir();
    let sample = choose_sample(&root);
    assert!(sample.len() >= 200, "sample of {} files", sample.len());

    let work = tempfile::tempdir().expect("temp dir");
    let trails = work.path().join("trails");
    for path in &sample {
        let target = trails.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, read_trail_file(&root, path).expect("readable")).expect("copy");
    }
    std::fs::write(trails.join("malware/hand_picked.txt"), HAND_PICKED).expect("hand-picked file");

    let options =
        ConvertOptions { categories: Category::ALL.to_vec(), tlp: Tlp::AmberStrict, ..ConvertOptions::default() };
    let converter = std::sync::Arc::new(Converter::new(options));
    let identity = ConnectorIdentity {
        id: uuid::Uuid::new_v4().to_string(),
        name: "Maltrail".into(),
        connector_type: "EXTERNAL_IMPORT".into(),
        scope: "maltrail".into(),
        auto: false,
        validate_before_import: false,
    };
    let out = work.path().join("out");
    let output = DirectoryOutput::new(&out, 0, &identity, None).expect("output dir");
    let export_options = ExportOptions { jobs: 2, progress: false, now: Timestamp::now() };
    let source = Source::Directory(DirectorySource::new(trails));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let report =
        runtime.block_on(export(&source, converter, std::sync::Arc::new(output), &export_options)).expect("export");
    let stats = report.stats;
    assert_eq!(stats.files as usize, sample.len() + 1);
    let forms: BTreeSet<_> = stats.trails.keys().map(|(_, form)| *form).collect();
    assert_eq!(forms.len(), Form::ALL.len(), "every form exported: {forms:?}");
    let categories: BTreeSet<_> = stats.trails.keys().map(|(category, _)| *category).collect();
    assert_eq!(categories.len(), Category::ALL.len());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/validate/validate_bundles.py");
    let run = Command::new(&python).arg(script).arg(&out).args(["--first", "8"]).output().expect("run the validator");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("validator output is not JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&run.stderr))
    });
    let errors = summary["errors"].as_array().expect("errors list");
    assert!(errors.is_empty() && run.status.success(), "{} validation errors: {:#?}", errors.len(), errors);
    assert_eq!(summary["files"].as_u64(), Some(sample.len() as u64 + 1));
    assert!(summary["objects_validated"].as_u64().unwrap_or(0) > 4_000, "{summary}");

    // One pattern shape per observation kind the modelling produces.
    let shapes: BTreeMap<String, ()> = summary["shapes"]
        .as_array()
        .expect("shapes")
        .iter()
        .map(|s| (s.as_str().unwrap_or("").to_owned(), ()))
        .collect();
    for expected in [
        "[ipv4-addr:value = '*']",
        "[ipv6-addr:value = '*']",
        "[domain-name:value = '*']",
        "[url:value = '*']",
        "[url:value MATCHES '*']",
        "[domain-name:value MATCHES '*']",
        "[network-traffic:dst_ref.type = '*' AND network-traffic:dst_ref.value = '*' AND network-traffic:dst_port = N]",
    ] {
        assert!(shapes.contains_key(expected), "shape {expected} not validated: {shapes:?}");
    }
}
