//! A fake OpenCTI platform for tests: its GraphQL API, the queues it declares, a record of calls, injectable faults.
//!
//! What it models (the OpenCTI protocol notes, shared/reference/opencti-protocol.md §1–4, checked against the
//! platform's `domain/connector`, `domain/work` and `database/rabbitmq` sources and pycti 7's GraphQL documents):
//!
//! - POST `/graphql` with `{query, variables, operationName}`. The document is parsed and validated against the
//!   small part of the schema a connector uses ([`schema`]): an unknown field, argument or type, a variable of
//!   the wrong type (`String!` where the platform declares `ID!`), an undefined or unused variable, a variable value
//!   of the wrong JSON type, a missing sub-selection: each is a GraphQL error, as on the platform. Answers carry only
//!   the fields selected, under their aliases.
//! - Authentication: `Authorization: Bearer <token>`; otherwise `AUTH_REQUIRED` (HTTP 200, or 401 by option).
//! - `about`, `registerConnector` (declares the exchanges and queues on the real broker, as the platform does),
//!   `pingConnector` (stores the state unless a reset is pending, like the platform's `connector_state_reset`),
//!   `connector(id)` (queue details read from the broker), `workAdd`, `workEdit { addExpectations toProcessed
//!   toReceived reportExpectation ping delete addDraftContext }`.
//! - Faults: HTTP errors, GraphQL errors, delayed answers, and the whole server going down (connections refused,
//!   open keep-alive connections cut) and coming back on the same port.
//!
//! What it does not: ingest anything (no worker consumes the push queue: tests read it with
//! [`rabbit::drain`](super::rabbit::drain)), fragments, directives, subscriptions, introspection.

mod errors;
mod graphql;
mod listener;
mod operations;
mod queues;
mod records;
mod schema;
mod server;
mod state;
mod timestamps;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

pub use axum::http::StatusCode;
// Not every test crate uses every re-export (same reason as `dead_code` in support/mod.rs).
#[allow(unused_imports)]
pub use records::{Call, ErrorSummary, Outcome, Ping, Work};

use self::listener::{bind_again, port_socket};
use self::server::Server;
use self::state::{FaultRule, Inner, Shared, lock};
use crate::rabbit;

/// The exchange connectors publish to (`push_exchange`).
pub const WORKER_EXCHANGE: &str = "amqp.worker.exchange";
/// The exchange the platform sends connector jobs to (`listen_exchange`).
pub const CONNECTOR_EXCHANGE: &str = "amqp.connector.exchange";
/// The platform's admin user id (`OPENCTI_ADMIN_UUID` default): what registration answers as `connector_user_id`
/// unless [`FakeOptions::connector_user_id`] says otherwise.
pub const DEFAULT_CONNECTOR_USER_ID: &str = "88ec0c6a-13ce-5e39-b486-354fe4a7084f";
/// The platform version `about` answers by default.
pub const DEFAULT_VERSION: &str = "6.8.0";
/// The average message size the fake assumes for `connector_queue_details.messages_size` (bytes), unless a test
/// sets [`FakeOpenCti::set_queue_size_bytes`].
pub const DEFAULT_BYTES_PER_MESSAGE: u64 = 2048;

/// The RabbitMQ connection registration hands out (`config.connection`). The fake itself always declares queues on
/// [`FakeOptions::amqp_uri`]: this is only what the connector is told, so a test can hand out a host name only valid
/// "inside the platform's network" (e.g. `rabbitmq`) and check that `MQ_HOST` overrides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqConnection {
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `vhost`.
    pub vhost: String,
    /// `use_ssl`.
    pub use_ssl: bool,
    /// `user`.
    pub user: String,
    /// `pass`.
    pub pass: String,
}

impl Default for MqConnection {
    fn default() -> Self {
        MqConnection {
            host: "127.0.0.1".into(),
            port: 5672,
            vhost: "/".into(),
            use_ssl: false,
            user: "guest".into(),
            pass: "guest".into(),
        }
    }
}

/// How the fake answers a request without the right token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthFailure {
    /// HTTP 200 with `{"errors": [{"message": "You must be logged in to do this.", "extensions": {"code":
    /// "AUTH_REQUIRED"}}], "data": null}`: what the platform does.
    #[default]
    GraphqlError,
    /// The same body with HTTP 401 (what a reverse proxy in front of the platform may do).
    Http401,
}

/// How to start a [`FakeOpenCti`]. `FakeOptions::default()` suits most tests; change single fields with struct
/// update syntax: `FakeOptions { initial_state: Some(r#"{"last_run": 1}"#.into()), ..FakeOptions::default() }`.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The accepted API token; `None` makes up a random one (read it with [`FakeOpenCti::token`]).
    pub token: Option<String>,
    /// What `about { version }` answers.
    pub version: String,
    /// The RabbitMQ connection registration hands out.
    pub connection: MqConnection,
    /// The state a connector has when it first registers (as if it had run before).
    pub initial_state: Option<String>,
    /// `connector_user_id` in the registration answer (the connector sends it back as `applicant_id`).
    pub connector_user_id: String,
    /// How to answer a request without the right token.
    pub auth_failure: AuthFailure,
    /// The broker the fake declares queues on and reads queue sizes from.
    pub amqp_uri: String,
    /// Assumed average message size for `messages_size` (bytes).
    pub bytes_per_message: u64,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token: None,
            version: DEFAULT_VERSION.into(),
            connection: MqConnection::default(),
            initial_state: None,
            connector_user_id: DEFAULT_CONNECTOR_USER_ID.into(),
            auth_failure: AuthFailure::default(),
            amqp_uri: rabbit::AMQP_URI.into(),
            bytes_per_message: DEFAULT_BYTES_PER_MESSAGE,
        }
    }
}

/// A fault to inject into the next requests (see [`FakeOpenCti::fail_next`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and a short text body (`502 Bad Gateway`), as a proxy or a crashing platform
    /// would. The request has no effect.
    Http(StatusCode),
    /// Answer HTTP 200 with a GraphQL error: `(message, extensions.code)`. The request has no effect.
    GraphqlError(String, String),
    /// Answer this HTTP status with a GraphQL error body, as Apollo does (500) when the platform cannot build a
    /// request's context. The request has no effect.
    GraphqlErrorWithStatus(StatusCode, String),
    /// Process the request (it takes effect), then answer this status instead of the result, as a proxy does when
    /// the platform answered too late (504) or the answer was lost on the way.
    AppliedThen(StatusCode),
    /// Wait this long, then process and answer the request as usual. The request takes effect after the delay even if
    /// the client gave up waiting (as on a slow platform), unless the fake is stopped first.
    Hang(Duration),
}

/// A running fake OpenCTI. Dropping it stops the server and deletes the queues it declared (best effort: see
/// [`Drop`](#impl-Drop-for-FakeOpenCti)); [`stop`](FakeOpenCti::stop) does the same and fails loudly.
pub struct FakeOpenCti {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<Server>>,
    /// While down: a socket bound to the port but not listening, so that connections are refused and no other socket
    /// takes the port (another test's `bind(0)`, or an outgoing connection's ephemeral port).
    reserved_port: Mutex<Option<TcpSocket>>,
    cleaned_up: AtomicBool,
}

impl FakeOpenCti {
    /// Starts the fake on 127.0.0.1 with a random port.
    pub async fn start(options: FakeOptions) -> FakeOpenCti {
        let listener = port_socket(SocketAddr::from(([127, 0, 0, 1], 0)))
            .and_then(|socket| socket.listen(1024))
            .expect("fake OpenCTI: listen on 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake OpenCTI: local address");
        let token = options.token.clone().unwrap_or_else(|| format!("fake-token-{}", uuid::Uuid::new_v4()));
        let shared = Arc::new(Shared {
            options,
            token,
            started: Instant::now(),
            lifetime: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        });
        let server = Server::spawn(shared.clone(), listener);
        FakeOpenCti {
            shared,
            addr,
            server: Mutex::new(Some(server)),
            reserved_port: Mutex::new(None),
            cleaned_up: AtomicBool::new(false),
        }
    }

    /// `http://127.0.0.1:<port>`: what `OPENCTI_URL` should be.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url())
    }

    /// The address the fake listens on (the same after [`set_down`](Self::set_down)`(false)`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `OPENCTI_URL` and `OPENCTI_TOKEN` for a connector talking to this fake.
    pub fn opencti_env(&self) -> [(&'static str, String); 2] {
        [("OPENCTI_URL", self.url()), ("OPENCTI_TOKEN", self.shared.token.clone())]
    }

    /// The accepted API token (`OPENCTI_TOKEN`).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The options it was started with.
    pub fn options(&self) -> &FakeOptions {
        &self.shared.options
    }

    /// `connector_user_id` of the registration answer: the `applicant_id` the connector must put in its messages.
    pub fn connector_user_id(&self) -> &str {
        &self.shared.options.connector_user_id
    }

    /// When the fake started (to time calls: `call.at - fake.started_at()`).
    pub fn started_at(&self) -> Instant {
        self.shared.started
    }

    /// Every call, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls that are `op` (see [`Call::is`]).
    pub fn calls_to(&self, op: &str) -> Vec<Call> {
        self.shared.lock().calls.iter().filter(|c| c.is(op)).cloned().collect()
    }

    /// One line per call, for assertion messages.
    pub fn call_log(&self) -> String {
        let inner = self.shared.lock();
        let mut log = String::new();
        for call in &inner.calls {
            let _ = writeln!(
                log,
                "#{} +{}ms {} auth={} fault={:?} -> {:?}",
                call.seq,
                call.at.duration_since(self.shared.started).as_millis(),
                call.label(),
                call.auth_ok,
                call.fault,
                call.outcome
            );
        }
        log
    }

    /// The `input` of every successful `registerConnector`, in order.
    pub fn registrations(&self) -> Vec<Value> {
        self.shared.lock().registrations.clone()
    }

    /// Every successful `pingConnector`, in order.
    pub fn pings(&self) -> Vec<Ping> {
        self.shared.lock().pings.clone()
    }

    /// Every work, in creation order.
    pub fn works(&self) -> Vec<Work> {
        self.shared.lock().works.clone()
    }

    /// The work with this id.
    pub fn work(&self, id: &str) -> Option<Work> {
        self.shared.lock().works.iter().find(|w| w.id == id).cloned()
    }

    /// The ids of the connectors registered so far.
    pub fn connector_ids(&self) -> Vec<String> {
        self.shared.lock().connectors.keys().cloned().collect()
    }

    /// The platform's copy of the state of the connector registered last (`None` before any registration, or when the
    /// state is null).
    pub fn state(&self) -> Option<String> {
        let inner = self.shared.lock();
        let id = inner.registrations.last()?.get("id")?.as_str()?;
        inner.connectors.get(id)?.state.clone()
    }

    /// The platform's copy of the state of connector `id`.
    pub fn state_of(&self, id: &str) -> Option<String> {
        self.shared.lock().connectors.get(id)?.state.clone()
    }

    /// Simulates a user resetting the state of every registered connector: the platform's copy becomes `new` (the
    /// platform's UI sets `""`) and the next `pingConnector` answers it and keeps it instead of storing the state the
    /// connector sent; the ping after that stores again. (The platform's UI also purges the connector's queues:
    /// [`purge_queues`](Self::purge_queues) does that part.) Panics when no connector has registered yet (use
    /// [`FakeOptions::initial_state`] for that).
    pub fn reset_state(&self, new: Option<String>) {
        let mut inner = self.shared.lock();
        assert!(
            !inner.connectors.is_empty(),
            "fake OpenCTI: reset_state before any registerConnector (use FakeOptions::initial_state)"
        );
        for connector in inner.connectors.values_mut() {
            connector.state = new.clone();
            connector.reset_pending = true;
        }
    }

    /// Empties the push and listen queues of every registered connector, as the platform's "reset state" does.
    pub async fn purge_queues(&self) {
        queues::purge_queues(&self.shared.options.amqp_uri, self.shared.declared_queues()).await;
    }

    /// Marks a work as deleted (a user deleting it in the UI): further `workEdit` on it fail with `WORK_NOT_ALIVE`.
    pub fn delete_work(&self, id: &str) {
        let mut inner = self.shared.lock();
        let work = inner.works.iter_mut().find(|w| w.id == id);
        work.unwrap_or_else(|| panic!("fake OpenCTI: no work `{id}`")).deleted = true;
    }

    /// Overrides `connector_queue_details.messages_size` (bytes); `None` goes back to messages × the assumed average
    /// ([`FakeOptions::bytes_per_message`]). The message count is always the broker's.
    pub fn set_queue_size_bytes(&self, bytes: Option<u64>) {
        self.shared.lock().queue_size_override = bytes;
    }

    /// Injects `fault` into the next `n` requests, whatever they call. (Faults apply to GraphQL requests: a body that
    /// is not one is answered 400 and consumes no fault.)
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared.lock().faults.push(FaultRule { operation: None, remaining: n, fault });
    }

    /// Injects `fault` into the next `n` requests that call `operation` (a root field such as `pingConnector`, or a
    /// `workEdit` field such as `workEdit.toProcessed`); other requests are not affected. Rules apply in the order
    /// they were added.
    pub fn fail_next_op(&self, operation: &str, n: usize, fault: Fault) {
        let rule = FaultRule { operation: Some(operation.to_owned()), remaining: n, fault };
        self.shared.lock().faults.push(rule);
    }

    /// Forgets every pending fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many injected faults have not fired yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.iter().map(|r| r.remaining).sum()
    }

    /// Takes the server down (`true`): nothing listens on the port any more, so connections are refused, and every
    /// open connection (keep-alive ones included) is cut. `false` brings it back on the same port. Records and state
    /// are kept.
    ///
    /// While down, the port stays reserved by a socket bound to it without listening (SO_REUSEADDR and SO_REUSEPORT,
    /// bound before the listener closes): connections to it are refused, yet no other socket can take the port in
    /// the meantime, and coming back up turns that very socket into the listener.
    pub async fn set_down(&self, down: bool) {
        if down {
            let server = lock(&self.server).take();
            if let Some(server) = server {
                server.shutdown().await;
                // Keep the port (bound, not listening: connections are refused) so nothing else takes it.
                *lock(&self.reserved_port) = port_socket(self.addr).ok();
            }
        } else {
            if lock(&self.server).is_some() {
                return;
            }
            let reserved = lock(&self.reserved_port).take();
            let listener = match reserved.map(|socket| socket.listen(1024)) {
                Some(Ok(listener)) => listener,
                _ => bind_again(self.addr).await,
            };
            let server = Server::spawn(self.shared.clone(), listener);
            let previous = lock(&self.server).replace(server);
            if let Some(previous) = previous {
                previous.shutdown().await;
            }
        }
    }

    /// Whether the server is down.
    pub fn is_down(&self) -> bool {
        lock(&self.server).is_none()
    }

    /// Waits until at least `n` calls to `op` have been answered; returns them. Panics with the call log after
    /// `timeout`.
    pub async fn wait_for_calls(&self, op: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let answered: Vec<Call> = self.calls_to(op).into_iter().filter(|c| c.outcome != Outcome::Pending).collect();
            if answered.len() >= n {
                return answered;
            }
            assert!(
                Instant::now() < deadline,
                "fake OpenCTI: {} answered `{op}` calls after {timeout:?}, wanted {n}; calls:\n{}",
                answered.len(),
                self.call_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `condition(self)` holds, polling every 20 ms; panics with `what` and the call log after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, what: &str, mut condition: impl FnMut(&FakeOpenCti) -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "fake OpenCTI: timed out after {timeout:?} waiting for {what}; calls:\n{}",
                self.call_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Errors the fake met talking to RabbitMQ (a test may assert there are none).
    pub fn mq_errors(&self) -> Vec<String> {
        self.shared.lock().mq_errors.clone()
    }

    /// The queues the fake declared (`push_<id>` and `listen_<id>` of every registered connector).
    pub fn declared_queues(&self) -> Vec<String> {
        self.shared.declared_queues()
    }

    /// Stops the server, waits (up to 5 s) for the requests being handled, and deletes the queues it declared; panics
    /// if the broker refuses.
    pub async fn stop(self) {
        self.set_down(true).await;
        self.shared.lifetime.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let queues = self.shared.declared_queues();
        if let Err(e) = rabbit::try_delete_queues(&self.shared.options.amqp_uri, &queues).await {
            // `self` drops while this unwinds, and Drop tries once more.
            panic!("fake OpenCTI: cannot delete the queues it declared ({queues:?}): {e}");
        }
        self.cleaned_up.store(true, Ordering::SeqCst);
    }
}

/// Dropping stops the server at once (the accept task is aborted and open connections are cut) and deletes the
/// declared queues synchronously: `Drop` cannot await, and the test's runtime may be a current-thread one that a
/// blocked `Drop` would starve, so the deletion runs on a short-lived thread with a runtime of its own, joined
/// (bounded by 15 s; see [`rabbit::delete_queues_blocking`]). Errors are printed, not raised: a test that must know
/// calls [`stop`](FakeOpenCti::stop).
impl Drop for FakeOpenCti {
    fn drop(&mut self) {
        self.shared.lifetime.cancel();
        if let Some(server) = lock(&self.server).take() {
            server.connections.cancel();
            server.task.abort();
        }
        // A request being handled on another thread may still be declaring queues: give it a moment (on a
        // current-thread runtime it cannot progress while this blocks; it then finds the fake stopped and declares
        // nothing).
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !self.cleaned_up.swap(true, Ordering::SeqCst) {
            rabbit::delete_queues_blocking(&self.shared.options.amqp_uri, self.shared.declared_queues());
        }
    }
}
