//! RabbitMQ helpers for tests: connect, read and decode what a connector published, delete queues, cut connections.
//!
//! Every helper talks to the broker at [`AMQP_URI`] (127.0.0.1:5672, guest/guest), the one `tools/test.sh` starts. A
//! helper that cannot reach it panics with a message saying how to start it: a test that needs the broker never skips.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use serde_json::{Map, Value};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The broker every test uses.
pub const AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long a connection attempt may take before the broker counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a test says when the broker at `uri` is unreachable (`detail`: why).
pub fn not_answering(uri: &str, detail: &str) -> String {
    // amqp://user:pass@host:port/vhost → host:port
    let address = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let address = address.rsplit_once('@').map_or(address, |(_, rest)| rest);
    let address = address.split('/').next().unwrap_or(address);
    format!(
        "RabbitMQ is not answering on {address}: start it with `rabbitmq-server -detached` \
         (or run `bash tools/test.sh`, which does) [{detail}]"
    )
}

/// Connects to [`AMQP_URI`], or says why not (without panicking: the fake OpenCTI turns this into a GraphQL error).
pub async fn try_connect() -> Result<Connection, String> {
    try_connect_to(AMQP_URI).await
}

/// Connects to `uri`, or says why not. The connection carries the name `test-support`, so it can be told apart from
/// the connector's in `rabbitmqctl list_connections client_properties`.
pub async fn try_connect_to(uri: &str) -> Result<Connection, String> {
    let properties = ConnectionProperties::default().with_connection_name("test-support".into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(not_answering(uri, &e.to_string())),
        Err(_) => Err(not_answering(uri, &format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

/// Connects to the test broker; panics with instructions when it does not answer.
pub async fn connect() -> Connection {
    try_connect().await.unwrap_or_else(|message| panic!("{message}"))
}

/// Closes a connection politely, ignoring errors (the broker may already have cut it).
pub async fn close(connection: Connection) {
    let _ = connection.close(200, "OK".into()).await;
}

/// One message read from a queue.
#[derive(Clone, Debug)]
pub struct Message {
    /// The body, as published.
    pub body: Vec<u8>,
    /// `delivery_mode` property (2 = persistent).
    pub delivery_mode: Option<u8>,
    /// `content_encoding` property (pycti: `utf-8`).
    pub content_encoding: Option<String>,
    /// `content_type` property.
    pub content_type: Option<String>,
    /// The exchange it was published to (empty for the default exchange).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker had delivered it before.
    pub redelivered: bool,
    /// Every property, for what the fields above do not cover.
    pub properties: BasicProperties,
}

impl Message {
    /// The body decoded as the pycti envelope; panics on any deviation (see [`decode_envelope`]).
    pub fn envelope(&self) -> Envelope {
        decode_envelope(&self.body)
    }
}

/// Consumes every message in `queue`, acknowledging each, until no message has arrived for `timeout_idle`; returns
/// them in queue order. Panics when the queue does not exist or the broker does not answer.
pub async fn drain(queue: &str, timeout_idle: Duration) -> Vec<Message> {
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("open a channel to drain a queue");
    channel.basic_qos(1000, BasicQosOptions::default()).await.expect("basic.qos before draining");
    let tag = format!("drain-{}", uuid::Uuid::new_v4());
    let mut consumer = channel
        .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("cannot consume queue `{queue}` (does it exist?): {e}"));
    let mut messages = Vec::new();
    let mut last_unacked = None;
    loop {
        match tokio::time::timeout(timeout_idle, consumer.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => panic!("error while draining queue `{queue}`: {e}"),
            Ok(Some(Ok(delivery))) => {
                let properties = delivery.properties.clone();
                messages.push(Message {
                    body: delivery.data.clone(),
                    delivery_mode: *properties.delivery_mode(),
                    content_encoding: properties.content_encoding().as_ref().map(|s| s.as_str().to_owned()),
                    content_type: properties.content_type().as_ref().map(|s| s.as_str().to_owned()),
                    exchange: delivery.exchange.as_str().to_owned(),
                    routing_key: delivery.routing_key.as_str().to_owned(),
                    redelivered: delivery.redelivered,
                    properties,
                });
                last_unacked = Some(delivery.delivery_tag);
                if messages.len() % 500 == 0 {
                    ack_up_to(&channel, last_unacked.take()).await;
                }
            }
        }
    }
    ack_up_to(&channel, last_unacked).await;
    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
    close(connection).await;
    messages
}

/// Acknowledges every delivery up to `tag` (inclusive).
async fn ack_up_to(channel: &lapin::Channel, tag: Option<u64>) {
    if let Some(tag) = tag {
        channel.basic_ack(tag, BasicAckOptions { multiple: true }).await.expect("acknowledge drained messages");
    }
}

/// Publishes `body` to `exchange` with `routing_key` in publisher-confirm mode, as mandatory; panics unless the
/// broker confirms that it routed the message to a queue.
pub async fn publish(exchange: &str, routing_key: &str, body: &[u8], properties: BasicProperties) {
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("open a channel to publish");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, immediate: false },
            body,
            properties,
        )
        .await
        .unwrap_or_else(|e| panic!("publish to `{exchange}` / `{routing_key}`: {e}"))
        .await
        .unwrap_or_else(|e| panic!("confirm of a publish to `{exchange}` / `{routing_key}`: {e}"));
    match confirmation {
        Confirmation::Ack(None) => {}
        Confirmation::Ack(Some(returned)) => {
            panic!("publish to `{exchange}` / `{routing_key}` was unroutable: {:?}", returned.reply_text)
        }
        other => panic!("publish to `{exchange}` / `{routing_key}` was not acknowledged: {other:?}"),
    }
    close(connection).await;
}

/// The number of messages in `queue`, or `None` when the queue does not exist.
pub async fn message_count(queue: &str) -> Option<u32> {
    let connection = connect().await;
    let count =
        try_message_count(&connection, queue).await.unwrap_or_else(|e| panic!("passive declare of `{queue}`: {e}"));
    close(connection).await;
    count
}

/// Whether `queue` exists on the broker.
pub async fn queue_exists(queue: &str) -> bool {
    message_count(queue).await.is_some()
}

/// Passive declare of `queue` on a channel of its own (a failed passive declare closes its channel): `Ok(None)` when
/// the broker answers NOT_FOUND, an error for anything else.
pub async fn try_message_count(connection: &Connection, queue: &str) -> Result<Option<u32>, String> {
    let channel = connection.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
    let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    match channel.queue_declare(queue.into(), options, FieldTable::default()).await {
        Ok(declared) => {
            let _ = channel.close(200, "OK".into()).await;
            Ok(Some(declared.message_count()))
        }
        Err(e) if e.to_string().contains("NOT_FOUND") || e.to_string().contains("NOT-FOUND") => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes `queue` (a queue that does not exist counts as deleted). Panics when the broker does not answer.
pub async fn delete_queue(queue: &str) {
    try_delete_queues(AMQP_URI, &[queue.to_owned()])
        .await
        .unwrap_or_else(|e| panic!("cannot delete queue `{queue}`: {e}"));
}

/// Deletes every queue in `queues` on the broker at `uri`; stops at the first error.
pub async fn try_delete_queues(uri: &str, queues: &[String]) -> Result<(), String> {
    if queues.is_empty() {
        return Ok(());
    }
    let connection = try_connect_to(uri).await?;
    let result = async {
        for queue in queues {
            let channel = connection.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
            match channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await {
                Ok(_) => {
                    let _ = channel.close(200, "OK".into()).await;
                }
                // Older brokers answer NOT_FOUND for a queue that is already gone.
                Err(e) if e.to_string().contains("NOT_FOUND") => {}
                Err(e) => return Err(format!("delete queue `{queue}`: {e}")),
            }
        }
        Ok(())
    }
    .await;
    close(connection).await;
    result
}

/// Deletes `queues` from synchronous code (a `Drop`), whatever runtime (if any) the caller runs on: a short-lived
/// thread with its own current-thread tokio runtime does the work and is joined, bounded by a 15 s timeout. Errors
/// are printed, not raised (a `Drop` must not panic, least of all while a failing test unwinds).
pub fn delete_queues_blocking(uri: &str, queues: Vec<String>) {
    if queues.is_empty() {
        return;
    }
    let uri = uri.to_owned();
    let worker = std::thread::Builder::new().name("delete-test-queues".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => return Err(format!("cannot build a runtime: {e}")),
        };
        runtime.block_on(async {
            match tokio::time::timeout(Duration::from_secs(15), try_delete_queues(&uri, &queues)).await {
                Ok(result) => result.map_err(|e| format!("{e} (queues {queues:?})")),
                Err(_) => Err(format!("timed out deleting queues {queues:?}")),
            }
        })
    });
    let outcome = match worker {
        Ok(handle) => handle.join().unwrap_or_else(|_| Err("the cleanup thread panicked".into())),
        Err(e) => Err(format!("cannot spawn the cleanup thread: {e}")),
    };
    if let Err(e) = outcome {
        eprintln!("warning: test queue cleanup failed: {e}");
    }
}

/// Deletes its queues when dropped, so a test cleans up even when it panics. `delete_now().await` does it eagerly
/// and for sure (panicking on failure).
#[derive(Debug, Default)]
pub struct QueueGuard {
    queues: Vec<String>,
}

impl QueueGuard {
    /// Guards the given queues.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(queues: I) -> Self {
        QueueGuard { queues: queues.into_iter().map(Into::into).collect() }
    }

    /// Guards the two queues the platform declares for a connector: `push_<id>` and `listen_<id>`.
    pub fn for_connector(connector_id: &str) -> Self {
        Self::new([format!("push_{connector_id}"), format!("listen_{connector_id}")])
    }

    /// Adds a queue to delete.
    pub fn add(&mut self, queue: impl Into<String>) {
        self.queues.push(queue.into());
    }

    /// Deletes the queues now; panics when the broker refuses.
    pub async fn delete_now(mut self) {
        let queues = std::mem::take(&mut self.queues);
        try_delete_queues(AMQP_URI, &queues).await.unwrap_or_else(|e| panic!("cannot delete test queues: {e}"));
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        delete_queues_blocking(AMQP_URI, std::mem::take(&mut self.queues));
    }
}

/// Cuts every client connection on the broker (`rabbitmqctl close_all_connections --global "test"`), as a broker
/// restart would. Needs `rabbitmqctl` and root (tests run as root).
///
/// This cuts every connection to the broker, those of other processes included (another test run on the same
/// machine): prefer [`close_own_connections`]. Within one test binary, a test that cuts connections must hold
/// [`broker_exclusive`], and every test that uses the broker [`broker_shared`].
pub async fn close_all_connections() {
    rabbitmqctl(&["close_all_connections", "--global", "test"]).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Cuts the broker connections of this test process and of its child processes (a connector binary the test
/// launched), as a network cut or a broker restart would, leaving other processes' connections alone; returns how
/// many it cut. The broker's view of a connection (`peer_port`) is matched with the local ports of this process
/// tree's sockets connected to port 5672 (`/proc/<pid>/fd`, `/proc/net/tcp*`). Within one test binary, a test that
/// calls it must hold [`broker_exclusive`], and every test that uses the broker [`broker_shared`].
pub async fn close_own_connections() -> usize {
    let ports =
        tokio::task::spawn_blocking(own_broker_client_ports).await.expect("listing this process's sockets panicked");
    if ports.is_empty() {
        return 0;
    }
    let listing = rabbitmqctl(&["-q", "list_connections", "--no-table-headers", "pid", "peer_port"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut closed = 0;
    for line in listing.lines() {
        let mut columns = line.split('\t').map(str::trim);
        let (Some(pid), Some(port)) = (columns.next(), columns.next()) else {
            continue;
        };
        if port.parse::<u16>().is_ok_and(|port| ports.contains(&port)) {
            // A connection that closed in between is not an error.
            if rabbitmqctl(&["close_connection", pid, "test"]).await.is_ok() {
                closed += 1;
            }
        }
    }
    closed
}

/// Runs `rabbitmqctl` with `args`; its standard output, or an error quoting what it printed.
async fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || std::process::Command::new("rabbitmqctl").args(&args).output())
        .await
        .map_err(|e| format!("the rabbitmqctl task failed: {e}"))?
        .map_err(|e| format!("cannot run rabbitmqctl (is RabbitMQ installed?): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`rabbitmqctl {shown}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The local ports of the TCP sockets of this process and its descendants that are connected to port 5672.
fn own_broker_client_ports() -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for pid in own_process_tree() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let port_of = |address: &str| address.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() > 9 && port_of(columns[2]) == Some(5672) && inodes.contains(columns[9]) {
                ports.extend(port_of(columns[1]));
            }
        }
    }
    ports
}

/// This process and every process descended from it.
fn own_process_tree() -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut tree = vec![std::process::id()];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        next += 1;
    }
    tree
}

fn broker_lock() -> &'static RwLock<()> {
    static LOCK: OnceLock<RwLock<()>> = OnceLock::new();
    LOCK.get_or_init(|| RwLock::new(()))
}

/// Held by a test that uses the broker normally, so that a broker-fault test of the same test binary does not cut
/// its connections mid-way (see [`close_all_connections`]).
pub async fn broker_shared() -> RwLockReadGuard<'static, ()> {
    broker_lock().read().await
}

/// Held by a test that cuts broker connections: waits for every [`broker_shared`] holder to finish.
pub async fn broker_exclusive() -> RwLockWriteGuard<'static, ()> {
    broker_lock().write().await
}

/// The pycti message envelope (OpenCTI protocol §3), decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Always `QUEUE_BUNDLE`.
    pub bundle_type: String,
    /// The `connector_user_id` from the registration.
    pub applicant_id: String,
    /// 1-based index of the piece within its send.
    pub action_sequence: u64,
    /// Type filters (empty for an import).
    pub entities_types: Vec<String>,
    /// `content`, base64-decoded and parsed: the STIX bundle.
    pub content: Value,
    /// `content`, base64-decoded, as text (the exact JSON the connector wrote).
    pub content_text: String,
    /// Always `false` for an import.
    pub update: bool,
    /// `null` unless the connector works in a draft.
    pub draft_id: Option<String>,
    /// pycti 7: `true` when the worker should split the bundle itself.
    pub no_split: bool,
    /// The work the piece belongs to, when one is open.
    pub work_id: Option<String>,
}

impl Envelope {
    /// The STIX objects of the bundle.
    pub fn objects(&self) -> &[Value] {
        self.content["objects"].as_array().map(Vec::as_slice).unwrap_or_default()
    }
}

/// The keys pycti writes, and only those.
const ENVELOPE_KEYS: [&str; 9] = [
    "bundle_type",
    "applicant_id",
    "action_sequence",
    "entities_types",
    "content",
    "update",
    "draft_id",
    "no_split",
    "work_id",
];

/// Parses a message body as the pycti envelope; panics, quoting the body, on any deviation: not a JSON object, a key
/// missing (only `work_id` is optional) or unknown, a value of the wrong type, `bundle_type` other than
/// `QUEUE_BUNDLE`, `action_sequence` below 1, `content` that is not standard padded base64 of UTF-8 JSON of a STIX
/// bundle (`{"type": "bundle", "objects": [...]}`).
pub fn decode_envelope(body: &[u8]) -> Envelope {
    let text = std::str::from_utf8(body).unwrap_or_else(|e| panic!("envelope is not UTF-8: {e}"));
    let shown = || {
        if text.len() > 600 {
            let mut end = 600;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        } else {
            text.to_owned()
        }
    };
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("envelope is not JSON ({e}): {}", shown()));
    let Value::Object(map) = value else {
        panic!("envelope is not a JSON object: {}", shown());
    };
    for key in map.keys() {
        assert!(ENVELOPE_KEYS.contains(&key.as_str()), "envelope has an unknown key `{key}`: {}", shown());
    }
    let field = |key: &str| -> &Value { map.get(key).unwrap_or_else(|| panic!("envelope lacks `{key}`: {}", shown())) };
    let string = |key: &str| -> String {
        field(key).as_str().unwrap_or_else(|| panic!("envelope `{key}` is not a string: {}", shown())).to_owned()
    };
    let boolean = |key: &str| -> bool {
        field(key).as_bool().unwrap_or_else(|| panic!("envelope `{key}` is not a boolean: {}", shown()))
    };
    let optional_string = |map: &Map<String, Value>, key: &str, required: bool| -> Option<String> {
        match map.get(key) {
            None if required => panic!("envelope lacks `{key}`: {}", shown()),
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => panic!("envelope `{key}` is neither null nor a string ({other}): {}", shown()),
        }
    };

    let bundle_type = string("bundle_type");
    assert_eq!(bundle_type, "QUEUE_BUNDLE", "envelope bundle_type: {}", shown());
    let applicant_id = string("applicant_id");
    let action_sequence = field("action_sequence")
        .as_u64()
        .unwrap_or_else(|| panic!("envelope action_sequence is not a non-negative integer: {}", shown()));
    assert!(action_sequence >= 1, "envelope action_sequence must be 1-based: {}", shown());
    let entities_types = field("entities_types")
        .as_array()
        .unwrap_or_else(|| panic!("envelope entities_types is not a list: {}", shown()))
        .iter()
        .map(|t| {
            t.as_str().unwrap_or_else(|| panic!("envelope entities_types holds a non-string: {}", shown())).to_owned()
        })
        .collect();
    let update = boolean("update");
    let no_split = boolean("no_split");
    let draft_id = optional_string(&map, "draft_id", true);
    let work_id = optional_string(&map, "work_id", false);
    assert!(
        !matches!(map.get("work_id"), Some(Value::Null)),
        "envelope work_id is null: pycti leaves the key out when no work is open: {}",
        shown()
    );

    let content_b64 = string("content");
    let content_bytes = base64::engine::general_purpose::STANDARD
        .decode(content_b64.as_bytes())
        .unwrap_or_else(|e| panic!("envelope content is not standard padded base64 ({e}): {}", shown()));
    let content_text = String::from_utf8(content_bytes)
        .unwrap_or_else(|e| panic!("envelope content does not decode to UTF-8 ({e}): {}", shown()));
    let content: Value = serde_json::from_str(&content_text)
        .unwrap_or_else(|e| panic!("envelope content is not JSON ({e}): {content_text}"));
    assert_eq!(content["type"], "bundle", "envelope content is not a STIX bundle: {content_text}");
    assert!(content["objects"].is_array(), "envelope content bundle has no `objects` list: {content_text}");

    Envelope {
        bundle_type,
        applicant_id,
        action_sequence,
        entities_types,
        content,
        content_text,
        update,
        draft_id,
        no_split,
        work_id,
    }
}
