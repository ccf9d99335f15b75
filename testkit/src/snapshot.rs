//! Where the shared Maltrail snapshot is; a test that needs it fails, saying where it looked, when it is absent.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::fake_github::FakeRepo;

/// `../shared/data/maltrail/trails/static` from the workspace root.
pub fn snapshot_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/maltrail/trails/static"));
    assert!(
        dir.is_dir(),
        "the Maltrail snapshot is missing: looked for {} (the shared data folder beside the project)",
        dir.display()
    );
    dir
}

/// The snapshot as the fake GitHub's `stamparm/maltrail` repository (`trails/static`), loaded once per test binary
/// and cloned cheaply (contents are shared) per test.
pub fn snapshot_repo() -> FakeRepo {
    static SNAPSHOT: OnceLock<FakeRepo> = OnceLock::new();
    SNAPSHOT
        .get_or_init(|| {
            FakeRepo::from_snapshot("stamparm/maltrail", "trails/static", snapshot_dir()).expect("load the snapshot")
        })
        .clone()
}
