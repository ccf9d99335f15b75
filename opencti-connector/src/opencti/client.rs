//! The GraphQL transport to OpenCTI: one POST per call, both error channels (an HTTP status, or HTTP 200 with an
//! `errors` array) turned into [`OpenCtiError`], transient failures retried with exponential backoff and jitter.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error_chain::{error_chain, excerpt};
use crate::settings::{OpenCtiSettings, Secret, TlsVerify};

/// How often and how long a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Attempts after the first; `None` retries until the call succeeds (used while waiting for the platform to
    /// come up at start).
    pub max_retries: Option<usize>,
}

impl RetryPolicy {
    /// Two quick retries: for pings (the next one comes soon anyway) and for calls made while shutting down.
    pub(crate) fn brief() -> Self {
        Self { max_retries: Some(2), ..Self::default() }
    }
}

impl Default for RetryPolicy {
    /// About three minutes of retries: long enough for a platform restart, short enough to end a run in error.
    fn default() -> Self {
        Self { min_delay: Duration::from_secs(1), max_delay: Duration::from_secs(30), max_retries: Some(10) }
    }
}

/// Whether a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Reads, and writes that set a value (ping, register, toProcessed): repeating them changes nothing.
    Safe,
    /// Writes that add (workAdd, addExpectations, reportExpectation): repeated after the platform applied them,
    /// they would open a second work or count expectations twice, and the work would never complete. Sent again
    /// only when the platform surely did not take them: no connection, or an answer from in front of the platform
    /// (429, 502, 503).
    OnlyIfNotReceived,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenCtiError {
    /// The token was refused: nothing will work until the configuration is fixed.
    #[error("OpenCTI refused the token (check OPENCTI_TOKEN and the connector user's rights): {0}")]
    Unauthorized(String),
    /// The platform answered the call with an error.
    #[error("OpenCTI {operation} failed: {message}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    GraphQl { operation: &'static str, message: String, code: Option<String> },
    /// An HTTP error status (after retries, for 5xx).
    #[error("OpenCTI {operation} answered HTTP {status}: {body}")]
    Http { operation: &'static str, status: u16, body: String },
    /// The platform could not be reached (after retries).
    #[error("OpenCTI {operation}: cannot reach {url}: {detail}")]
    Transport {
        operation: &'static str,
        url: String,
        /// The transport error with its causes (reqwest's own message leaves them out).
        detail: String,
        /// The connection could not even be made: the request was not sent.
        unsent: bool,
    },
    /// The answer was not what the call expects.
    #[error("OpenCTI {operation}: unexpected answer: {message}")]
    Decode { operation: &'static str, message: String },
    /// The configuration cannot build an HTTP client (a CA file that is not PEM, ...).
    #[error("OpenCTI client: {0}")]
    Setup(String),
}

impl OpenCtiError {
    /// Worth trying again: the platform is down, restarting or overloaded.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Http { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }

    /// The platform surely did not act on the request: it was never sent, or refused before the platform.
    pub(crate) fn surely_not_received(&self) -> bool {
        match self {
            Self::Transport { unsent, .. } => *unsent,
            Self::Http { status, .. } => matches!(status, 429 | 502 | 503),
            _ => false,
        }
    }
}

/// A GraphQL client for one platform and token.
#[derive(Clone)]
pub struct GraphQlClient {
    http: reqwest::Client,
    endpoint: String,
    token: Secret,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GraphQlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphQlClient").field("endpoint", &self.endpoint).field("retry", &self.retry).finish()
    }
}

impl GraphQlClient {
    /// A client for `${OPENCTI_URL}/graphql`, honouring `OPENCTI_SSL_VERIFY` (false, or a CA bundle file).
    pub fn new(config: &OpenCtiSettings, user_agent: &str, retry: RetryPolicy) -> Result<Self, OpenCtiError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        match &config.ssl_verify {
            TlsVerify::Verify => {}
            TlsVerify::NoVerify => builder = builder.tls_danger_accept_invalid_certs(true),
            TlsVerify::CaFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| OpenCtiError::Setup(format!("cannot read the CA bundle {}: {e}", path.display())))?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| OpenCtiError::Setup(format!("{} is not a PEM CA bundle: {e}", path.display())))?;
                if certificates.is_empty() {
                    return Err(OpenCtiError::Setup(format!(
                        "{} holds no PEM certificate (OPENCTI_SSL_VERIFY wants a CA bundle)",
                        path.display()
                    )));
                }
                builder = builder.tls_certs_merge(certificates);
            }
        }
        let http = builder.build().map_err(|e| OpenCtiError::Setup(e.to_string()))?;
        Ok(Self { http, endpoint: format!("{}/graphql", config.url.as_str()), token: config.token.clone(), retry })
    }

    /// The same client with another retry policy.
    pub(crate) fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self { retry, ..self.clone() }
    }

    /// Runs `query` with `variables`, retrying transient failures as `replay` allows, and returns `data` decoded.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &'static str,
        variables: Value,
        replay: Replay,
    ) -> Result<T, OpenCtiError> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_jitter();
        backoff = match self.retry.max_retries {
            Some(n) => backoff.with_max_times(n),
            None => backoff.without_max_times(),
        };
        let body = serde_json::json!({ "query": query, "variables": variables });
        let data = (|| self.attempt(operation, &body))
            .retry(backoff)
            .when(|error| match replay {
                Replay::Safe => error.is_transient(),
                Replay::OnlyIfNotReceived => error.surely_not_received(),
            })
            .notify(|error, delay| {
                crate::metrics::global().retry();
                tracing::warn!(operation, error = %error, retry_in = ?delay, "OpenCTI call failed: retrying");
            })
            .await?;
        serde_json::from_value(data).map_err(|e| OpenCtiError::Decode { operation, message: e.to_string() })
    }

    async fn attempt(&self, operation: &'static str, body: &Value) -> Result<Value, OpenCtiError> {
        let response =
            self.http.post(&self.endpoint).bearer_auth(self.token.expose()).json(body).send().await.map_err(
                |error| OpenCtiError::Transport {
                    operation,
                    url: self.endpoint.clone(),
                    detail: error_chain(&error),
                    unsent: error.is_connect(),
                },
            )?;
        let status = response.status();
        let text = response.text().await.map_err(|error| OpenCtiError::Transport {
            operation,
            url: self.endpoint.clone(),
            detail: error_chain(&error),
            unsent: false,
        })?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(OpenCtiError::Unauthorized(format!("HTTP 401: {}", cut(&text))));
        }
        // A 5xx stays a (retried) HTTP error even with a GraphQL body: Apollo answers 500 with `errors` when the
        // platform cannot build the request's context (its Redis or Elasticsearch briefly away).
        if is_transient_status(status.as_u16()) {
            return Err(OpenCtiError::Http { operation, status: status.as_u16(), body: cut(&text).to_owned() });
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if let Some(error) = parsed.as_ref().and_then(|v| graphql_error(operation, v)) {
            return Err(error);
        }
        if !status.is_success() {
            return Err(OpenCtiError::Http { operation, status: status.as_u16(), body: cut(&text).to_owned() });
        }
        let Some(mut answer) = parsed else {
            return Err(OpenCtiError::Decode { operation, message: format!("not JSON: {}", cut(&text)) });
        };
        match answer.get_mut("data").map(Value::take) {
            Some(data) if !data.is_null() => Ok(data),
            _ => Err(OpenCtiError::Decode { operation, message: format!("no data: {}", cut(&text)) }),
        }
    }
}

/// A status worth trying again: the platform (or what is in front of it) is down, restarting or overloaded.
fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// The first entry of a GraphQL `errors` array as an error; authentication errors are told apart.
fn graphql_error(operation: &'static str, answer: &Value) -> Option<OpenCtiError> {
    let first = answer.get("errors")?.as_array()?.first()?;
    let message = first.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
    let code =
        first.pointer("/extensions/code").or_else(|| first.get("name")).and_then(Value::as_str).map(str::to_owned);
    if matches!(code.as_deref(), Some("AUTH_REQUIRED" | "AuthRequired" | "UNAUTHENTICATED")) {
        return Some(OpenCtiError::Unauthorized(message));
    }
    Some(OpenCtiError::GraphQl { operation, message, code })
}

/// At most 300 characters of an answer, for error messages.
fn cut(text: &str) -> &str {
    excerpt(text, 300)
}
