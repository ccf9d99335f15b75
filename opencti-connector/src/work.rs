//! A work: what the platform shows of one run (Data > Ingestion > Connectors > the connector), its expectations
//! (the messages the platform's workers will report) and its end.
//!
//! Calls that add (`addExpectations`, `reportExpectation`) are not repeated once the platform may have taken them
//! (see [`crate::opencti::Replay`]); calls after a shutdown request retry briefly, so that an unreachable platform
//! cannot hold the exit.

use crate::opencti::{OpenCti, OpenCtiError, RetryPolicy, WorkError};

/// A work opened on the platform.
#[derive(Debug, Clone)]
pub struct Work {
    opencti: OpenCti,
    id: String,
}

impl Work {
    /// Opens a work named `name`. A multi-part work (one run sending many bundles) completes only once marked
    /// processed and every expectation is reported.
    pub(crate) async fn open(
        opencti: &OpenCti,
        connector_id: &str,
        name: &str,
        multipart: bool,
    ) -> Result<Self, OpenCtiError> {
        let id = opencti.work_add(connector_id, name, multipart).await?;
        Ok(Self { opencti: opencti.clone(), id })
    }
    /// A work opened earlier (by this process, another replica, or a leader that died), to carry on with it.
    pub(crate) fn resume(opencti: &OpenCti, id: String) -> Self {
        Self { opencti: opencti.clone(), id }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Announces `expectations` more messages (each one a report the platform's workers will make).
    pub async fn add_expectations(&self, expectations: u64) -> Result<(), OpenCtiError> {
        self.opencti.add_expectations(&self.id, expectations).await
    }

    /// Reports an error on the work, counted as one of its expectations (announce it first).
    pub async fn report_error(&self, error: &str, source: &str) -> Result<(), OpenCtiError> {
        let error = WorkError { error: error.to_owned(), source: source.to_owned() };
        self.opencti.report_expectation(&self.id, &error).await
    }

    /// Marks the work processed with a message; `in_error` shows it failed. Errors are logged, not returned: the
    /// run is over either way.
    pub async fn finish(&self, message: &str, in_error: bool) {
        if let Err(error) = self.opencti.to_processed(&self.id, message, in_error).await {
            tracing::warn!(%error, work_id = %self.id, "cannot mark the work processed");
        }
    }

    /// The same work with brief retries (for the calls that end a run after a shutdown request).
    pub(crate) fn hurried(&self) -> Self {
        Self { opencti: self.opencti.with_retry(RetryPolicy::brief()), id: self.id.clone() }
    }
}
