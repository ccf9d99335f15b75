//! The connector's state as the platform keeps it: a small JSON document the connector writes and every ping
//! sends, and the platform's copy the ping answers with. A user resets a connector in the platform's UI by
//! replacing that copy: the next ping answers the reset state, which the connector then adopts.

use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value};

use crate::opencti::ConnectorInfo;

/// The state document: a JSON object (fields written by other versions are kept as they are).
pub type StateDocument = Map<String, Value>;

/// Reads the platform's state string. A missing, empty or `{}` state (a new connector, or one a user reset in the
/// UI) is empty; a state that is not a JSON object is reported and treated as empty, so that the next run starts
/// over rather than not at all.
pub fn parse_state(text: Option<&str>) -> StateDocument {
    let text = text.map(str::trim).filter(|t| !t.is_empty() && *t != "null");
    let Some(text) = text else { return StateDocument::new() };
    match serde_json::from_str::<StateDocument>(text) {
        Ok(state) => state,
        Err(error) => {
            let excerpt = crate::error_chain::excerpt(text, 200);
            tracing::warn!(%error, state = %excerpt, "connector state is not a JSON object: ignoring it");
            StateDocument::new()
        }
    }
}

/// The state as the JSON string the platform stores.
pub fn state_json(state: &StateDocument) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(state).unwrap_or_else(|_| "{}".into())
}

/// The state at some moment, and the generation it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct StateView {
    pub document: StateDocument,
    /// Bumped when the platform's state replaced ours: a run that started before must not advance the state.
    pub generation: u64,
}

/// What the ping task and the runs share.
#[derive(Debug, Default)]
pub(crate) struct StateStore {
    inner: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: StateDocument,
    generation: u64,
    info: ConnectorInfo,
}

impl StateStore {
    pub(crate) fn new(state: StateDocument, info: ConnectorInfo) -> Self {
        Self { inner: Mutex::new(Shared { state, generation: 0, info }) }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn view(&self) -> StateView {
        let shared = self.lock();
        StateView { document: shared.state.clone(), generation: shared.generation }
    }

    /// What a ping sends: the state as JSON, and the runtime info.
    pub(crate) fn snapshot(&self) -> (String, ConnectorInfo) {
        let shared = self.lock();
        (state_json(&shared.state), shared.info.clone())
    }

    /// Replaces the state, unless the platform's replaced it since `generation`; returns whether it did.
    pub(crate) fn replace(&self, state: StateDocument, generation: u64) -> bool {
        let mut shared = self.lock();
        if shared.generation != generation {
            return false;
        }
        shared.state = state;
        true
    }

    pub(crate) fn update_info(&self, update: impl FnOnce(&mut ConnectorInfo)) {
        update(&mut self.lock().info);
    }

    /// Takes `state` (the platform's copy, read again) as the state; a different one starts a new generation.
    pub(crate) fn adopt(&self, state: StateDocument) {
        let mut shared = self.lock();
        if shared.state != state {
            shared.state = state;
            shared.generation += 1;
        }
    }

    /// Adopts the platform's state when its answer to a ping differs from the state the ping sent. The platform
    /// stores what a ping sends, except for the first ping after a user reset the state in the UI: that one is
    /// answered with the reset state and not stored. So any difference is a reset, even if a run moved our state
    /// since the ping left. Returns whether the state was replaced.
    pub(crate) fn adopt_reset(&self, sent: &str, answered: Option<&str>) -> bool {
        let remote = parse_state(answered);
        if remote == parse_state(Some(sent)) {
            return false;
        }
        tracing::warn!(state = %state_json(&remote), "the platform's state was reset: adopting it, the next run starts over");
        let mut shared = self.lock();
        shared.state = remote;
        shared.generation += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let state = parse_state(Some(r#"{"last_commit":"abc","x":1}"#));
        assert_eq!(state["last_commit"], "abc");
        assert_eq!(parse_state(Some(&state_json(&state))), state);
    }

    #[test]
    fn empty_or_bad_states_mean_start_over() {
        for text in [None, Some(""), Some("  "), Some("null"), Some("{}"), Some("[1]"), Some("not json")] {
            assert_eq!(parse_state(text), StateDocument::new(), "{text:?}");
        }
        assert_eq!(state_json(&StateDocument::new()), "{}");
    }

    #[test]
    fn a_reset_bumps_the_generation_and_blocks_older_writers() {
        let store = StateStore::new(parse_state(Some(r#"{"a":1}"#)), ConnectorInfo::default());
        let before = store.view();
        assert!(!store.adopt_reset(r#"{"a":1}"#, Some(r#"{"a":1}"#)));
        assert!(store.adopt_reset(r#"{"a":1}"#, Some("")));
        assert!(store.view().document.is_empty());
        assert!(!store.replace(before.document, before.generation), "a run from before the reset cannot write");
        let after = store.view();
        assert!(store.replace(parse_state(Some(r#"{"b":2}"#)), after.generation));
    }
}
