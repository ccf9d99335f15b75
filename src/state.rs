//! The connector's state as the platform keeps it: the last revision fully synced, when, and from which source.
//! Small on purpose (the platform stores it and the connector pings it every 40 s); fields written by other
//! versions are kept as they are.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"last_commit": ..., "last_run": ..., "source": ...}` plus whatever else the document held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectorState {
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

impl ConnectorState {
    /// Reads the platform's state string. A missing, empty or `{}` state (a new connector, or one a user reset in
    /// the UI) is the default; a state that is not a JSON object is reported and treated as empty, so that the next
    /// run imports in full rather than not at all.
    pub fn parse(text: Option<&str>) -> Self {
        let text = text.map(str::trim).filter(|t| !t.is_empty() && *t != "null");
        let Some(text) = text else { return Self::default() };
        match serde_json::from_str::<Self>(text) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, state = %crate::error_chain::excerpt(text, 200), "connector state is not a JSON object: ignoring it (full import)");
                Self::default()
            }
        }
    }

    /// The state as the JSON string the platform stores.
    pub fn to_json(&self) -> String {
        // A struct of strings and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let state = ConnectorState::parse(Some(r#"{"last_commit":"abc","last_run":"2026-01-01T00:00:00Z","x":1}"#));
        assert_eq!(state.last_commit.as_deref(), Some("abc"));
        assert_eq!(state.other["x"], 1);
        let again = ConnectorState::parse(Some(&state.to_json()));
        assert_eq!(again, state);
    }

    #[test]
    fn empty_or_bad_states_mean_start_over() {
        for text in [None, Some(""), Some("  "), Some("null"), Some("{}"), Some("[1]"), Some("not json")] {
            assert_eq!(ConnectorState::parse(text), ConnectorState::default(), "{text:?}");
        }
        assert_eq!(ConnectorState::default().to_json(), "{}");
    }

    #[test]
    fn revision_belongs_to_its_source() {
        let mut state = ConnectorState { last_commit: Some("abc".into()), ..ConnectorState::default() };
        assert_eq!(state.synced_revision("github:a/b@master"), Some("abc"));
        state.source = Some("github:a/b@master".into());
        assert_eq!(state.synced_revision("github:a/b@master"), Some("abc"));
        assert_eq!(state.synced_revision("github:a/b@dev"), None);
    }
}
