//! Where the shared Maltrail snapshot is; a test that needs it fails, saying where it looked, when it is absent.

use std::path::PathBuf;

/// `../shared/data/maltrail/trails/static` from the project root.
pub fn snapshot_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/maltrail/trails/static"));
    assert!(
        dir.is_dir(),
        "the Maltrail snapshot is missing: looked for {} (the shared data folder beside the project)",
        dir.display()
    );
    dir
}
