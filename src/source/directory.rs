//! Trail files from a local directory: a Maltrail checkout's `trails/static`, or the shared snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The `.txt` files under `root`, as sorted paths relative to it with `/` separators (`malware/emotet.txt`).
/// Symbolic links are not followed, so a link cannot pull files from outside the trails folder.
pub fn list_trail_files(root: &Path) -> io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "txt") {
                let Ok(relative) = path.strip_prefix(root) else {
                    continue;
                };
                let parts: Vec<String> =
                    relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                files.push(parts.join("/"));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one trail file given its relative path.
pub fn read_trail_file(root: &Path, relative: &str) -> io::Result<Vec<u8>> {
    let path = relative.split('/').fold(root.to_path_buf(), |path, part| path.join(part));
    fs::read(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_txt_files_relative_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("malware")).unwrap();
        fs::write(dir.path().join("malware/icarus _ransomware.txt"), "x.com\n").unwrap();
        fs::write(dir.path().join("malware/a.txt"), "").unwrap();
        fs::write(dir.path().join("malware/notes.md"), "").unwrap();
        fs::write(dir.path().join("mass_scanner.txt"), "").unwrap();
        let files = list_trail_files(dir.path()).unwrap();
        assert_eq!(files, ["malware/a.txt", "malware/icarus _ransomware.txt", "mass_scanner.txt"]);
        assert_eq!(read_trail_file(dir.path(), &files[1]).unwrap(), b"x.com\n");
        assert!(list_trail_files(&dir.path().join("missing")).unwrap_err().to_string().contains("missing"));
    }
}
