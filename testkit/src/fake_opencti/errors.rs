//! GraphQL errors as the platform formats them.

use serde_json::{Value, json};

use super::records::ErrorSummary;

/// A GraphQL error as the platform formats it: `{message, path?, extensions: {code, data?}, name: code}` (the
/// platform copies the code to `name` for pycti 3 compatibility).
#[derive(Clone, Debug)]
pub(super) struct GqlError {
    pub(super) code: String,
    message: String,
    path: Vec<String>,
    data: Option<Value>,
}

impl GqlError {
    pub(super) fn new(code: &str, message: impl Into<String>) -> Self {
        GqlError { code: code.to_owned(), message: message.into(), path: Vec::new(), data: None }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub(super) fn at(mut self, path: Vec<String>) -> Self {
        self.path = path;
        self
    }

    pub(super) fn auth_required() -> Self {
        Self::new("AUTH_REQUIRED", "You must be logged in to do this.")
            .with_data(json!({"http_status": 401, "genre": "TECHNICAL"}))
    }

    pub(super) fn functional(message: &str, id: &str) -> Self {
        Self::new("FUNCTIONAL_ERROR", message).with_data(json!({"http_status": 400, "genre": "BUSINESS", "id": id}))
    }

    pub(super) fn work_not_alive() -> Self {
        Self::new("WORK_NOT_ALIVE", "Work is no longer alive, no request can be done within the context of this work")
            .with_data(json!({"http_status": 400, "genre": "BUSINESS"}))
    }

    pub(super) fn validation(message: impl Into<String>) -> Self {
        Self::new("GRAPHQL_VALIDATION_FAILED", message)
    }

    pub(super) fn bad_input(message: impl Into<String>) -> Self {
        Self::new("BAD_USER_INPUT", message)
    }

    pub(super) fn unknown(message: impl Into<String>) -> Self {
        Self::new("UNKNOWN_ERROR", message).with_data(json!({"http_status": 500, "genre": "TECHNICAL"}))
    }

    pub(super) fn to_json(&self) -> Value {
        let mut extensions = json!({"code": self.code});
        if let Some(data) = &self.data {
            extensions["data"] = data.clone();
        }
        let mut error = json!({"message": self.message, "extensions": extensions, "name": self.code});
        if !self.path.is_empty() {
            error["path"] = json!(self.path);
        }
        error
    }

    pub(super) fn summary(&self) -> ErrorSummary {
        ErrorSummary { code: self.code.clone(), message: self.message.clone() }
    }
}
