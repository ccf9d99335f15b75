//! What the fake records: every call and how it was answered, the pings, the works.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::Fault;

/// One error of a GraphQL answer, as recorded in [`Call::outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorSummary {
    /// `extensions.code`.
    pub code: String,
    /// `message`.
    pub message: String,
}

/// How the fake answered a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not answered yet (a [`Fault::Hang`] in progress).
    Pending,
    /// HTTP 200 with data and no errors.
    Ok,
    /// A GraphQL `errors` array (with HTTP 200, or 401 for [`AuthFailure::Http401`](super::AuthFailure::Http401)).
    Errors {
        /// The HTTP status of the answer.
        http_status: u16,
        /// The errors, in order.
        errors: Vec<ErrorSummary>,
    },
    /// An HTTP error without GraphQL body: an injected [`Fault::Http`], or a malformed request (400).
    Http(u16),
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Call {
    /// Position in the call log, from 0.
    pub seq: usize,
    /// The root field called: `about`, `registerConnector`, `pingConnector`, `connector`, `workAdd`, `workEdit`, …
    /// (`<bad request>` when the body was not a GraphQL request, `<invalid>` when the document did not parse).
    pub operation: String,
    /// For `workEdit`, the field selected in it: `addExpectations`, `toProcessed`, `reportExpectation`, `ping`, …
    pub sub_operation: Option<String>,
    /// The GraphQL operation name (`mutation PingConnector(…)` → `PingConnector`).
    pub operation_name: Option<String>,
    /// The GraphQL document.
    pub query: String,
    /// The `variables` object (`{}` when absent).
    pub variables: Value,
    /// Whether it carried `Authorization: Bearer <the token>`.
    pub auth_ok: bool,
    /// Every request header, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The fault injected into it, if any.
    pub fault: Option<Fault>,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, wall clock.
    pub wall: SystemTime,
    /// How it was answered.
    pub outcome: Outcome,
}

impl Call {
    /// `operation`, or `operation.sub_operation` for `workEdit` (`workEdit.toProcessed`).
    pub fn label(&self) -> String {
        match &self.sub_operation {
            Some(sub) => format!("{}.{sub}", self.operation),
            None => self.operation.clone(),
        }
    }

    /// Whether this call is `op`: a root field (`pingConnector`, `workEdit`) or a `workEdit` field
    /// (`workEdit.addExpectations`).
    pub fn is(&self, op: &str) -> bool {
        operation_matches(op, &self.operation, self.sub_operation.as_deref())
    }

    /// Whether it was answered with data and no error.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The `extensions.code` of every GraphQL error of the answer.
    pub fn error_codes(&self) -> Vec<String> {
        match &self.outcome {
            Outcome::Errors { errors, .. } => errors.iter().map(|e| e.code.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// One `pingConnector` the fake processed.
#[derive(Clone, Debug, PartialEq)]
pub struct Ping {
    /// The connector id.
    pub id: String,
    /// The `state` argument (`None` when null or absent).
    pub state: Option<String>,
    /// The `connectorInfo` argument.
    pub connector_info: Option<Value>,
    /// The `connector_state` the fake answered (differs from `state` right after
    /// [`FakeOpenCti::reset_state`](super::FakeOpenCti::reset_state)).
    pub answered_state: Option<String>,
}

/// A work, as `workAdd` / `workEdit` left it.
#[derive(Clone, Debug, PartialEq)]
pub struct Work {
    /// Its id (`work_<connector id>_<ISO timestamp>`, as the platform makes them).
    pub id: String,
    /// The connector that opened it.
    pub connector_id: String,
    /// `friendlyName`.
    pub friendly_name: Option<String>,
    /// `isMultiPartWork`.
    pub is_multipart: bool,
    /// The sum of every `addExpectations`.
    pub expectations: i64,
    /// Each `addExpectations` value, in order.
    pub expectation_calls: Vec<i64>,
    /// `reportExpectation` calls (what the platform's workers send per ingested message).
    pub completed_number: i64,
    /// Whether `toProcessed` was called.
    pub processed: bool,
    /// How many times `toProcessed` was called.
    pub processed_calls: usize,
    /// `inError` of the last `toProcessed`.
    pub in_error: bool,
    /// `message` of the last `toProcessed`.
    pub message: Option<String>,
    /// `message` of every `toReceived`.
    pub received_messages: Vec<Option<String>>,
    /// The `error` objects of every `reportExpectation` that carried one.
    pub errors: Vec<Value>,
    /// `progress` until complete: processed (or not multipart) and as many `reportExpectation` as expectations.
    pub status: String,
    /// `workEdit { ping }` calls.
    pub pings: usize,
    /// Deleted (`workEdit { delete }` or [`FakeOpenCti::delete_work`](super::FakeOpenCti::delete_work)): further
    /// edits fail with `WORK_NOT_ALIVE`.
    pub deleted: bool,
    /// `addDraftContext`.
    pub draft_context: Option<String>,
}

pub(super) fn operation_matches(wanted: &str, operation: &str, sub_operation: Option<&str>) -> bool {
    wanted == operation || sub_operation.is_some_and(|sub| wanted == format!("{operation}.{sub}"))
}
