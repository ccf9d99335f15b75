//! The fake's shared state and its gate: request log, fault injection, authentication, ETags and the rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::listener::ConnectionHandle;
use super::model::FakeRepo;
use super::sha1::sha1_hex;
use super::{FakeOptions, Fault, RequestRecord};

const DOCS: &str = "https://docs.github.com/rest";

/// State shared by the routes and the test's handle.
pub(super) struct Shared {
    pub repo: Mutex<FakeRepo>,
    pub options: FakeOptions,
    /// `http://127.0.0.1:<port>` plus the API path prefix: what `MALTRAIL_API_BASE_URL` would be.
    pub api_base: String,
    /// `http://127.0.0.1:<port>` of the listener serving `/_codeload/` and `/_raw/`.
    pub download_base: String,
    pub log: Mutex<RequestLog>,
    pub faults: Mutex<Vec<PendingFault>>,
    pub rate: Mutex<RateState>,
    /// Commit JSON bodies by sha: a commit never changes, and the root commit's diff is costly.
    pub commit_bodies: Mutex<HashMap<String, Bytes>>,
}

/// Locks ignoring poison: a panicking test thread must not turn every later request into a second panic.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every request seen, oldest first.
#[derive(Default)]
pub(super) struct RequestLog {
    pub records: Vec<RequestRecord>,
    pub next_seq: u64,
}

/// A fault waiting for its requests.
pub(super) struct PendingFault {
    pub path_contains: Option<String>,
    pub remaining: usize,
    pub fault: Fault,
}

/// GitHub's primary rate limit: a budget per window that refills at the announced reset time.
pub(super) struct RateState {
    pub limit: u32,
    pub window: Duration,
    pub used: u32,
    pub reset_at: Option<u64>,
}

/// The rate-limit figures of one answer.
#[derive(Clone, Copy)]
pub(super) struct RateSnapshot {
    pub limit: u32,
    pub used: u32,
    /// Epoch seconds when the window refills.
    pub reset: u64,
}

impl RateState {
    fn roll(&mut self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        if self.reset_at.is_some_and(|reset| now >= reset as f64) {
            self.used = 0;
            self.reset_at = None;
        }
        *self.reset_at.get_or_insert_with(|| (now + self.window.as_secs_f64()).ceil() as u64)
    }

    /// The current figures, without counting a request.
    pub fn peek(&mut self) -> RateSnapshot {
        let reset = self.roll();
        RateSnapshot { limit: self.limit, used: self.used, reset }
    }

    fn consume(&mut self) -> Result<RateSnapshot, RateSnapshot> {
        let snapshot = self.peek();
        if self.used >= self.limit {
            return Err(snapshot);
        }
        self.used += 1;
        Ok(RateSnapshot { used: self.used, ..snapshot })
    }

    /// Sets what is left in the current window.
    pub fn set_remaining(&mut self, remaining: u32) {
        self.roll();
        self.used = self.limit.saturating_sub(remaining);
    }

    /// What is left in the current window.
    pub fn remaining(&mut self) -> u32 {
        let snapshot = self.peek();
        snapshot.limit.saturating_sub(snapshot.used)
    }
}

impl Shared {
    fn log_start(&self, request: &Request, download_host: bool) -> u64 {
        let header = |name: header::HeaderName| {
            request.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        log.records.push(RequestRecord {
            seq,
            method: request.method().to_string(),
            path_and_query: request.uri().path_and_query().map_or_else(String::new, |p| p.to_string()),
            authorization: header(header::AUTHORIZATION),
            if_none_match: header(header::IF_NONE_MATCH),
            accept: header(header::ACCEPT),
            on_download_host: download_host,
            status: None,
        });
        seq
    }

    fn log_finish(&self, seq: u64, status: Option<StatusCode>) {
        let mut log = lock(&self.log);
        if let Some(record) = log.records.iter_mut().rev().find(|r| r.seq == seq) {
            record.status = status.map(|s| s.as_u16());
        }
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|f| f.remaining > 0 && f.path_contains.as_deref().is_none_or(|p| path.contains(p)))?;
        let pending = &mut faults[index];
        pending.remaining -= 1;
        let fault = pending.fault.clone();
        if pending.remaining == 0 {
            faults.remove(index);
        }
        Some(fault)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.options.token else {
            return true;
        };
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, credential)) = value.split_once(' ') else {
            return false;
        };
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) && credential.trim() == expected
    }

    /// The repository if `owner/name` names it (case-insensitively, as GitHub matches).
    pub fn repo(&self, owner: &str, name: &str) -> Option<MutexGuard<'_, FakeRepo>> {
        let repo = lock(&self.repo);
        (repo.owner().eq_ignore_ascii_case(owner) && repo.name().eq_ignore_ascii_case(name)).then_some(repo)
    }
}

/// Logs every request, then applies faults; API requests also pass authentication, conditional requests
/// (a 304 is free) and the rate limit, and every API answer carries the rate-limit headers.
pub(super) async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<ConnectInfo<ConnectionHandle>>().map(|c| c.0.clone());
    let download_host = connection.as_ref().is_some_and(|c| c.download_host);
    let seq = shared.log_start(&request, download_host);
    let (response, status) = gate_inner(&shared, request, next, connection).await;
    shared.log_finish(seq, status);
    response
}

async fn gate_inner(
    shared: &Shared,
    request: Request,
    next: Next,
    connection: Option<ConnectionHandle>,
) -> (Response, Option<StatusCode>) {
    let path = request.uri().path().to_owned();
    match shared.take_fault(&path) {
        Some(Fault::Status(status)) => return (fault_page(status), Some(status)),
        Some(Fault::Hang(duration)) => tokio::time::sleep(duration).await,
        Some(Fault::ResetConnection) => {
            if let Some(connection) = connection {
                connection.reset();
            }
            return (StatusCode::INTERNAL_SERVER_ERROR.into_response(), None);
        }
        Some(Fault::SecondaryRateLimit { status, retry_after_secs }) => {
            let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
            let mut response = error_json(status, message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            add_rate_headers(&mut response, lock(&shared.rate).peek());
            return (response, Some(status));
        }
        None => {}
    }
    if path.starts_with("/_codeload/") || path.starts_with("/_raw/") {
        let response = next.run(request).await;
        let status = response.status();
        return (response, Some(status));
    }
    if !shared.authorized(request.headers()) {
        let mut response = error_json(StatusCode::UNAUTHORIZED, "Bad credentials");
        add_rate_headers(&mut response, lock(&shared.rate).peek());
        return (response, Some(StatusCode::UNAUTHORIZED));
    }
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let free = path.ends_with("/rate_limit");
    let mut response = next.run(request).await;
    let not_modified = response.status() == StatusCode::OK
        && etag_matches(if_none_match.as_ref(), response.headers().get(header::ETAG));
    if not_modified {
        let mut answer = StatusCode::NOT_MODIFIED.into_response();
        if let Some(etag) = response.headers().get(header::ETAG) {
            answer.headers_mut().insert(header::ETAG, etag.clone());
        }
        response = answer;
        add_rate_headers(&mut response, lock(&shared.rate).peek());
    } else if free {
        add_rate_headers(&mut response, lock(&shared.rate).peek());
    } else {
        let consumed = lock(&shared.rate).consume();
        match consumed {
            Ok(snapshot) => add_rate_headers(&mut response, snapshot),
            Err(snapshot) => {
                let message = "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated \
                               requests get a higher rate limit. Check out the documentation for more details.)";
                response = error_json(shared.options.rate_limit_status, message);
                add_rate_headers(&mut response, snapshot);
            }
        }
    }
    let status = response.status();
    (response, Some(status))
}

fn etag_matches(if_none_match: Option<&HeaderValue>, etag: Option<&HeaderValue>) -> bool {
    let (Some(wanted), Some(etag)) = (if_none_match.and_then(|v| v.to_str().ok()), etag.and_then(|v| v.to_str().ok()))
    else {
        return false;
    };
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    wanted.split(',').any(|tag| tag.trim() == "*" || opaque(tag) == etag)
}

fn add_rate_headers(response: &mut Response, rate: RateSnapshot) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(rate.limit.saturating_sub(rate.used)));
    headers.insert("x-ratelimit-reset", HeaderValue::from(rate.reset));
    headers.insert("x-ratelimit-used", HeaderValue::from(rate.used));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
}

fn fault_page(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>Unicorn! &middot; GitHub</title></head>\n<body><h1>{} {reason}</h1>\
         <p>This page is taking too long to load.</p></body></html>\n",
        status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

pub(super) fn error_json(status: StatusCode, message: &str) -> Response {
    let body = json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()});
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

/// A 200 with an ETag: from `etag_key` when the body is determined by it, else from the body itself.
pub(super) fn ok_body(body: impl Into<Bytes>, content_type: &str, etag_key: Option<&str>) -> Response {
    let body: Bytes = body.into();
    let etag = format!("W/\"{}\"", etag_key.map_or_else(|| sha1_hex(&body), |key| sha1_hex(key.as_bytes())));
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("content type"));
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("etag"));
    response
}

pub(super) fn json_ok(value: &Value, etag_key: Option<&str>) -> Response {
    ok_body(value.to_string(), "application/json; charset=utf-8", etag_key)
}

pub(super) fn raw_ok(content: Arc<[u8]>, etag_key: &str) -> Response {
    ok_body(Bytes::from_owner(content), "text/plain; charset=utf-8", Some(etag_key))
}

/// Media type asked for with `Accept`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Media {
    Json,
    Raw,
    Sha,
}

pub(super) fn media(headers: &HeaderMap) -> Media {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if accept.contains("vnd.github.raw") || accept.contains("vnd.github.v3.raw") {
        Media::Raw
    } else if accept.contains("vnd.github.sha") || accept.contains("vnd.github.v3.sha") {
        Media::Sha
    } else {
        Media::Json
    }
}
