//! What the connector keeps in its platform state: the last revision fully synced, when, and from which source.
//! Small on purpose (the platform stores it and the connector pings it every 40 s); fields written by other
//! versions are kept as they are.

use opencti_connector::StateDocument;
use proto_stix::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"last_commit": ..., "last_run": ..., "source": ...}` plus whatever else the document held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// The revision (commit sha, or directory digest) whose trails are all in the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    /// When the last successful run ended, `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// The source the revision belongs to (`github:stamparm/maltrail@master`): another source means a full import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl SyncState {
    /// Reads the state document; a field of the wrong type (a hand-edited state) is reported and the state taken
    /// as empty, so that the next run imports in full rather than not at all.
    pub fn from_document(document: &StateDocument) -> Self {
        match serde_json::from_value(Value::Object(document.clone())) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "connector state cannot be read: ignoring it (full import)");
                Self::default()
            }
        }
    }

    pub fn to_document(&self) -> StateDocument {
        match serde_json::to_value(self) {
            Ok(Value::Object(document)) => document,
            // A struct of strings and JSON values always serializes to an object.
            _ => StateDocument::new(),
        }
    }

    /// The revision to compare with, when this state was written for `source`.
    pub fn synced_revision(&self, source: &str) -> Option<&str> {
        match (&self.last_commit, &self.source) {
            (Some(commit), Some(recorded)) if recorded == source => Some(commit),
            // A state written without a source (by hand, or an older version) is trusted as it is.
            (Some(commit), None) => Some(commit),
            _ => None,
        }
    }

    /// When the last run that did its job ended.
    pub fn last_run_time(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(self.last_run.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencti_connector::{parse_state, state_json};

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let document = parse_state(Some(r#"{"last_commit":"abc","last_run":"2026-01-01T00:00:00Z","x":1}"#));
        let state = SyncState::from_document(&document);
        assert_eq!(state.last_commit.as_deref(), Some("abc"));
        assert_eq!(state.other["x"], 1);
        assert_eq!(SyncState::from_document(&parse_state(Some(&state_json(&state.to_document())))), state);
        assert!(state.last_run_time().is_some());
    }

    #[test]
    fn a_state_of_the_wrong_shape_means_start_over() {
        let document = parse_state(Some(r#"{"last_commit":1}"#));
        assert_eq!(SyncState::from_document(&document), SyncState::default());
        assert_eq!(state_json(&SyncState::default().to_document()), "{}");
    }

    #[test]
    fn revision_belongs_to_its_source() {
        let mut state = SyncState { last_commit: Some("abc".into()), ..SyncState::default() };
        assert_eq!(state.synced_revision("github:a/b@master"), Some("abc"));
        state.source = Some("github:a/b@master".into());
        assert_eq!(state.synced_revision("github:a/b@master"), Some("abc"));
        assert_eq!(state.synced_revision("github:a/b@dev"), None);
    }
}
