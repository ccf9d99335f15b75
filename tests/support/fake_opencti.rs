//! A fake OpenCTI platform for tests: its GraphQL API, the queues it declares, a record of calls, injectable faults.
//!
//! What it models (the OpenCTI protocol notes, shared/reference/opencti-protocol.md §1–4, checked against the
//! platform's `domain/connector`, `domain/work` and `database/rabbitmq` sources and pycti 7's GraphQL documents):
//!
//! - POST `/graphql` with `{query, variables, operationName}`. The document is parsed and validated against the
//!   small part of the schema a connector uses ([`schema`] below): an unknown field, argument or type, a variable of
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub use axum::http::StatusCode;

use self::gql::{Field, Lit, OpKind, Operation, TypeRef};
use self::schema::Kind;
use super::rabbit;

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
    /// Wait this long, then process and answer the request as usual. The request takes effect after the delay even if
    /// the client gave up waiting (as on a slow platform), unless the fake is stopped first.
    Hang(Duration),
}

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
    /// A GraphQL `errors` array (with HTTP 200, or 401 for [`AuthFailure::Http401`]).
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
    /// The `connector_state` the fake answered (differs from `state` right after [`FakeOpenCti::reset_state`]).
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
    /// Deleted (`workEdit { delete }` or [`FakeOpenCti::delete_work`]): further edits fail with `WORK_NOT_ALIVE`.
    pub deleted: bool,
    /// `addDraftContext`.
    pub draft_context: Option<String>,
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
        let queues = self.shared.declared_queues();
        let connection = rabbit::try_connect_to(&self.shared.options.amqp_uri).await.unwrap_or_else(|e| panic!("{e}"));
        for queue in queues {
            let channel = connection.create_channel().await.expect("open a channel to purge");
            channel
                .queue_purge(queue.as_str().into(), Default::default())
                .await
                .unwrap_or_else(|e| panic!("purge queue `{queue}`: {e}"));
        }
        rabbit::close(connection).await;
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
                let reserved = port_socket(self.addr);
                server.shutdown().await;
                *lock(&self.reserved_port) = reserved.ok();
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

// ---------------------------------------------------------------------------------------------------------------
// State

/// What every request handler shares.
struct Shared {
    options: FakeOptions,
    token: String,
    started: Instant,
    /// Cancelled when the fake stops: delayed ([`Fault::Hang`]) requests are dropped then, and no request declares
    /// queues any more.
    lifetime: CancellationToken,
    /// Requests being handled (cutting the connections does not stop a handler that is running).
    in_flight: AtomicUsize,
    inner: Mutex<Inner>,
}

/// The platform's data, and the records.
#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    connectors: BTreeMap<String, ConnectorRecord>,
    registrations: Vec<Value>,
    pings: Vec<Ping>,
    works: Vec<Work>,
    declared_queues: BTreeSet<String>,
    faults: Vec<FaultRule>,
    queue_size_override: Option<u64>,
    last_work_millis: u64,
    mq_errors: Vec<String>,
}

/// A registered connector.
struct ConnectorRecord {
    /// The last registration input.
    input: Value,
    state: Option<String>,
    /// The platform's `connector_state_reset`.
    reset_pending: bool,
    info: Option<Value>,
    created_at: String,
    updated_at: String,
}

struct FaultRule {
    operation: Option<String>,
    remaining: usize,
    fault: Fault,
}

/// A poisoned lock only means another test thread panicked: the data is still what it was.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn operation_matches(wanted: &str, operation: &str, sub_operation: Option<&str>) -> bool {
    wanted == operation || sub_operation.is_some_and(|sub| wanted == format!("{operation}.{sub}"))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn declared_queues(&self) -> Vec<String> {
        self.lock().declared_queues.iter().cloned().collect()
    }

    fn take_fault(&self, operation: &str, sub_operation: Option<&str>) -> Option<Fault> {
        let mut inner = self.lock();
        let index = inner.faults.iter().position(|rule| {
            rule.remaining > 0
                && rule.operation.as_deref().is_none_or(|wanted| operation_matches(wanted, operation, sub_operation))
        })?;
        let rule = &mut inner.faults[index];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            inner.faults.remove(index);
        }
        Some(fault)
    }

    fn record_call(&self, mut call: Call) -> usize {
        let mut inner = self.lock();
        call.seq = inner.calls.len();
        inner.calls.push(call);
        inner.calls.len() - 1
    }

    fn finish_call(&self, seq: usize, outcome: Outcome) {
        if let Some(call) = self.lock().calls.get_mut(seq) {
            call.outcome = outcome;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP server: an axum app behind a listener whose connections can all be cut at once

struct Server {
    task: JoinHandle<()>,
    /// Cancelling it cuts every connection this server accepted.
    connections: CancellationToken,
}

impl Server {
    fn spawn(shared: Arc<Shared>, listener: TcpListener) -> Server {
        let connections = CancellationToken::new();
        let app = Router::new().route("/graphql", post(graphql_handler)).with_state(shared);
        let listener = KillableListener { inner: listener, connections: connections.clone() };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { task, connections }
    }

    /// Cuts every connection and closes the port; returns once the listener is closed.
    async fn shutdown(self) {
        self.connections.cancel();
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A TCP socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, not listening yet.
fn port_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Listens on `addr` again, retrying for 2 s (only used when the port could not be reserved).
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match port_socket(addr).and_then(|socket| socket.listen(1024)) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("fake OpenCTI: cannot bind {addr} again: {e}"),
        }
    }
}

struct KillableListener {
    inner: TcpListener,
    connections: CancellationToken,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (KillableStream::new(stream, self.connections.clone()), addr);
                }
                // Too many open files and the like: wait, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that fails every read and write once its token is cancelled, so the HTTP server drops the
/// connection, idle keep-alive ones included (the pending read is woken by the cancellation).
struct KillableStream {
    inner: TcpStream,
    token: CancellationToken,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableStream {
    fn new(inner: TcpStream, token: CancellationToken) -> Self {
        let killed = Box::pin(token.clone().cancelled_owned());
        KillableStream { inner, token, killed }
    }

    /// An error once killed; otherwise registers the task to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // `is_cancelled` first: the future must not be polled again once it has completed.
        if self.token.is_cancelled() || self.killed.as_mut().poll(cx).is_ready() {
            Err(io::Error::new(io::ErrorKind::ConnectionAborted, "fake OpenCTI went down"))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Request handling

/// A GraphQL error as the platform formats it: `{message, path?, extensions: {code, data?}, name: code}` (the
/// platform copies the code to `name` for pycti 3 compatibility).
#[derive(Clone, Debug)]
struct GqlError {
    code: String,
    message: String,
    path: Vec<String>,
    data: Option<Value>,
}

impl GqlError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        GqlError { code: code.to_owned(), message: message.into(), path: Vec::new(), data: None }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn at(mut self, path: Vec<String>) -> Self {
        self.path = path;
        self
    }

    fn auth_required() -> Self {
        Self::new("AUTH_REQUIRED", "You must be logged in to do this.")
            .with_data(json!({"http_status": 401, "genre": "TECHNICAL"}))
    }

    fn functional(message: &str, id: &str) -> Self {
        Self::new("FUNCTIONAL_ERROR", message).with_data(json!({"http_status": 400, "genre": "BUSINESS", "id": id}))
    }

    fn work_not_alive() -> Self {
        Self::new("WORK_NOT_ALIVE", "Work is no longer alive, no request can be done within the context of this work")
            .with_data(json!({"http_status": 400, "genre": "BUSINESS"}))
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("GRAPHQL_VALIDATION_FAILED", message)
    }

    fn bad_input(message: impl Into<String>) -> Self {
        Self::new("BAD_USER_INPUT", message)
    }

    fn unknown(message: impl Into<String>) -> Self {
        Self::new("UNKNOWN_ERROR", message).with_data(json!({"http_status": 500, "genre": "TECHNICAL"}))
    }

    fn to_json(&self) -> Value {
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

    fn summary(&self) -> ErrorSummary {
        ErrorSummary { code: self.code.clone(), message: self.message.clone() }
    }
}

/// An answer, before it becomes an HTTP response.
enum Answer {
    Json(StatusCode, Value),
    Text(StatusCode, String),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Json(status, body) => {
                (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
            }
            Answer::Text(status, body) => {
                (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
            }
        }
    }
}

/// A GraphQL-over-HTTP request body.
struct GqlRequest {
    query: String,
    variables: Map<String, Value>,
    operation_name: Option<String>,
}

/// The operation to execute, with every operation of the document (all are validated).
#[derive(Clone)]
struct Prepared {
    operation: Operation,
    all: Vec<Operation>,
}

/// What a request needs once faults are decided (owned: a delayed request runs on a task of its own).
struct Pending {
    seq: usize,
    prepared: Result<Prepared, GqlError>,
    variables: Map<String, Value>,
    auth_ok: bool,
    work_id_header: Option<String>,
}

async fn graphql_handler(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let auth_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    let recorded_headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let work_id_header = recorded_headers.get("opencti-work-id").cloned();
    let mut call = Call {
        seq: 0,
        operation: "<bad request>".into(),
        sub_operation: None,
        operation_name: None,
        query: String::new(),
        variables: json!({}),
        auth_ok,
        headers: recorded_headers,
        fault: None,
        at: Instant::now(),
        wall: SystemTime::now(),
        outcome: Outcome::Pending,
    };

    let request = match read_request(&headers, &body) {
        Ok(request) => request,
        Err(message) => {
            call.query = String::from_utf8_lossy(&body).into_owned();
            call.outcome = Outcome::Http(400);
            shared.record_call(call);
            return Answer::Text(StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let prepared = prepare(&request);
    match &prepared {
        Ok(prepared) => {
            let first = prepared.operation.selection.first();
            call.operation = first.map_or_else(|| "<empty>".into(), |f| f.name.clone());
            call.sub_operation = first
                .filter(|f| f.name == "workEdit")
                .and_then(|f| f.selection.as_ref()?.first())
                .map(|f| f.name.clone());
            call.operation_name = prepared.operation.name.clone();
        }
        Err(_) => call.operation = "<invalid>".into(),
    }
    call.query = request.query;
    call.variables = Value::Object(request.variables.clone());
    let fault = shared.take_fault(&call.operation, call.sub_operation.as_deref());
    call.fault = fault.clone();
    let seq = shared.record_call(call);
    let pending = Pending { seq, prepared, variables: request.variables, auth_ok, work_id_header };

    match fault {
        Some(Fault::Http(status)) => {
            shared.finish_call(seq, Outcome::Http(status.as_u16()));
            let reason = status.canonical_reason().unwrap_or("Error");
            Answer::Text(status, format!("{} {reason}\n", status.as_u16())).into_response()
        }
        Some(Fault::GraphqlError(message, code)) => {
            let error = GqlError::new(&code, message);
            shared.finish_call(seq, Outcome::Errors { http_status: 200, errors: vec![error.summary()] });
            Answer::Json(StatusCode::OK, json!({"errors": [error.to_json()], "data": null})).into_response()
        }
        Some(Fault::Hang(delay)) => {
            // On a task of its own, so the request takes effect even if the client stops waiting.
            let worker = shared.clone();
            let lifetime = shared.lifetime.clone();
            let task = tokio::spawn(async move {
                tokio::select! {
                    _ = lifetime.cancelled() => None,
                    answer = async {
                        tokio::time::sleep(delay).await;
                        answer(&worker, pending).await
                    } => Some(answer),
                }
            });
            match task.await {
                Ok(Some(answer)) => answer.into_response(),
                _ => Answer::Text(StatusCode::SERVICE_UNAVAILABLE, "fake OpenCTI stopped".into()).into_response(),
            }
        }
        None => answer(&shared, pending).await.into_response(),
    }
}

/// Counts a request as being handled until dropped (a handler cancelled mid-way included).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads a GraphQL POST body as Apollo Server does (JSON content type, `query` string, `variables` object).
fn read_request(headers: &HeaderMap, body: &[u8]) -> Result<GqlRequest, String> {
    const BAD_BODY: &str = "POST body missing, invalid Content-Type, or JSON object has no keys.";
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return Err(BAD_BODY.into());
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return Err(BAD_BODY.into());
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) if !query.trim().is_empty() => query,
        _ => return Err("GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.".into()),
    };
    let variables = match object.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(variables)) => variables,
        Some(_) => return Err("`variables` in a POST body should be provided as an object.".into()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err("`operationName` in a POST body must be a string if provided.".into()),
    };
    Ok(GqlRequest { query, variables, operation_name })
}

fn prepare(request: &GqlRequest) -> Result<Prepared, GqlError> {
    let document = gql::parse_document(&request.query)
        .map_err(|message| GqlError::new("GRAPHQL_PARSE_FAILED", format!("Syntax Error: {message}")))?;
    let operation = match &request.operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|op| op.name.as_deref() == Some(name.as_str()))
            .ok_or_else(|| GqlError::bad_input(format!("Unknown operation named \"{name}\".")))?,
        None if document.operations.len() == 1 => &document.operations[0],
        None => {
            return Err(GqlError::bad_input("Must provide operation name if query contains multiple operations."));
        }
    };
    Ok(Prepared { operation: operation.clone(), all: document.operations.clone() })
}

/// Validates, authenticates, executes; records the outcome.
async fn answer(shared: &Shared, pending: Pending) -> Answer {
    let Pending { seq, prepared, variables, auth_ok, work_id_header } = pending;
    let (status, body, errors) = match respond(shared, prepared, &variables, auth_ok, work_id_header).await {
        Ok(body) => {
            let errors: Vec<ErrorSummary> = body["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| ErrorSummary {
                            code: e["extensions"]["code"].as_str().unwrap_or_default().to_owned(),
                            message: e["message"].as_str().unwrap_or_default().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (StatusCode::OK, body, errors)
        }
        Err((status, errors)) => {
            let summaries = errors.iter().map(GqlError::summary).collect();
            let mut body = json!({"errors": errors.iter().map(GqlError::to_json).collect::<Vec<_>>()});
            if errors.iter().any(|e| e.code == "AUTH_REQUIRED") {
                body["data"] = Value::Null;
            }
            (status, body, summaries)
        }
    };
    let outcome =
        if errors.is_empty() { Outcome::Ok } else { Outcome::Errors { http_status: status.as_u16(), errors } };
    shared.finish_call(seq, outcome);
    Answer::Json(status, body)
}

/// The response body, or errors that stop the request before execution (with their HTTP status).
async fn respond(
    shared: &Shared,
    prepared: Result<Prepared, GqlError>,
    variables: &Map<String, Value>,
    auth_ok: bool,
    work_id_header: Option<String>,
) -> Result<Value, (StatusCode, Vec<GqlError>)> {
    let prepared = prepared.map_err(|e| (StatusCode::OK, vec![e]))?;
    let errors: Vec<GqlError> = prepared.all.iter().flat_map(validate_operation).collect();
    if !errors.is_empty() {
        return Err((StatusCode::OK, errors));
    }
    let variables = coerce_variables(&prepared.operation, variables).map_err(|e| (StatusCode::OK, e))?;
    if !auth_ok {
        let status = match shared.options.auth_failure {
            AuthFailure::GraphqlError => StatusCode::OK,
            AuthFailure::Http401 => StatusCode::UNAUTHORIZED,
        };
        return Err((status, vec![GqlError::auth_required()]));
    }
    // The platform refuses any request made in the context of a work (header `opencti-work-id`) that is gone.
    if let Some(work_id) = work_id_header {
        let alive = shared.lock().works.iter().any(|w| w.id == work_id && !w.deleted);
        if !alive {
            return Err((StatusCode::OK, vec![GqlError::work_not_alive()]));
        }
    }
    Ok(execute(shared, &prepared.operation, &variables).await)
}

// ---------------------------------------------------------------------------------------------------------------
// Execution

async fn execute(shared: &Shared, operation: &Operation, variables: &Map<String, Value>) -> Value {
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in &operation.selection {
        let key = field.key().to_owned();
        let value = match field.name.as_str() {
            "__typename" => json!(if operation.kind == OpKind::Mutation { "Mutation" } else { "Query" }),
            "workEdit" => work_edit(shared, field, variables, &mut errors),
            _ => match resolve_root(shared, field, variables).await {
                Ok(value) => value,
                Err(error) => {
                    errors.push(error.at(vec![key.clone()]));
                    Value::Null
                }
            },
        };
        data.insert(key, value);
    }
    if errors.is_empty() {
        json!({"data": data})
    } else {
        json!({"errors": errors.iter().map(GqlError::to_json).collect::<Vec<_>>(), "data": data})
    }
}

async fn resolve_root(shared: &Shared, field: &Field, variables: &Map<String, Value>) -> Result<Value, GqlError> {
    let args = resolve_args(field, variables);
    let selection = field.selection.as_deref().unwrap_or_default();
    match field.name.as_str() {
        "about" => Ok(project(&json!({"version": shared.options.version}), "AppInfo", selection)),
        "connector" => {
            let id = arg_string(&args, "id").unwrap_or_default();
            if !shared.lock().connectors.contains_key(&id) {
                return Ok(Value::Null);
            }
            connector_answer(shared, &id, field).await
        }
        "registerConnector" => {
            let id = register_connector(shared, args.get("input").unwrap_or(&Value::Null)).await?;
            connector_answer(shared, &id, field).await
        }
        "pingConnector" => {
            let id = arg_string(&args, "id").unwrap_or_default();
            let state = args.get("state").and_then(Value::as_str).map(str::to_owned);
            let info = args.get("connectorInfo").filter(|v| !v.is_null()).cloned();
            ping_connector(shared, &id, state, info).await?;
            connector_answer(shared, &id, field).await
        }
        "workAdd" => {
            let connector_id = arg_string(&args, "connectorId").unwrap_or_default();
            let friendly_name = args.get("friendlyName").and_then(Value::as_str).map(str::to_owned);
            let multipart = args.get("isMultiPartWork").and_then(Value::as_bool).unwrap_or(false);
            let work = add_work(shared, &connector_id, friendly_name, multipart)?;
            Ok(project(&work, "Work", selection))
        }
        other => Err(GqlError::validation(format!("unknown operation `{other}` (fake OpenCTI)"))),
    }
}

/// The `Connector` answer of `connector`, `registerConnector` and `pingConnector`. Queue details are read from the
/// broker only when selected.
async fn connector_answer(shared: &Shared, id: &str, field: &Field) -> Result<Value, GqlError> {
    let selection = field.selection.as_deref().unwrap_or_default();
    let queue_details = if selection.iter().any(|f| f.name == "connector_queue_details") {
        queue_details(shared, id).await
    } else {
        Value::Null
    };
    let inner = shared.lock();
    let Some(record) = inner.connectors.get(id) else {
        return Ok(Value::Null);
    };
    let options = &shared.options;
    let input = &record.input;
    let scope = match input.get("scope") {
        Some(Value::Array(scope)) if !scope.is_empty() => Value::Array(scope.clone()),
        Some(Value::String(scope)) if !scope.is_empty() => json!([scope]),
        _ => Value::Null,
    };
    let connection = &options.connection;
    let full = json!({
        "id": id,
        "name": input.get("name").cloned().unwrap_or(Value::Null),
        "active": true,
        "auto": input.get("auto").cloned().unwrap_or(Value::Null),
        "only_contextual": input.get("only_contextual").cloned().unwrap_or(Value::Null),
        "playbook_compatible": input.get("playbook_compatible").cloned().unwrap_or(json!(false)),
        "connector_type": input.get("type").cloned().unwrap_or(Value::Null),
        "connector_scope": scope,
        "connector_state": record.state,
        "connector_state_reset": record.reset_pending,
        "connector_user_id": options.connector_user_id,
        "connector_queue_details": queue_details,
        "connector_info": record.info,
        "config": {
            "connection": {
                "host": connection.host,
                "vhost": connection.vhost,
                "use_ssl": connection.use_ssl,
                "port": connection.port,
                "user": connection.user,
                "pass": connection.pass,
            },
            "s3": {
                "endpoint": "localhost",
                "port": 9000,
                "use_ssl": false,
                "bucket_name": "opencti-bucket",
                "bucket_region": "us-east-1",
                "access_key": "ChangeMe",
                "secret_key": "ChangeMe",
            },
            "listen": format!("listen_{id}"),
            "listen_routing": format!("listen_routing_{id}"),
            "listen_exchange": CONNECTOR_EXCHANGE,
            "push": format!("push_{id}"),
            "push_routing": format!("push_routing_{id}"),
            "push_exchange": WORKER_EXCHANGE,
            "listen_callback_uri": input.get("listen_callback_uri").cloned().unwrap_or(Value::Null),
            "dead_letter_routing": "listen_routing_too-large-bundle",
        },
        "jwks": null,
        "built_in": false,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    });
    Ok(project(&full, "Connector", selection))
}

/// `{messages_number, messages_size}` as the platform computes them: messages in `push_<id>` plus `listen_<id>` (the
/// platform sums both); size from [`FakeOpenCti::set_queue_size_bytes`] or messages × the assumed average. A broker
/// error counts as empty queues, as on the platform (and is recorded in `mq_errors`).
async fn queue_details(shared: &Shared, id: &str) -> Value {
    let counted = async {
        let connection = rabbit::try_connect_to(&shared.options.amqp_uri).await?;
        let push = rabbit::try_message_count(&connection, &format!("push_{id}")).await;
        let listen = rabbit::try_message_count(&connection, &format!("listen_{id}")).await;
        rabbit::close(connection).await;
        Ok::<u64, String>(u64::from(push?.unwrap_or(0)) + u64::from(listen?.unwrap_or(0)))
    }
    .await;
    let messages = counted.unwrap_or_else(|e| {
        shared.lock().mq_errors.push(format!("queue details of {id}: {e}"));
        0
    });
    let size = shared.lock().queue_size_override.unwrap_or(messages * shared.options.bytes_per_message);
    json!({"messages_number": messages, "messages_size": size})
}

async fn register_connector(shared: &Shared, input: &Value) -> Result<String, GqlError> {
    let Some(object) = input.as_object() else {
        return Err(GqlError::unknown("registerConnector needs an `input` (fake OpenCTI)"));
    };
    let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = object.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = object.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let scope: Vec<String> = match object.get("scope") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(item)) => vec![item.clone()],
        _ => Vec::new(),
    };
    ensure_queues(shared, &id, &name, &kind, &scope).await?;
    let now = iso8601(SystemTime::now());
    let mut inner = shared.lock();
    let initial_state = shared.options.initial_state.clone();
    let record = inner.connectors.entry(id.clone()).or_insert_with(|| ConnectorRecord {
        input: Value::Null,
        state: initial_state,
        reset_pending: false,
        info: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    record.input = input.clone();
    record.updated_at = now;
    inner.registrations.push(input.clone());
    Ok(id)
}

async fn ping_connector(shared: &Shared, id: &str, state: Option<String>, info: Option<Value>) -> Result<(), GqlError> {
    let (name, kind, scope) = {
        let inner = shared.lock();
        let record = inner
            .connectors
            .get(id)
            .ok_or_else(|| GqlError::functional("No connector found with the specified ID", id))?;
        let text = |key: &str| record.input.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let scope = record
            .input
            .get("scope")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        (text("name"), text("type"), scope)
    };
    // The platform re-declares the queues on every ping ("Ensure queue are correctly setup").
    ensure_queues(shared, id, &name, &kind, &scope).await?;
    let now = iso8601(SystemTime::now());
    let mut inner = shared.lock();
    let record = inner
        .connectors
        .get_mut(id)
        .ok_or_else(|| GqlError::functional("No connector found with the specified ID", id))?;
    if record.reset_pending {
        record.reset_pending = false;
    } else {
        record.state = state.clone();
    }
    if info.is_some() {
        record.info = info.clone();
    }
    record.updated_at = now;
    let answered_state = record.state.clone();
    inner.pings.push(Ping { id: id.to_owned(), state, connector_info: info, answered_state });
    Ok(())
}

/// Declares what the platform's `registerConnectorQueues` declares, recording the queues for cleanup first.
async fn ensure_queues(shared: &Shared, id: &str, name: &str, kind: &str, scope: &[String]) -> Result<(), GqlError> {
    if shared.lifetime.is_cancelled() {
        return Err(GqlError::unknown("fake OpenCTI is stopped"));
    }
    {
        let mut inner = shared.lock();
        inner.declared_queues.insert(format!("push_{id}"));
        inner.declared_queues.insert(format!("listen_{id}"));
    }
    declare_connector_queues(&shared.options.amqp_uri, id, name, kind, scope).await.map_err(|e| {
        let message = format!("fake OpenCTI could not declare the queues of connector {id} on RabbitMQ: {e}");
        // Also on stderr: the connector under test may turn the GraphQL error into something vaguer.
        eprintln!("{message}");
        shared.lock().mq_errors.push(e);
        GqlError::unknown(message)
    })
}

/// Exchanges `amqp.connector.exchange` and `amqp.worker.exchange` (direct, durable); queue `listen_<id>` bound to the
/// first with `listen_routing_<id>`; queue `push_<id>` bound to the second with `push_routing_<id>`; both durable,
/// with the platform's arguments (`name`, `config {id, type, scope}`, `x-queue-type: classic`).
async fn declare_connector_queues(uri: &str, id: &str, name: &str, kind: &str, scope: &[String]) -> Result<(), String> {
    let connection = rabbit::try_connect_to(uri).await?;
    let declared = async {
        let channel = connection.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
        let exchange_options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        for exchange in [CONNECTOR_EXCHANGE, WORKER_EXCHANGE] {
            channel
                .exchange_declare(exchange.into(), ExchangeKind::Direct, exchange_options, FieldTable::default())
                .await
                .map_err(|e| format!("declare exchange {exchange}: {e}"))?;
        }
        let queue_options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let bindings = [
            (format!("listen_{id}"), CONNECTOR_EXCHANGE, format!("listen_routing_{id}")),
            (format!("push_{id}"), WORKER_EXCHANGE, format!("push_routing_{id}")),
        ];
        for (queue, exchange, routing_key) in bindings {
            channel
                .queue_declare(queue.as_str().into(), queue_options, queue_arguments(id, name, kind, scope))
                .await
                .map_err(|e| format!("declare queue {queue}: {e}"))?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("bind queue {queue}: {e}"))?;
        }
        Ok(())
    }
    .await;
    rabbit::close(connection).await;
    declared
}

fn queue_arguments(id: &str, name: &str, kind: &str, scope: &[String]) -> FieldTable {
    let scope: Vec<AMQPValue> = scope.iter().map(|s| AMQPValue::LongString(s.as_str().into())).collect();
    let mut config = FieldTable::default();
    config.insert("id".into(), AMQPValue::LongString(id.into()));
    config.insert("type".into(), AMQPValue::LongString(kind.into()));
    config.insert("scope".into(), AMQPValue::FieldArray(FieldArray::from(scope)));
    let mut arguments = FieldTable::default();
    arguments.insert("name".into(), AMQPValue::LongString(name.into()));
    arguments.insert("config".into(), AMQPValue::FieldTable(config));
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
    arguments
}

fn add_work(
    shared: &Shared,
    connector_id: &str,
    friendly_name: Option<String>,
    multipart: bool,
) -> Result<Value, GqlError> {
    let mut inner = shared.lock();
    if !inner.connectors.contains_key(connector_id) {
        return Err(GqlError::functional("No connector found with the specified ID", connector_id));
    }
    // The platform's ids: `work_<connector id>_<ISO timestamp>`; kept unique by moving on 1 ms when two collide.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let millis = u64::try_from(now).unwrap_or(u64::MAX).max(inner.last_work_millis + 1);
    inner.last_work_millis = millis;
    let id = format!("work_{connector_id}_{}", iso8601_millis(millis));
    inner.works.push(Work {
        id: id.clone(),
        connector_id: connector_id.to_owned(),
        friendly_name: friendly_name.clone(),
        is_multipart: multipart,
        expectations: 0,
        expectation_calls: Vec::new(),
        completed_number: 0,
        processed: false,
        processed_calls: 0,
        in_error: false,
        message: None,
        received_messages: Vec::new(),
        errors: Vec::new(),
        status: "progress".into(),
        pings: 0,
        deleted: false,
        draft_context: None,
    });
    Ok(json!({"id": id, "name": friendly_name, "status": "progress"}))
}

/// `workEdit(id) { … }`: every selected field runs in order; each answers the work id.
fn work_edit(shared: &Shared, field: &Field, variables: &Map<String, Value>, errors: &mut Vec<GqlError>) -> Value {
    let args = resolve_args(field, variables);
    let work_id = arg_string(&args, "id").unwrap_or_default();
    let mut answer = Map::new();
    for edit in field.selection.as_deref().unwrap_or_default() {
        let value = match edit_work(shared, &work_id, edit, variables) {
            Ok(value) => value,
            Err(error) => {
                errors.push(error.at(vec![field.key().to_owned(), edit.key().to_owned()]));
                Value::Null
            }
        };
        answer.insert(edit.key().to_owned(), value);
    }
    Value::Object(answer)
}

fn edit_work(shared: &Shared, work_id: &str, edit: &Field, variables: &Map<String, Value>) -> Result<Value, GqlError> {
    if edit.name == "__typename" {
        return Ok(json!("WorkEditMutations"));
    }
    let args = resolve_args(edit, variables);
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut inner = shared.lock();
    let work = inner.works.iter_mut().find(|w| w.id == work_id && !w.deleted).ok_or_else(GqlError::work_not_alive)?;
    match edit.name.as_str() {
        "addExpectations" => {
            let n = args.get("expectations").and_then(Value::as_i64).ok_or_else(|| {
                GqlError::bad_input("addExpectations without a number of `expectations` (rejected by the fake OpenCTI)")
            })?;
            work.expectations += n;
            work.expectation_calls.push(n);
        }
        "toProcessed" => {
            work.processed = true;
            work.processed_calls += 1;
            work.message = text("message");
            work.in_error = args.get("inError").and_then(Value::as_bool).unwrap_or(false);
            // The platform's `updateProcessedTime`: complete when every expectation is already reported.
            if work.completed_number >= work.expectations {
                work.status = "complete".into();
            }
        }
        "toReceived" => work.received_messages.push(text("message")),
        "reportExpectation" => {
            work.completed_number += 1;
            if let Some(error) = args.get("error").filter(|e| !e.is_null()) {
                work.errors.push(error.clone());
            }
            // The platform's `reportExpectation`: a multipart work completes only once processed.
            if (work.processed || !work.is_multipart) && work.completed_number >= work.expectations {
                work.status = "complete".into();
            }
        }
        "ping" => work.pings += 1,
        "delete" => work.deleted = true,
        "addDraftContext" => work.draft_context = text("draftContext"),
        other => return Err(GqlError::validation(format!("unknown operation `workEdit.{other}` (fake OpenCTI)"))),
    }
    Ok(json!(work_id))
}

/// The arguments of a field, variables substituted (an absent variable leaves its argument out).
fn resolve_args(field: &Field, variables: &Map<String, Value>) -> Map<String, Value> {
    field.args.iter().filter_map(|(name, lit)| Some((name.clone(), lit_to_json(lit, variables)?))).collect()
}

fn lit_to_json(lit: &Lit, variables: &Map<String, Value>) -> Option<Value> {
    Some(match lit {
        Lit::Var(name) => return variables.get(name).cloned(),
        Lit::Int(i) => json!(i),
        Lit::Float(f) => json!(f),
        Lit::Str(s) | Lit::Enum(s) => json!(s),
        Lit::Bool(b) => json!(b),
        Lit::Null => Value::Null,
        Lit::List(items) => {
            Value::Array(items.iter().map(|item| lit_to_json(item, variables).unwrap_or(Value::Null)).collect())
        }
        Lit::Object(entries) => Value::Object(
            entries.iter().filter_map(|(key, value)| Some((key.clone(), lit_to_json(value, variables)?))).collect(),
        ),
    })
}

/// A string or integer argument as a string (IDs may come as either).
fn arg_string(args: &Map<String, Value>, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Keeps only the selected fields of `value` (of GraphQL type `type_name`), under their response keys.
fn project(value: &Value, type_name: &str, selection: &[Field]) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, type_name, selection)).collect()),
        Value::Object(map) => {
            let definitions = match schema::kind(type_name) {
                Some(Kind::Object(definitions)) => definitions,
                _ => &[],
            };
            let mut out = Map::new();
            for field in selection {
                let projected = if field.name == "__typename" {
                    json!(type_name)
                } else {
                    let raw = map.get(&field.name).cloned().unwrap_or(Value::Null);
                    let definition = definitions.iter().find(|d| d.name == field.name);
                    match (&field.selection, definition) {
                        (Some(selection), Some(definition)) => {
                            project(&raw, TypeRef::schema(definition.ty).named(), selection)
                        }
                        _ => raw,
                    }
                };
                out.insert(field.key().to_owned(), projected);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Validation and variable coercion (the graphql-js rules a connector can trip over)

struct Validator<'a> {
    operation: &'a Operation,
    errors: Vec<GqlError>,
    used: BTreeSet<String>,
}

fn validate_operation(operation: &Operation) -> Vec<GqlError> {
    let mut validator = Validator { operation, errors: Vec::new(), used: BTreeSet::new() };
    validator.run();
    validator.errors
}

impl Validator<'_> {
    fn error(&mut self, message: String) {
        self.errors.push(GqlError::validation(message));
    }

    fn run(&mut self) {
        let operation = self.operation;
        let mut seen = BTreeSet::new();
        for definition in &operation.var_defs {
            if !seen.insert(definition.name.as_str()) {
                self.error(format!("There can be only one variable named \"${}\".", definition.name));
            }
            match schema::kind(definition.ty.named()) {
                None => self.error(format!("Unknown type \"{}\".", definition.ty.named())),
                Some(Kind::Object(_)) => self.error(format!(
                    "Variable \"${}\" cannot be non-input type \"{}\".",
                    definition.name, definition.ty
                )),
                Some(_) => {
                    if let Some(default) = &definition.default {
                        self.check_value(default, &definition.ty);
                    }
                }
            }
        }
        let root = match operation.kind {
            OpKind::Query => "Query",
            OpKind::Mutation => "Mutation",
            OpKind::Subscription => {
                self.error("Schema is not configured to execute subscription operation.".into());
                return;
            }
        };
        self.check_selection(root, &operation.selection);
        for definition in &operation.var_defs {
            if !self.used.contains(&definition.name) {
                let message = match &operation.name {
                    Some(name) => format!("Variable \"${}\" is never used in operation \"{name}\".", definition.name),
                    None => format!("Variable \"${}\" is never used.", definition.name),
                };
                self.error(message);
            }
        }
    }

    fn check_selection(&mut self, parent: &str, fields: &[Field]) {
        let Some(Kind::Object(definitions)) = schema::kind(parent) else {
            return;
        };
        for field in fields {
            if field.name == "__typename" {
                if field.selection.is_some() || !field.args.is_empty() {
                    self.error("Field \"__typename\" takes no arguments and no selection.".into());
                }
                continue;
            }
            let Some(definition) = definitions.iter().find(|d| d.name == field.name) else {
                let hint = if matches!(parent, "Query" | "Mutation" | "WorkEditMutations") {
                    " (fake OpenCTI: unknown operation)"
                } else {
                    ""
                };
                self.error(format!("Cannot query field \"{}\" on type \"{parent}\".{hint}", field.name));
                continue;
            };
            for (name, value) in &field.args {
                match definition.args.iter().find(|(arg, _)| arg == name) {
                    None => self.error(format!("Unknown argument \"{name}\" on field \"{parent}.{}\".", field.name)),
                    Some((_, ty)) => self.check_value(value, &TypeRef::schema(ty)),
                }
            }
            for (name, ty) in definition.args {
                if ty.ends_with('!') && !field.args.iter().any(|(arg, _)| arg == name) {
                    self.error(format!(
                        "Field \"{}\" argument \"{name}\" of type \"{ty}\" is required, but it was not provided.",
                        field.name
                    ));
                }
            }
            let field_type = TypeRef::schema(definition.ty);
            let is_object = matches!(schema::kind(field_type.named()), Some(Kind::Object(_)));
            match (&field.selection, is_object) {
                (None, true) => self.error(format!(
                    "Field \"{}\" of type \"{field_type}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                    field.name, field.name
                )),
                (Some(selection), true) => self.check_selection(field_type.named(), selection),
                (Some(_), false) => self.error(format!(
                    "Field \"{}\" must not have a selection since type \"{field_type}\" has no subfields.",
                    field.name
                )),
                (None, false) => {}
            }
        }
    }

    /// Checks a literal (or a variable) used where `expected` is expected.
    fn check_value(&mut self, value: &Lit, expected: &TypeRef) {
        if let Lit::Var(name) = value {
            self.used.insert(name.clone());
            let operation = self.operation;
            match operation.var_defs.iter().find(|d| &d.name == name) {
                None => {
                    let message = match &operation.name {
                        Some(op) => format!("Variable \"${name}\" is not defined by operation \"{op}\"."),
                        None => format!("Variable \"${name}\" is not defined."),
                    };
                    self.error(message);
                }
                Some(definition) => {
                    let has_default = definition.default.as_ref().is_some_and(|d| *d != Lit::Null);
                    if !gql::usage_allowed(&definition.ty, has_default, expected) {
                        self.error(format!(
                            "Variable \"${name}\" of type \"{}\" used in position expecting type \"{expected}\".",
                            definition.ty
                        ));
                    }
                }
            }
            return;
        }
        match expected {
            TypeRef::NonNull(inner) => {
                if *value == Lit::Null {
                    self.error(format!("Expected value of type \"{expected}\", found null."));
                } else {
                    self.check_value(value, inner);
                }
            }
            TypeRef::List(inner) => match value {
                Lit::List(items) => items.iter().for_each(|item| self.check_value(item, inner)),
                Lit::Null => {}
                other => self.check_value(other, inner),
            },
            TypeRef::Named(name) => {
                if *value == Lit::Null {
                    return;
                }
                let fits = match (schema::kind(name), value) {
                    (_, Lit::List(_)) => false,
                    (Some(Kind::Scalar), value) => scalar_accepts_literal(name, value),
                    (Some(Kind::Enum(values)), Lit::Enum(v)) => values.contains(&v.as_str()),
                    (Some(Kind::Input(fields)), Lit::Object(entries)) => {
                        for (key, item) in entries {
                            match fields.iter().find(|(field, _)| field == key) {
                                None => self.error(format!("Field \"{key}\" is not defined by type \"{name}\".")),
                                Some((_, ty)) => self.check_value(item, &TypeRef::schema(ty)),
                            }
                        }
                        for (field, ty) in fields {
                            if ty.ends_with('!') && !entries.iter().any(|(key, _)| key == field) {
                                self.error(format!(
                                    "Field \"{name}.{field}\" of required type \"{ty}\" was not provided."
                                ));
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if !fits {
                    self.error(format!("Expected value of type \"{name}\", found {}.", gql::lit_text(value)));
                }
            }
        }
    }
}

fn scalar_accepts_literal(scalar: &str, value: &Lit) -> bool {
    match (scalar, value) {
        ("Int", Lit::Int(i)) => i32::try_from(*i).is_ok(),
        ("Float", Lit::Int(_) | Lit::Float(_)) => true,
        ("String", Lit::Str(_)) | ("ID", Lit::Str(_) | Lit::Int(_)) | ("Boolean", Lit::Bool(_)) => true,
        ("DateTime", Lit::Str(s)) => is_datetime(s),
        _ => false,
    }
}

/// Checks the `variables` against the operation's definitions (types, required ones, defaults), as graphql-js does
/// before executing; returns the coerced values.
fn coerce_variables(operation: &Operation, provided: &Map<String, Value>) -> Result<Map<String, Value>, Vec<GqlError>> {
    let mut coerced = Map::new();
    let mut errors = Vec::new();
    for definition in &operation.var_defs {
        let name = &definition.name;
        match provided.get(name) {
            None => {
                if let Some(default) = &definition.default {
                    coerced.insert(name.clone(), lit_to_json(default, &Map::new()).unwrap_or(Value::Null));
                } else if definition.ty.is_non_null() {
                    errors.push(GqlError::bad_input(format!(
                        "Variable \"${name}\" of required type \"{}\" was not provided.",
                        definition.ty
                    )));
                }
            }
            Some(Value::Null) if definition.ty.is_non_null() => errors.push(GqlError::bad_input(format!(
                "Variable \"${name}\" of non-null type \"{}\" must not be null.",
                definition.ty
            ))),
            Some(value) => match coerce_value(value, &definition.ty) {
                Ok(value) => {
                    coerced.insert(name.clone(), value);
                }
                Err(reason) => errors
                    .push(GqlError::bad_input(format!("Variable \"${name}\" got invalid value {value}; {reason}"))),
            },
        }
    }
    if errors.is_empty() { Ok(coerced) } else { Err(errors) }
}

fn coerce_value(value: &Value, ty: &TypeRef) -> Result<Value, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if value.is_null() {
                Err(format!("Expected non-nullable type \"{ty}\" not to be null."))
            } else {
                coerce_value(value, inner)
            }
        }
        _ if value.is_null() => Ok(Value::Null),
        TypeRef::List(inner) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| coerce_value(item, inner).map_err(|e| format!("{e} At index {i}.")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            single => Ok(Value::Array(vec![coerce_value(single, inner)?])),
        },
        TypeRef::Named(name) => match schema::kind(name) {
            Some(Kind::Scalar) => coerce_scalar(name, value),
            Some(Kind::Enum(values)) => match value.as_str() {
                Some(v) if values.contains(&v) => Ok(value.clone()),
                _ => Err(format!("Value {value} does not exist in \"{name}\" enum.")),
            },
            Some(Kind::Input(fields)) => {
                let Value::Object(object) = value else {
                    return Err(format!("Expected type \"{name}\" to be an object."));
                };
                let mut out = Map::new();
                for (key, item) in object {
                    let Some((_, field_type)) = fields.iter().find(|(field, _)| field == key) else {
                        return Err(format!("Field \"{key}\" is not defined by type \"{name}\"."));
                    };
                    let item =
                        coerce_value(item, &TypeRef::schema(field_type)).map_err(|e| format!("{e} At \"{key}\"."))?;
                    out.insert(key.clone(), item);
                }
                for (field, field_type) in fields {
                    if field_type.ends_with('!') && object.get(*field).is_none_or(Value::is_null) {
                        return Err(format!("Field \"{field}\" of required type \"{field_type}\" was not provided."));
                    }
                }
                Ok(Value::Object(out))
            }
            Some(Kind::Object(_)) | None => Err(format!("\"{name}\" is not an input type.")),
        },
    }
}

fn coerce_scalar(name: &str, value: &Value) -> Result<Value, String> {
    let fits = match name {
        "String" => value.is_string(),
        "ID" => value.is_string() || value.is_i64() || value.is_u64(),
        "Int" => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        "Float" => value.is_number(),
        "Boolean" => value.is_boolean(),
        "DateTime" => value.as_str().is_some_and(is_datetime),
        _ => false,
    };
    if !fits {
        return Err(format!("{name} cannot represent value: {value}"));
    }
    Ok(match (name, value) {
        ("ID", Value::Number(n)) => json!(n.to_string()),
        _ => value.clone(),
    })
}

/// RFC 3339 date-time (`2024-05-01T12:00:00Z`, optional fraction, `Z` or `±HH:MM`), as the platform's DateTime scalar
/// wants it.
fn is_datetime(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|b| b.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10)) {
        return false;
    }
    if !((at(10, b'T') || at(10, b't')) && digits(11..13) && at(13, b':') && digits(14..16) && at(16, b':')) {
        return false;
    }
    if !digits(17..19) {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match bytes.get(i) {
        Some(b'Z' | b'z') => i + 1 == bytes.len(),
        Some(b'+' | b'-') => digits(i + 1..i + 3) && at(i + 3, b':') && digits(i + 4..i + 6) && i + 6 == bytes.len(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Time

fn iso8601(time: SystemTime) -> String {
    let millis = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    iso8601_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (the platform's `now()`).
fn iso8601_millis(millis: u64) -> String {
    let seconds = millis / 1000;
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

// ---------------------------------------------------------------------------------------------------------------
// Schema: the part of OpenCTI's schema a connector uses

mod schema {
    /// A field of an object type: name, type, arguments (name, type).
    pub struct FieldDef {
        pub name: &'static str,
        pub ty: &'static str,
        pub args: &'static [(&'static str, &'static str)],
    }

    const fn field(name: &'static str, ty: &'static str) -> FieldDef {
        FieldDef { name, ty, args: &[] }
    }

    const fn with_args(
        name: &'static str,
        args: &'static [(&'static str, &'static str)],
        ty: &'static str,
    ) -> FieldDef {
        FieldDef { name, ty, args }
    }

    /// What a named type is.
    pub enum Kind {
        Scalar,
        Enum(&'static [&'static str]),
        Object(&'static [FieldDef]),
        /// An input object: fields (name, type).
        Input(&'static [(&'static str, &'static str)]),
    }

    const QUERY: &[FieldDef] = &[field("about", "AppInfo"), with_args("connector", &[("id", "String!")], "Connector")];

    const MUTATION: &[FieldDef] = &[
        with_args("registerConnector", &[("input", "RegisterConnectorInput")], "Connector"),
        with_args(
            "pingConnector",
            &[("id", "ID!"), ("state", "String"), ("connectorInfo", "ConnectorInfoInput")],
            "Connector",
        ),
        with_args(
            "workAdd",
            &[("connectorId", "String!"), ("friendlyName", "String"), ("isMultiPartWork", "Boolean")],
            "Work",
        ),
        with_args("workEdit", &[("id", "ID!")], "WorkEditMutations"),
    ];

    const APP_INFO: &[FieldDef] = &[field("version", "String!")];

    const CONNECTOR: &[FieldDef] = &[
        field("id", "ID!"),
        field("name", "String!"),
        field("active", "Boolean"),
        field("auto", "Boolean"),
        field("only_contextual", "Boolean"),
        field("playbook_compatible", "Boolean"),
        field("connector_type", "String"),
        field("connector_scope", "[String]"),
        field("connector_state", "String"),
        field("connector_state_reset", "Boolean"),
        field("connector_user_id", "ID"),
        field("connector_queue_details", "ConnectorQueueDetails!"),
        field("connector_info", "ConnectorInfo"),
        field("config", "ConnectorConfig"),
        field("jwks", "String"),
        field("built_in", "Boolean"),
        field("created_at", "DateTime"),
        field("updated_at", "DateTime"),
    ];

    const CONNECTOR_CONFIG: &[FieldDef] = &[
        field("connection", "RabbitMQConnection!"),
        field("s3", "S3Connection"),
        field("listen", "String!"),
        field("listen_routing", "String"),
        field("listen_exchange", "String!"),
        field("push", "String!"),
        field("push_routing", "String"),
        field("push_exchange", "String!"),
        field("listen_callback_uri", "String"),
        field("dead_letter_routing", "String"),
    ];

    const RABBITMQ_CONNECTION: &[FieldDef] = &[
        field("host", "String!"),
        field("vhost", "String!"),
        field("use_ssl", "Boolean!"),
        field("port", "Int!"),
        field("user", "String!"),
        field("pass", "String!"),
    ];

    const S3_CONNECTION: &[FieldDef] = &[
        field("endpoint", "String"),
        field("port", "Int"),
        field("use_ssl", "Boolean"),
        field("bucket_name", "String"),
        field("bucket_region", "String"),
        field("access_key", "String"),
        field("secret_key", "String"),
    ];

    const QUEUE_DETAILS: &[FieldDef] = &[field("messages_number", "Float!"), field("messages_size", "Float!")];

    const CONNECTOR_INFO: &[FieldDef] = &[
        field("run_and_terminate", "Boolean"),
        field("buffering", "Boolean"),
        field("queue_threshold", "Float"),
        field("queue_messages_size", "Float"),
        field("next_run_datetime", "DateTime"),
        field("last_run_datetime", "DateTime"),
    ];

    const WORK: &[FieldDef] = &[field("id", "ID!"), field("name", "String"), field("status", "String")];

    const WORK_EDIT: &[FieldDef] = &[
        with_args("addExpectations", &[("expectations", "Int")], "ID"),
        with_args("toProcessed", &[("message", "String"), ("inError", "Boolean")], "ID"),
        with_args("toReceived", &[("message", "String")], "ID"),
        with_args("reportExpectation", &[("error", "WorkErrorInput")], "ID"),
        field("ping", "ID"),
        field("delete", "ID"),
        with_args("addDraftContext", &[("draftContext", "String")], "ID"),
    ];

    const REGISTER_CONNECTOR_INPUT: &[(&str, &str)] = &[
        ("id", "ID!"),
        ("name", "String!"),
        ("type", "ConnectorType!"),
        ("scope", "[String]"),
        ("auto", "Boolean"),
        ("auto_update", "Boolean"),
        ("only_contextual", "Boolean"),
        ("playbook_compatible", "Boolean"),
        ("enrichment_resolution", "String"),
        ("listen_callback_uri", "String"),
        ("version", "String"),
        ("slug", "String"),
        ("xtm_one_intent", "String"),
    ];

    const CONNECTOR_INFO_INPUT: &[(&str, &str)] = &[
        ("run_and_terminate", "Boolean"),
        ("buffering", "Boolean"),
        ("queue_threshold", "Float"),
        ("queue_messages_size", "Float"),
        ("next_run_datetime", "DateTime"),
        ("last_run_datetime", "DateTime"),
    ];

    const WORK_ERROR_INPUT: &[(&str, &str)] = &[("error", "String"), ("source", "String")];

    const CONNECTOR_TYPES: &[&str] = &[
        "EXTERNAL_IMPORT",
        "INTERNAL_ENRICHMENT",
        "INTERNAL_IMPORT_FILE",
        "INTERNAL_EXPORT_FILE",
        "INTERNAL_ANALYSIS",
        "INTERNAL_INGESTION",
        "STREAM",
    ];

    /// The kind of a named type, `None` for a type the schema does not have.
    pub fn kind(name: &str) -> Option<Kind> {
        Some(match name {
            "String" | "ID" | "Int" | "Float" | "Boolean" | "DateTime" => Kind::Scalar,
            "ConnectorType" => Kind::Enum(CONNECTOR_TYPES),
            "Query" => Kind::Object(QUERY),
            "Mutation" => Kind::Object(MUTATION),
            "AppInfo" => Kind::Object(APP_INFO),
            "Connector" => Kind::Object(CONNECTOR),
            "ConnectorConfig" => Kind::Object(CONNECTOR_CONFIG),
            "RabbitMQConnection" => Kind::Object(RABBITMQ_CONNECTION),
            "S3Connection" => Kind::Object(S3_CONNECTION),
            "ConnectorQueueDetails" => Kind::Object(QUEUE_DETAILS),
            "ConnectorInfo" => Kind::Object(CONNECTOR_INFO),
            "Work" => Kind::Object(WORK),
            "WorkEditMutations" => Kind::Object(WORK_EDIT),
            "RegisterConnectorInput" => Kind::Input(REGISTER_CONNECTOR_INPUT),
            "ConnectorInfoInput" => Kind::Input(CONNECTOR_INFO_INPUT),
            "WorkErrorInput" => Kind::Input(WORK_ERROR_INPUT),
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GraphQL documents: a parser for the executable subset connectors send (operations, variables, fields, aliases,
// arguments, literals; no fragments or directives)

mod gql {
    use std::fmt;

    /// An operation of a document.
    #[derive(Clone, Debug)]
    pub struct Operation {
        pub kind: OpKind,
        pub name: Option<String>,
        pub var_defs: Vec<VarDef>,
        pub selection: Vec<Field>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum OpKind {
        Query,
        Mutation,
        Subscription,
    }

    /// `$name: Type = default`.
    #[derive(Clone, Debug)]
    pub struct VarDef {
        pub name: String,
        pub ty: TypeRef,
        pub default: Option<Lit>,
    }

    /// A type reference: `Name`, `[T]`, `T!`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum TypeRef {
        Named(String),
        List(Box<TypeRef>),
        NonNull(Box<TypeRef>),
    }

    impl TypeRef {
        /// Parses a type written in the schema tables; they are fixed, so a bad one is a bug here.
        pub fn schema(text: &str) -> TypeRef {
            let mut parser = Parser { tokens: tokenize(text).expect("schema type"), pos: 0 };
            parser.type_ref().expect("schema type")
        }

        /// The named type inside.
        pub fn named(&self) -> &str {
            match self {
                TypeRef::Named(name) => name,
                TypeRef::List(inner) | TypeRef::NonNull(inner) => inner.named(),
            }
        }

        pub fn is_non_null(&self) -> bool {
            matches!(self, TypeRef::NonNull(_))
        }
    }

    impl fmt::Display for TypeRef {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TypeRef::Named(name) => write!(f, "{name}"),
                TypeRef::List(inner) => write!(f, "[{inner}]"),
                TypeRef::NonNull(inner) => write!(f, "{inner}!"),
            }
        }
    }

    /// Whether a variable of type `variable` (with a non-null default or not) may be used where `location` is
    /// expected (graphql-js `VariablesInAllowedPositionRule`).
    pub fn usage_allowed(variable: &TypeRef, has_default: bool, location: &TypeRef) -> bool {
        match location {
            TypeRef::NonNull(location_inner) if !variable.is_non_null() => {
                has_default && is_subtype(variable, location_inner)
            }
            _ => is_subtype(variable, location),
        }
    }

    fn is_subtype(sub: &TypeRef, sup: &TypeRef) -> bool {
        match (sub, sup) {
            (TypeRef::NonNull(a), TypeRef::NonNull(b)) => is_subtype(a, b),
            (TypeRef::NonNull(a), _) => is_subtype(a, sup),
            (_, TypeRef::NonNull(_)) => false,
            (TypeRef::List(a), TypeRef::List(b)) => is_subtype(a, b),
            (TypeRef::List(_), _) | (_, TypeRef::List(_)) => false,
            (TypeRef::Named(a), TypeRef::Named(b)) => a == b,
        }
    }

    /// A field of a selection set.
    #[derive(Clone, Debug)]
    pub struct Field {
        pub alias: Option<String>,
        pub name: String,
        pub args: Vec<(String, Lit)>,
        pub selection: Option<Vec<Field>>,
    }

    impl Field {
        /// The key of the field in the answer: the alias, or the name.
        pub fn key(&self) -> &str {
            self.alias.as_deref().unwrap_or(&self.name)
        }
    }

    /// A value written in a document.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Lit {
        Var(String),
        Int(i64),
        Float(f64),
        Str(String),
        Bool(bool),
        Null,
        Enum(String),
        List(Vec<Lit>),
        Object(Vec<(String, Lit)>),
    }

    /// A literal as GraphQL prints it, for error messages.
    pub fn lit_text(lit: &Lit) -> String {
        match lit {
            Lit::Var(name) => format!("${name}"),
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) => f.to_string(),
            Lit::Str(s) => format!("{s:?}"),
            Lit::Bool(b) => b.to_string(),
            Lit::Null => "null".into(),
            Lit::Enum(e) => e.clone(),
            Lit::List(items) => format!("[{}]", items.iter().map(lit_text).collect::<Vec<_>>().join(", ")),
            Lit::Object(entries) => format!(
                "{{{}}}",
                entries.iter().map(|(k, v)| format!("{k}: {}", lit_text(v))).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// A parsed document.
    pub struct Document {
        pub operations: Vec<Operation>,
    }

    /// Parses a document; the error is graphql-js's syntax error message without its `Syntax Error: ` prefix.
    pub fn parse_document(source: &str) -> Result<Document, String> {
        let mut parser = Parser { tokens: tokenize(source)?, pos: 0 };
        parser.document()
    }

    #[derive(Clone, Debug, PartialEq)]
    enum Token {
        Punct(char),
        Spread,
        Name(String),
        Int(String),
        Float(String),
        Str(String),
    }

    fn tokenize(source: &str) -> Result<Vec<Token>, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
                '#' => {
                    while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                        i += 1;
                    }
                }
                '!' | '$' | '&' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}' => {
                    tokens.push(Token::Punct(c));
                    i += 1;
                }
                '.' => {
                    if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                        tokens.push(Token::Spread);
                        i += 3;
                    } else {
                        return Err("Unexpected character: \".\".".into());
                    }
                }
                '"' => {
                    let (text, next) = read_string(&chars, i)?;
                    tokens.push(Token::Str(text));
                    i = next;
                }
                c if c == '_' || c.is_ascii_alphabetic() => {
                    let start = i;
                    while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                        i += 1;
                    }
                    tokens.push(Token::Name(chars[start..i].iter().collect()));
                }
                c if c == '-' || c.is_ascii_digit() => {
                    let (token, next) = read_number(&chars, i)?;
                    tokens.push(token);
                    i = next;
                }
                other => return Err(format!("Unexpected character: {other:?}.")),
            }
        }
        Ok(tokens)
    }

    fn read_number(chars: &[char], start: usize) -> Result<(Token, usize), String> {
        let digit_at = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
        let mut i = start;
        if chars[i] == '-' {
            i += 1;
        }
        if !digit_at(i) {
            return Err("Invalid number, expected digit.".into());
        }
        while digit_at(i) {
            i += 1;
        }
        let mut float = false;
        if chars.get(i) == Some(&'.') {
            float = true;
            i += 1;
            if !digit_at(i) {
                return Err("Invalid number, expected digit after \".\".".into());
            }
            while digit_at(i) {
                i += 1;
            }
        }
        if matches!(chars.get(i), Some('e' | 'E')) {
            float = true;
            i += 1;
            if matches!(chars.get(i), Some('+' | '-')) {
                i += 1;
            }
            if !digit_at(i) {
                return Err("Invalid number, expected digit in exponent.".into());
            }
            while digit_at(i) {
                i += 1;
            }
        }
        if chars.get(i).is_some_and(|c| *c == '_' || *c == '.' || c.is_ascii_alphabetic()) {
            return Err(format!("Invalid number, unexpected character {:?}.", chars[i]));
        }
        let text: String = chars[start..i].iter().collect();
        Ok((if float { Token::Float(text) } else { Token::Int(text) }, i))
    }

    fn read_string(chars: &[char], start: usize) -> Result<(String, usize), String> {
        if chars.get(start + 1) == Some(&'"') && chars.get(start + 2) == Some(&'"') {
            let mut i = start + 3;
            let mut raw = String::new();
            while i < chars.len() {
                if chars[i..].starts_with(&['"', '"', '"']) {
                    return Ok((block_string_value(&raw), i + 3));
                }
                if chars[i..].starts_with(&['\\', '"', '"', '"']) {
                    raw.push_str("\"\"\"");
                    i += 4;
                    continue;
                }
                raw.push(chars[i]);
                i += 1;
            }
            return Err("Unterminated string.".into());
        }
        let mut i = start + 1;
        let mut text = String::new();
        while let Some(&c) = chars.get(i) {
            match c {
                '"' => return Ok((text, i + 1)),
                '\n' | '\r' => break,
                '\\' => {
                    let escaped = chars.get(i + 1).copied().ok_or("Unterminated string.")?;
                    i += 2;
                    match escaped {
                        '"' | '\\' | '/' => text.push(escaped),
                        'b' => text.push('\u{8}'),
                        'f' => text.push('\u{c}'),
                        'n' => text.push('\n'),
                        'r' => text.push('\r'),
                        't' => text.push('\t'),
                        'u' => {
                            let hex: String =
                                chars.get(i..i + 4).ok_or("Invalid Unicode escape sequence.")?.iter().collect();
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| "Invalid Unicode escape sequence.")?;
                            text.push(char::from_u32(code).ok_or("Invalid Unicode escape sequence.")?);
                            i += 4;
                        }
                        other => return Err(format!("Invalid character escape sequence: \"\\{other}\".")),
                    }
                }
                other => {
                    text.push(other);
                    i += 1;
                }
            }
        }
        Err("Unterminated string.".into())
    }

    /// The value of a block string: common indentation removed, blank first and last lines dropped.
    fn block_string_value(raw: &str) -> String {
        let lines: Vec<&str> = raw.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let indent = lines
            .iter()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
            .min()
            .unwrap_or(0);
        let mut out: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(n, l)| if n == 0 { (*l).to_owned() } else { l.get(indent..).unwrap_or("").to_owned() })
            .collect();
        while out.first().is_some_and(|l| l.trim().is_empty()) {
            out.remove(0);
        }
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        out.join("\n")
    }

    struct Parser {
        tokens: Vec<Token>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.pos)
        }

        fn bump(&mut self) -> Option<Token> {
            let token = self.tokens.get(self.pos).cloned();
            self.pos += 1;
            token
        }

        fn at(&self, c: char) -> bool {
            self.peek() == Some(&Token::Punct(c))
        }

        fn eat(&mut self, c: char) -> bool {
            let found = self.at(c);
            if found {
                self.pos += 1;
            }
            found
        }

        fn describe(&self) -> String {
            match self.peek() {
                None => "<EOF>".into(),
                Some(Token::Punct(c)) => format!("\"{c}\""),
                Some(Token::Spread) => "\"...\"".into(),
                Some(Token::Name(n)) => format!("Name \"{n}\""),
                Some(Token::Int(n)) => format!("Int \"{n}\""),
                Some(Token::Float(n)) => format!("Float \"{n}\""),
                Some(Token::Str(s)) => format!("String {s:?}"),
            }
        }

        fn expect(&mut self, c: char) -> Result<(), String> {
            if self.eat(c) { Ok(()) } else { Err(format!("Expected \"{c}\", found {}.", self.describe())) }
        }

        fn name(&mut self) -> Result<String, String> {
            match self.peek() {
                Some(Token::Name(name)) => {
                    let name = name.clone();
                    self.pos += 1;
                    Ok(name)
                }
                _ => Err(format!("Expected Name, found {}.", self.describe())),
            }
        }

        fn no_directives(&self) -> Result<(), String> {
            if self.at('@') { Err("directives are not supported by the fake OpenCTI.".into()) } else { Ok(()) }
        }

        fn document(&mut self) -> Result<Document, String> {
            let mut operations = Vec::new();
            while self.peek().is_some() {
                match self.peek() {
                    Some(Token::Punct('{')) => {
                        let selection = self.selection_set()?;
                        operations.push(Operation { kind: OpKind::Query, name: None, var_defs: Vec::new(), selection });
                    }
                    Some(Token::Name(keyword)) if matches!(keyword.as_str(), "query" | "mutation" | "subscription") => {
                        operations.push(self.operation()?);
                    }
                    Some(Token::Name(keyword)) if keyword == "fragment" => {
                        return Err("fragments are not supported by the fake OpenCTI.".into());
                    }
                    _ => return Err(format!("Unexpected {}.", self.describe())),
                }
            }
            if operations.is_empty() {
                return Err("Unexpected <EOF>.".into());
            }
            Ok(Document { operations })
        }

        fn operation(&mut self) -> Result<Operation, String> {
            let kind = match self.name()?.as_str() {
                "query" => OpKind::Query,
                "mutation" => OpKind::Mutation,
                _ => OpKind::Subscription,
            };
            let name = match self.peek() {
                Some(Token::Name(_)) => Some(self.name()?),
                _ => None,
            };
            let mut var_defs = Vec::new();
            if self.eat('(') {
                loop {
                    self.expect('$')?;
                    let name = self.name()?;
                    self.expect(':')?;
                    let ty = self.type_ref()?;
                    let default = if self.eat('=') { Some(self.value(true)?) } else { None };
                    self.no_directives()?;
                    var_defs.push(VarDef { name, ty, default });
                    if self.eat(')') {
                        break;
                    }
                }
            }
            self.no_directives()?;
            let selection = self.selection_set()?;
            Ok(Operation { kind, name, var_defs, selection })
        }

        fn type_ref(&mut self) -> Result<TypeRef, String> {
            let ty = if self.eat('[') {
                let inner = self.type_ref()?;
                self.expect(']')?;
                TypeRef::List(Box::new(inner))
            } else {
                TypeRef::Named(self.name()?)
            };
            Ok(if self.eat('!') { TypeRef::NonNull(Box::new(ty)) } else { ty })
        }

        fn selection_set(&mut self) -> Result<Vec<Field>, String> {
            self.expect('{')?;
            let mut fields = Vec::new();
            loop {
                if self.peek() == Some(&Token::Spread) {
                    return Err("fragments are not supported by the fake OpenCTI.".into());
                }
                fields.push(self.field()?);
                if self.eat('}') {
                    return Ok(fields);
                }
            }
        }

        fn field(&mut self) -> Result<Field, String> {
            let first = self.name()?;
            let (alias, name) = if self.eat(':') { (Some(first), self.name()?) } else { (None, first) };
            let mut args = Vec::new();
            if self.eat('(') {
                loop {
                    let arg = self.name()?;
                    self.expect(':')?;
                    args.push((arg, self.value(false)?));
                    if self.eat(')') {
                        break;
                    }
                }
            }
            self.no_directives()?;
            let selection = if self.at('{') { Some(self.selection_set()?) } else { None };
            Ok(Field { alias, name, args, selection })
        }

        fn value(&mut self, constant: bool) -> Result<Lit, String> {
            let found = self.describe();
            match self.bump() {
                Some(Token::Punct('$')) if !constant => Ok(Lit::Var(self.name()?)),
                Some(Token::Int(text)) => text.parse().map(Lit::Int).map_err(|_| format!("Int {text} is too large.")),
                Some(Token::Float(text)) => text.parse().map(Lit::Float).map_err(|_| format!("Invalid Float {text}.")),
                Some(Token::Str(text)) => Ok(Lit::Str(text)),
                Some(Token::Name(name)) => Ok(match name.as_str() {
                    "true" => Lit::Bool(true),
                    "false" => Lit::Bool(false),
                    "null" => Lit::Null,
                    _ => Lit::Enum(name),
                }),
                Some(Token::Punct('[')) => {
                    let mut items = Vec::new();
                    while !self.eat(']') {
                        if self.peek().is_none() {
                            return Err("Expected \"]\", found <EOF>.".into());
                        }
                        items.push(self.value(constant)?);
                    }
                    Ok(Lit::List(items))
                }
                Some(Token::Punct('{')) => {
                    let mut entries = Vec::new();
                    while !self.eat('}') {
                        let key = self.name()?;
                        self.expect(':')?;
                        entries.push((key, self.value(constant)?));
                    }
                    Ok(Lit::Object(entries))
                }
                _ => Err(format!("Unexpected {found}.")),
            }
        }
    }
}
