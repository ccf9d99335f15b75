//! One GitHub REST request, with the patience GitHub asks for: timeouts, backoff on transient failures, waits on
//! rate limits, and answers turned into errors that say what went wrong.

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use futures_util::Stream;
use proto_stix::Timestamp;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use tokio_util::bytes::Bytes;

use crate::source::SourceError;
use opencti_connector::settings::Secret;
use opencti_connector::{error_chain, excerpt};

/// `Accept` of JSON answers (the client's default).
const MEDIA_JSON: &str = "application/vnd.github+json";
/// `Accept` of a blob's bytes, without the base64 JSON wrapping.
pub(super) const MEDIA_RAW: &str = "application/vnd.github.raw";
/// The REST API version the connector was written against.
const API_VERSION: &str = "2022-11-28";
/// GitHub's advice when a secondary rate limit gives no `Retry-After`: wait at least a minute.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Added to `X-RateLimit-Reset`, which has a one-second resolution and may run ahead of our clock.
const RESET_MARGIN: Duration = Duration::from_secs(1);
/// At most this much of an error body goes into a message.
const MESSAGE_LIMIT: usize = 300;

/// How patient the source is with GitHub. The default suits the service; tests shrink it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for an answer or for its next bytes: a stalled connection counts as a failed
    /// attempt. There is no whole-request timeout, so a slow but live tarball download is never cut, and time the
    /// consumer of the files spends not reading does not count (reqwest's own `read_timeout` would count it).
    pub read_timeout: Duration,
    /// First backoff delay after a transient failure (5xx, connection refused or reset, timeout); it doubles, with
    /// jitter, up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Attempts of one request in all, the first included; rate-limit waits count as attempts too.
    pub max_attempts: usize,
    /// Longest wait for a rate limit to reset (GitHub's primary window is an hour).
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
            max_rate_limit_wait: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1))
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// Worth another attempt after the backoff delay: a 5xx answer, a transport error, a timeout.
    Transient(String),
    /// GitHub asked us to wait `wait` (until `reset`, epoch seconds, for the primary limit; `Retry-After` for the
    /// secondary one).
    RateLimited { wait: Duration, reset: Option<u64>, message: String },
    /// 401: the token was refused.
    Unauthorized(String),
    /// Any other answer no retry can change, with GitHub's `message`.
    Refused { status: StatusCode, message: String },
    /// No further attempt: the request cannot be made (a bad URL, a redirect loop), or the attempts are spent.
    Fatal(String),
}

impl Failure {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::RateLimited { .. })
    }

    /// The status of a refusal, to tell an unknown revision (404, 422) from other refusals.
    pub(super) fn refused_status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error a caller returns for request `what` once retries are over.
    pub(super) fn into_source_error(self, what: &str) -> SourceError {
        match self {
            Self::Unauthorized(message) => SourceError::Unauthorized(format!(
                "GitHub answered 401 to GET {what} ({message}): check MALTRAIL_API_KEY (a valid token, not expired, \
                 allowed to read the repository)"
            )),
            other => SourceError::Other(format!("GitHub request GET {what} failed: {other}")),
        }
    }

    fn from_transport(error: &reqwest::Error) -> Self {
        let text = error_chain(error);
        if error.is_builder() || error.is_redirect() { Self::Fatal(text) } else { Self::Transient(text) }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient(text) | Self::Fatal(text) => f.write_str(text),
            Self::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            Self::Unauthorized(message) => write!(f, "401 Unauthorized: {message}"),
            Self::Refused { status, message } => write!(f, "{status}: {message}"),
        }
    }
}

/// One GET: a path under the API base, and what to ask for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Get<'a> {
    pub path: &'a str,
    /// `Accept` when not JSON.
    pub accept: Option<&'static str>,
    /// The ETag of a cached answer, for a free 304.
    pub if_none_match: Option<&'a str>,
}

impl<'a> Get<'a> {
    pub fn json(path: &'a str) -> Self {
        Self { path, accept: None, if_none_match: None }
    }
}

/// A complete answer (2xx or 304).
#[derive(Debug)]
pub(super) struct Fetched {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The GitHub REST API at one base URL, with its client and the token for it.
#[derive(Debug)]
pub(super) struct Api {
    client: reqwest::Client,
    /// `https://api.github.com` or `https://host/api/v3`, without a trailing `/`.
    base: String,
    /// `Bearer <token>`, marked sensitive; added to API requests only (see [`Api::attempt`]).
    authorization: Option<HeaderValue>,
    policy: RetryPolicy,
}

impl Api {
    /// The client every request of the source goes through: GitHub's media type and API version by default,
    /// the connector's `User-Agent` (GitHub refuses requests without one), and the policy's timeouts.
    pub fn new(base: &str, token: Option<&Secret>, policy: RetryPolicy) -> Result<Self, SourceError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(MEDIA_JSON));
        headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
        let client = reqwest::Client::builder()
            .user_agent(concat!("maltrail-connector/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(policy.connect_timeout)
            .build()
            .map_err(|e| SourceError::Other(format!("cannot build the GitHub HTTP client: {}", error_chain(&e))))?;
        let authorization = token.map(bearer).transpose()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), authorization, policy })
    }

    /// Sends `get` until it is answered (2xx or 304), retrying as the policy says, and returns the answer with its
    /// body unread (the tarball is streamed by the caller).
    pub async fn send(&self, get: Get<'_>) -> Result<Response, Failure> {
        self.with_retries(get.path, || self.attempt(get)).await
    }

    /// Sends `get` and reads the whole answer; an interrupted or stalled body is retried like a failed request.
    pub async fn fetch(&self, get: Get<'_>) -> Result<Fetched, Failure> {
        self.with_retries(get.path, || async move {
            let mut response = self.attempt(get).await?;
            let status = response.status();
            let etag = header_text(response.headers(), &header::ETAG);
            let content_type = header_text(response.headers(), &header::CONTENT_TYPE);
            let mut body = Vec::new();
            while let Some(chunk) = self.next_chunk(&mut response).await? {
                body.extend_from_slice(&chunk);
            }
            Ok(Fetched { status, etag, content_type, body })
        })
        .await
    }

    /// The body of `response` as a stream of chunks for a reader, each awaited at most the read timeout. Ends
    /// after the first error.
    pub(crate) fn body_stream(&self, response: Response) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let read_timeout = self.policy.read_timeout;
        futures_util::stream::unfold(Some(response), move |state| async move {
            let mut response = state?;
            match read_chunk(&mut response, read_timeout).await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                Ok(None) => None,
                Err(failure) => Some((Err(io::Error::other(failure.to_string())), None)),
            }
        })
    }

    async fn next_chunk(&self, response: &mut Response) -> Result<Option<Bytes>, Failure> {
        read_chunk(response, self.policy.read_timeout).await
    }

    /// One attempt. The token goes on this request only: reqwest's redirect policy drops `Authorization` when a
    /// redirect leaves the host, port or scheme (the tarball's download host), and keeps it on the same host.
    async fn attempt(&self, get: Get<'_>) -> Result<Response, Failure> {
        let mut request = self.client.get(format!("{}/{}", self.base, get.path));
        if let Some(accept) = get.accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(tag) = get.if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let response = tokio::time::timeout(self.policy.read_timeout, request.send())
            .await
            .map_err(|_| silence(self.policy.read_timeout))?
            .map_err(|e| Failure::from_transport(&e))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        Err(refusal(response, self.policy.read_timeout).await)
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy's attempts are spent. Transient failures
    /// wait the exponential backoff (with jitter); rate limits wait what GitHub said, capped by the policy.
    async fn with_retries<T, F, Fut>(&self, path: &str, operation: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let cap = self.policy.max_rate_limit_wait;
        let mut retries = 0usize;
        let result = operation
            .retry(self.policy.backoff())
            .when(Failure::is_retryable)
            .adjust(|failure, delay| match failure {
                Failure::RateLimited { wait, .. } => delay.map(|_| (*wait).min(cap)),
                _ => delay,
            })
            .notify(|failure, delay| {
                retries += 1;
                opencti_connector::metrics::global().retry();
                log_retry(path, retries, failure, delay);
            })
            .await;
        result.map_err(|failure| {
            if failure.is_retryable() {
                Failure::Fatal(format!("{failure} (gave up after {} attempts)", retries + 1))
            } else {
                failure
            }
        })
    }
}

/// The next chunk of a body, waiting at most `read_timeout` for it.
async fn read_chunk(response: &mut Response, read_timeout: Duration) -> Result<Option<Bytes>, Failure> {
    tokio::time::timeout(read_timeout, response.chunk())
        .await
        .map_err(|_| silence(read_timeout))?
        .map_err(|e| Failure::from_transport(&e))
}

fn silence(read_timeout: Duration) -> Failure {
    Failure::Transient(format!("no data from GitHub for {read_timeout:?}"))
}

/// `Authorization: Bearer <token>`, marked sensitive so that it is never printed (its `Debug` says `Sensitive`).
fn bearer(token: &Secret) -> Result<HeaderValue, SourceError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
        .map_err(|_| SourceError::Other("MALTRAIL_API_KEY holds characters an HTTP header cannot carry".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn header_text(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn log_retry(path: &str, attempt: usize, failure: &Failure, delay: Duration) {
    let wait_seconds = delay.as_millis() as f64 / 1000.0;
    match failure {
        Failure::RateLimited { reset: Some(reset), message, .. } => tracing::warn!(
            attempt,
            path,
            wait_seconds,
            reset = %reset_time(*reset),
            github_message = %message,
            "GitHub rate limit exhausted: waiting for its reset"
        ),
        Failure::RateLimited { message, .. } => tracing::warn!(
            attempt,
            path,
            wait_seconds,
            github_message = %message,
            "GitHub asked to slow down (secondary rate limit): waiting"
        ),
        _ => tracing::warn!(attempt, path, error = %failure, retry_in = ?delay, "GitHub request failed: retrying"),
    }
}

/// Epoch seconds `reset` as an RFC 3339 time, for logs.
fn reset_time(reset: u64) -> String {
    i64::try_from(reset)
        .ok()
        .and_then(|seconds| seconds.checked_mul(1000))
        .map_or_else(|| reset.to_string(), |millis| Timestamp::from_unix_millis(millis).to_string())
}

/// Reads a refused answer's body and classifies it.
async fn refusal(response: Response, read_timeout: Duration) -> Failure {
    let status = response.status();
    let headers = response.headers().clone();
    // A body that cannot be read in time leaves the status and headers to speak.
    let body = tokio::time::timeout(read_timeout, response.bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
    classify(status, &headers, &body, SystemTime::now())
}

/// What a non-2xx, non-304 answer means (GitHub's REST docs, "Rate limits" and "Troubleshooting").
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Failure {
    let message = github_message(body);
    if status == StatusCode::UNAUTHORIZED {
        return Failure::Unauthorized(message);
    }
    if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(seconds) = header_number(headers, "retry-after") {
            return Failure::RateLimited { wait: Duration::from_secs(seconds), reset: None, message };
        }
        if header_number(headers, "x-ratelimit-remaining") == Some(0) {
            let reset = header_number(headers, "x-ratelimit-reset");
            let wait = reset.map_or(SECONDARY_LIMIT_WAIT, |reset| until(reset, now));
            return Failure::RateLimited { wait, reset, message };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || message.to_ascii_lowercase().contains("rate limit") {
            return Failure::RateLimited { wait: SECONDARY_LIMIT_WAIT, reset: None, message };
        }
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Failure::Transient(status.to_string());
    }
    Failure::Refused { status, message }
}

/// Time from `now` until epoch second `reset`, plus the margin.
fn until(reset: u64, now: SystemTime) -> Duration {
    let reset_at = UNIX_EPOCH + Duration::from_secs(reset);
    reset_at.duration_since(now).unwrap_or_default() + RESET_MARGIN
}

/// GitHub's `message` from a JSON error body, else the start of the body on one line.
fn github_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("message")?.as_str().map(str::to_owned));
    let text =
        from_json.unwrap_or_else(|| String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" "));
    if text.is_empty() {
        return "no message".to_owned();
    }
    let cut = excerpt(&text, MESSAGE_LIMIT);
    if cut.len() < text.len() { format!("{cut}…") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn primary_rate_limit_waits_until_the_reset_plus_a_margin() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let answer = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1030")]);
        let failure = classify(StatusCode::FORBIDDEN, &answer, br#"{"message":"API rate limit exceeded"}"#, now);
        assert!(
            matches!(failure, Failure::RateLimited { wait, reset: Some(1030), .. } if wait == Duration::from_secs(31))
        );
        let past = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "900")]);
        let failure = classify(StatusCode::TOO_MANY_REQUESTS, &past, b"", now);
        assert!(matches!(failure, Failure::RateLimited { wait, .. } if wait == RESET_MARGIN));
    }

    #[test]
    fn secondary_rate_limit_follows_retry_after_or_waits_a_minute() {
        let now = SystemTime::now();
        let failure = classify(StatusCode::FORBIDDEN, &headers(&[("retry-after", "7")]), b"", now);
        assert!(matches!(failure, Failure::RateLimited { wait, reset: None, .. } if wait == Duration::from_secs(7)));
        let body = br#"{"message":"You have exceeded a secondary rate limit."}"#;
        let failure = classify(StatusCode::FORBIDDEN, &HeaderMap::new(), body, now);
        assert!(matches!(failure, Failure::RateLimited { wait, .. } if wait == SECONDARY_LIMIT_WAIT));
    }

    #[test]
    fn other_answers_are_classified_by_status() {
        let now = SystemTime::now();
        let none = HeaderMap::new();
        assert!(matches!(classify(StatusCode::UNAUTHORIZED, &none, b"{}", now), Failure::Unauthorized(_)));
        assert!(matches!(classify(StatusCode::BAD_GATEWAY, &none, b"<html>", now), Failure::Transient(_)));
        let forbidden = classify(StatusCode::FORBIDDEN, &none, br#"{"message":"Resource not accessible"}"#, now);
        assert_eq!(forbidden.to_string(), "403 Forbidden: Resource not accessible");
        let missing = classify(StatusCode::NOT_FOUND, &none, b"  Not\n Found ", now);
        assert_eq!(missing.refused_status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(missing.to_string(), "404 Not Found: Not Found");
    }

    #[test]
    fn long_messages_are_cut() {
        let message = github_message("é".repeat(1_000).as_bytes());
        assert_eq!(message.chars().count(), MESSAGE_LIMIT + 1);
    }

    #[test]
    fn the_token_header_is_sensitive() {
        let value = bearer(&Secret::new("ghp_secret")).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("ghp_secret"));
        assert!(bearer(&Secret::new("bad\ntoken")).is_err());
    }
}
