//! What the connector keeps in its platform state: the last revision fully synced, when, and from which source;
//! where the refresh of `valid_until` stands, and the trails the last update added (to un-revoke). Small on purpose
//! (the platform stores it and the connector pings it every 40 s); fields written by other versions are kept as
//! they are.

use opencti_connector::StateDocument;
use proto_stix::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"last_commit": ..., "last_run": ..., "source": ...}` plus whatever else the document held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncState {
    /// The revision (commit sha, or directory digest) whose trails are all in the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    /// When the last successful run ended, `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// The source the revision belongs to (`github:stamparm/maltrail@master`): another source means a full import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The end of the last refresh window (`YYYY-MM-DDTHH:MM:SS.sssZ`): trails whose slot comes after it are due
    /// ([`crate::lifecycle`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_through: Option<String>,
    /// Trails the last update added, which the next run un-revokes (one may be a trail revoked before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reinstate: Vec<proto_stix::StixId>,
    /// The run in flight, for a leader that takes over to carry it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A run in flight, as much as a new leader needs to carry it on instead of starting over: its work, where it goes
/// from and to, its time, and how far its jobs went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub work_id: String,
    /// The source it reads (`github:owner/name@ref`): another source drops the record.
    pub source: String,
    /// The synced revision it starts from; `None` for a full import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The revision it syncs to.
    pub target: String,
    /// The target's date (`valid_from` of the trails an update adds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_date: Option<String>,
    /// When the run started (`valid_from` of a full import, `modified` of everything).
    pub started: String,
    /// Where the refresh window ends once the run succeeds, when it refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_through: Option<String>,
    /// Jobs published so far: jobs below it are out; the one at it may have had its expectations announced.
    pub published: u64,
    /// The number of jobs, once every one is out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
}

impl SyncState {
    /// Reads the state document; a field of the wrong type (a hand-edited state) is reported and the state taken
    /// as empty, so that the next run imports in full rather than not at all.
    pub(crate) fn from_document(document: &StateDocument) -> Self {
        match serde_json::from_value(Value::Object(document.clone())) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, "connector state cannot be read: ignoring it (full import)");
                Self::default()
            }
        }
    }

    pub(crate) fn to_document(&self) -> StateDocument {
        match serde_json::to_value(self) {
            Ok(Value::Object(document)) => document,
            // A struct of strings and JSON values always serializes to an object.
            _ => StateDocument::new(),
        }
    }

    /// The revision to compare with, when this state was written for `source`.
    pub(crate) fn synced_revision(&self, source: &str) -> Option<&str> {
        match (&self.last_commit, &self.source) {
            (Some(commit), Some(recorded)) if recorded == source => Some(commit),
            // A state written without a source (by hand, or an older version) is trusted as it is.
            (Some(commit), None) => Some(commit),
            _ => None,
        }
    }

    /// Where the refresh window starts.
    pub(crate) fn refreshed_through(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(self.refreshed_through.as_deref()?).ok()
    }

    /// When the last run that did its job ended.
    pub(crate) fn last_run_time(&self) -> Option<Timestamp> {
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
