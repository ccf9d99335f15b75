//! Bundles written to a directory as pycti writes them (`CONNECTOR_SEND_TO_DIRECTORY`): one `DIRECTORY_BUNDLE` JSON
//! file per send, written as `.json.tmp` then renamed, and files older than the retention removed.
//!
//! A file is streamed object by object, so a bundle of any size is written in constant memory; a reader never
//! sees a partial file because only the rename makes it a `.json`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proto_stix::{ObjectType, StixId, StixObject, Timestamp};
use serde::Serialize;

/// Who writes the files: the `connector` block of a `DIRECTORY_BUNDLE`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorIdentity {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub connector_type: String,
    /// `CONNECTOR_SCOPE` as written: pycti puts the raw string here (the list only goes to the registration).
    pub scope: String,
    pub auto: bool,
    pub validate_before_import: bool,
}

/// A directory receiving bundle files.
#[derive(Debug, Clone)]
pub struct DirectoryOutput {
    path: PathBuf,
    retention: Option<Duration>,
    /// The envelope fields before `bundle`, serialized once.
    envelope_head: Vec<u8>,
    file_prefix: String,
}

#[derive(Serialize)]
struct EnvelopeHead<'a> {
    bundle_type: &'static str,
    applicant_id: Option<&'a str>,
    connector: &'a ConnectorIdentity,
    entities_types: [&'static str; 0],
    update: bool,
}

impl DirectoryOutput {
    /// Files go to `path` (created if missing); `retention_days` of 0 keeps every file.
    pub fn new(
        path: impl Into<PathBuf>,
        retention_days: u32,
        connector: &ConnectorIdentity,
        applicant_id: Option<&str>,
    ) -> io::Result<Self> {
        let path = path.into();
        fs::create_dir_all(&path)?;
        let head = EnvelopeHead {
            bundle_type: "DIRECTORY_BUNDLE",
            applicant_id,
            connector,
            entities_types: [],
            update: false,
        };
        let mut envelope_head = serde_json::to_vec(&head).map_err(io::Error::other)?;
        // Re-open the object to append `"bundle":{...}` last, so the bundle can be streamed.
        envelope_head.pop();
        envelope_head.extend_from_slice(br#","bundle":"#);
        let file_prefix = connector.name.to_lowercase().replace(' ', "_");
        let retention = (retention_days > 0).then(|| Duration::from_secs(u64::from(retention_days) * 86_400));
        Ok(Self { path, retention, envelope_head, file_prefix })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a bundle file. `label` (e.g. the trail file) is appended to pycti's `<name>-<date>-<time>` file name
    /// so that files are unique and findable.
    pub fn begin(&self, label: &str) -> io::Result<DirectoryBundle> {
        let now = Timestamp::now();
        let (y, mo, d, h, mi, s, ms) = now.to_civil();
        let label: String =
            label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        let name = format!(
            "{}-{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{}.{ms:03}-{label}.json",
            self.file_prefix,
            now.unix_seconds()
        );
        let final_path = self.path.join(&name);
        let tmp_path = self.path.join(format!("{name}.tmp"));
        let mut file = BufWriter::with_capacity(1 << 20, File::create(&tmp_path)?);
        file.write_all(&self.envelope_head)?;
        let bundle_id = StixId::random(ObjectType::Bundle);
        write!(file, r#"{{"type":"bundle","id":"{bundle_id}","spec_version":"2.1","objects":["#)?;
        Ok(DirectoryBundle { file, tmp_path, final_path, objects: 0, seen: HashSet::new(), json: Vec::new() })
    }

    /// Removes `.json` files older than the retention; returns how many were removed.
    pub(crate) fn apply_retention(&self) -> io::Result<usize> {
        let Some(retention) = self.retention else { return Ok(0) };
        let cutoff = SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let is_json = entry.path().extension().is_some_and(|e| e == "json");
            if is_json && entry.metadata()?.modified()? < cutoff {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A bundle file being written. Dropped without [`DirectoryBundle::finish`], it leaves only a `.json.tmp`.
#[derive(Debug)]
pub struct DirectoryBundle {
    file: BufWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    objects: usize,
    seen: HashSet<StixId>,
    json: Vec<u8>,
}

impl DirectoryBundle {
    /// Appends an object; an id already in the bundle is left out (returns false).
    pub fn push(&mut self, object: &StixObject<'_>) -> io::Result<bool> {
        if !self.seen.insert(object.id()) {
            return Ok(false);
        }
        if self.objects > 0 {
            self.file.write_all(b",")?;
        }
        self.json.clear();
        object.write_json(&mut self.json);
        self.file.write_all(&self.json)?;
        self.objects += 1;
        Ok(true)
    }

    pub fn object_count(&self) -> usize {
        self.objects
    }

    /// Closes the bundle and renames the file to its final `.json` name.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.file.write_all(b"]}}")?;
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        fs::rename(&self.tmp_path, &self.final_path)?;
        Ok(self.final_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_stix::Tlp;

    fn identity() -> ConnectorIdentity {
        ConnectorIdentity {
            id: "00000000-0000-0000-0000-000000000000".into(),
            name: "Maltrail Test".into(),
            connector_type: "EXTERNAL_IMPORT".into(),
            scope: "maltrail".into(),
            auto: false,
            validate_before_import: false,
        }
    }

    #[test]
    fn writes_pycti_directory_bundles() {
        let dir = tempfile::tempdir().unwrap();
        let output = DirectoryOutput::new(dir.path(), 7, &identity(), Some("user-1")).unwrap();
        let mut bundle = output.begin("malware/icarus _ransomware.txt").unwrap();
        let marking = StixObject::MarkingDefinition(Tlp::Clear.marking_definition());
        assert!(bundle.push(&marking).unwrap());
        assert!(!bundle.push(&marking).unwrap(), "duplicate ids are left out");
        let path = bundle.finish().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("maltrail_test-") && name.ends_with("-malware_icarus__ransomware.txt.json"), "{name}");
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["bundle_type"], "DIRECTORY_BUNDLE");
        assert_eq!(value["applicant_id"], "user-1");
        assert_eq!(value["connector"]["type"], "EXTERNAL_IMPORT");
        assert_eq!(value["connector"]["scope"], "maltrail", "a string, as pycti writes it");
        assert_eq!(value["entities_types"], serde_json::json!([]));
        assert_eq!(value["update"], false);
        assert_eq!(value["bundle"]["objects"].as_array().unwrap().len(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no .tmp left behind");
    }

    #[test]
    fn unfinished_bundles_stay_tmp_and_old_files_expire() {
        let dir = tempfile::tempdir().unwrap();
        let output = DirectoryOutput::new(dir.path(), 1, &identity(), None).unwrap();
        drop(output.begin("x").unwrap());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| n.to_string_lossy().ends_with(".json.tmp")), "{names:?}");

        let old = dir.path().join("old.json");
        fs::write(&old, "{}").unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
        File::options().write(true).open(&old).unwrap().set_modified(two_days_ago).unwrap();
        fs::write(dir.path().join("fresh.json"), "{}").unwrap();
        assert_eq!(output.apply_retention().unwrap(), 1);
        assert!(!old.exists());
        assert!(dir.path().join("fresh.json").exists());
    }
}
