//! A fake GitHub REST API serving an in-memory repository (the Maltrail snapshot plus test-made commits).
//!
//! [`FakeGitHub::start`] serves a [`FakeRepo`] on `127.0.0.1:0` with the endpoints a trail source needs (commits,
//! git trees and blobs, contents, compare, tarball with its redirect to a download host), and lets tests add
//! commits while it serves, inject faults, play with the rate limit and read the request log.

mod diff;
mod listener;
mod model;
mod routes;
mod server;
pub mod sha1;
mod tarball;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// Not every test crate uses every re-export (same reason as `dead_code` in support/mod.rs).
#[allow(unused_imports)]
pub use diff::{FileChange, FileStatus, diff_files, line_stats};
#[allow(unused_imports)]
pub use model::{
    Change, Commit, CompareError, Comparison, DEFAULT_BRANCH, EntryKind, FakeRepo, FileEntry, SNAPSHOT_COMMIT,
    SNAPSHOT_DATE, TreeEntry,
};
#[allow(unused_imports)]
pub use tarball::ArchivePlan;

use listener::ResettableListener;
use server::{RateState, RequestLog, Shared, lock};

/// How the fake behaves. `FakeOptions::default()` is a generous, fault-free GitHub.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// When set, API requests must carry `Authorization: Bearer <token>` or `token <token>`, else 401.
    pub token: Option<String>,
    /// Requests allowed per rate-limit window (`X-RateLimit-Limit`). Default 100,000.
    pub rate_limit: u32,
    /// Time from a window's first request to its reset (`X-RateLimit-Reset`). Default one hour.
    pub rate_limit_window: Duration,
    /// Status of an answer refused by the primary rate limit (GitHub: 403, sometimes 429). Default 403.
    pub rate_limit_status: StatusCode,
    /// At most this many `files` in a compare or commit answer. Default 300, as GitHub.
    pub compare_file_limit: usize,
    /// At most this many commits in a compare without paging parameters. Default 250, as GitHub.
    pub compare_commit_limit: usize,
    /// At most this many entries in a trees answer before `truncated: true`. Default 100,000, as GitHub.
    pub tree_entry_limit: usize,
    /// At most this many entries in a contents directory listing. Default 1,000, as GitHub.
    pub contents_dir_limit: usize,
    /// Files larger than this come from the contents API without content (`encoding: "none"`). Default 1 MiB.
    pub contents_inline_limit: usize,
    /// Serve the download host (`/_codeload/`, `/_raw/`) from a second listener (another port, so another
    /// "host" for a client deciding whether to forward credentials). Default false: same listener.
    pub separate_download_host: bool,
    /// Path prefix of the API, e.g. `/api/v3` as on GitHub Enterprise. Default empty.
    pub api_path_prefix: String,
    /// Gzip level of tarballs (0-9). Default 1 (`git archive` uses 6): the snapshot's archive takes 0.4 s at 1 and
    /// 2.2 s at 6 in the dev profile (opt-level 1, dependencies 2), 3.6 s and 9 s fully unoptimised.
    pub tarball_gzip_level: u32,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            token: None,
            rate_limit: 100_000,
            rate_limit_window: Duration::from_secs(3600),
            rate_limit_status: StatusCode::FORBIDDEN,
            compare_file_limit: 300,
            compare_commit_limit: 250,
            tree_entry_limit: 100_000,
            contents_dir_limit: 1_000,
            contents_inline_limit: 1024 * 1024,
            separate_download_host: false,
            api_path_prefix: String::new(),
            tarball_gzip_level: 1,
        }
    }
}

/// A failure to inject, see [`FakeGitHub::fail_next`]. Injected failures do not count against the rate limit.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and an HTML body, as GitHub's front end does for 502/503/504.
    Status(StatusCode),
    /// Wait this long, then answer normally (for client timeouts).
    Hang(Duration),
    /// Close the connection with a TCP reset, without any answer.
    ResetConnection,
    /// GitHub's secondary rate limit: `status` (429 or 403) with `Retry-After: retry_after_secs`.
    SecondaryRateLimit { status: StatusCode, retry_after_secs: u64 },
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival order, unique for the fake's lifetime.
    pub seq: u64,
    pub method: String,
    pub path_and_query: String,
    pub authorization: Option<String>,
    pub if_none_match: Option<String>,
    pub accept: Option<String>,
    /// Whether it came through the separate download listener.
    pub on_download_host: bool,
    /// The answer's status; `None` while in flight, after a connection reset, or when the client went away.
    pub status: Option<u16>,
}

/// A running fake GitHub. Dropping it (or [`FakeGitHub::stop`]) stops the listeners and kills open connections.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    stopped: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeGitHub {
    /// Serves `repo` on `127.0.0.1` (a free port), plus a second port for downloads when
    /// `options.separate_download_host`.
    pub async fn start(repo: FakeRepo, mut options: FakeOptions) -> Self {
        let prefix = options.api_path_prefix.trim_matches('/');
        options.api_path_prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0") };
        let api_listener = bind().await;
        let api_addr = api_listener.local_addr().expect("local address");
        let download_listener = if options.separate_download_host { Some(bind().await) } else { None };
        let download_addr: SocketAddr =
            download_listener.as_ref().map_or(api_addr, |l| l.local_addr().expect("local address"));
        let prefix = options.api_path_prefix.clone();
        let rate = RateState { limit: options.rate_limit, window: options.rate_limit_window, used: 0, reset_at: None };
        let shared = Arc::new(Shared {
            repo: Mutex::new(repo),
            api_base: format!("http://{api_addr}{prefix}"),
            download_base: format!("http://{download_addr}"),
            options,
            log: Mutex::new(RequestLog::default()),
            faults: Mutex::new(Vec::new()),
            rate: Mutex::new(rate),
            commit_bodies: Mutex::new(HashMap::new()),
        });
        let stopped = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let separate = download_listener.is_some();
        let serve = |listener: TcpListener, download_host: bool, api: bool, downloads: bool| {
            let app = routes::router(shared.clone(), api, downloads);
            let listener = ResettableListener::new(listener, download_host, stopped.clone());
            tokio::spawn(async move {
                let service = app.into_make_service_with_connect_info::<listener::ConnectionHandle>();
                let _ = axum::serve(listener, service).await;
            })
        };
        tasks.push(serve(api_listener, false, true, !separate));
        if let Some(listener) = download_listener {
            tasks.push(serve(listener, true, false, true));
        }
        Self { shared, stopped, tasks }
    }

    /// `http://127.0.0.1:<port>` plus the API path prefix: the value for `MALTRAIL_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.shared.api_base.clone()
    }

    /// `http://127.0.0.1:<port>` of the download host (the API's own port unless `separate_download_host`).
    pub fn download_base_url(&self) -> String {
        self.shared.download_base.clone()
    }

    /// The repository, locked: read it or add commits while the fake serves. Do not hold it across an `.await`.
    pub fn repo(&self) -> MutexGuard<'_, FakeRepo> {
        lock(&self.shared.repo)
    }

    /// [`FakeRepo::add_commit`] on the served repository; returns the new head sha.
    pub fn add_commit(&self, message: &str, date: &str, changes: impl IntoIterator<Item = Change>) -> String {
        self.repo().add_commit(message, date, changes)
    }

    /// [`FakeRepo::set_ref`] on the served repository.
    pub fn set_ref(&self, name: &str, sha: &str) {
        self.repo().set_ref(name, sha);
    }

    /// The sha `master` points to.
    pub fn head_sha(&self) -> String {
        self.repo().head().sha.clone()
    }

    /// The next `count` requests fail with `fault`.
    pub fn fail_next(&self, count: usize, fault: Fault) {
        self.push_fault(None, count, fault);
    }

    /// The next `count` requests whose path contains `path_contains` (e.g. `"/git/blobs/"`) fail with `fault`.
    pub fn fail_next_matching(&self, path_contains: &str, count: usize, fault: Fault) {
        self.push_fault(Some(path_contains.to_owned()), count, fault);
    }

    fn push_fault(&self, path_contains: Option<String>, remaining: usize, fault: Fault) {
        if remaining > 0 {
            lock(&self.shared.faults).push(server::PendingFault { path_contains, remaining, fault });
        }
    }

    /// Forgets faults not yet used.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request since the start or the last [`FakeGitHub::reset_log`], in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).records.clone()
    }

    /// How many requests [`FakeGitHub::requests`] holds.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).records.len()
    }

    /// Empties the request log.
    pub fn reset_log(&self) {
        lock(&self.shared.log).records.clear();
    }

    /// Sets how many requests are left in the current rate-limit window (0: the next counted request is refused
    /// until `X-RateLimit-Reset`).
    pub fn set_rate_limit_remaining(&self, remaining: u32) {
        lock(&self.shared.rate).set_remaining(remaining);
    }

    /// How many requests are left in the current rate-limit window.
    pub fn rate_limit_remaining(&self) -> u32 {
        lock(&self.shared.rate).remaining()
    }

    /// Stops serving: listeners close and open connections are reset at their next read or write.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        for task in &self.tasks {
            task.abort();
        }
    }
}
