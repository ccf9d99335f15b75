//! Self-test of the test support: the fake OpenCTI behaves like the platform; the RabbitMQ helpers read what is sent.

use std::time::{Duration, Instant};

use base64::Engine as _;
use lapin::BasicProperties;
use serde_json::{Value, json};
use testkit::fake_opencti::{
    AuthFailure, CONNECTOR_EXCHANGE, DEFAULT_BYTES_PER_MESSAGE, DEFAULT_CONNECTOR_USER_ID, FakeOpenCti, FakeOptions,
    Fault, MqConnection, Outcome, WORKER_EXCHANGE,
};
use testkit::rabbit::{self, QueueGuard};

/// pycti 7's documents, verbatim where it matters (argument names, variable types, selections).
const ABOUT: &str = "query healthCheck { about { version } }";
const REGISTER: &str = r#"
    mutation RegisterConnector($input: RegisterConnectorInput) {
        registerConnector(input: $input) {
            id
            connector_state
            jwks
            config {
                connection { host vhost use_ssl port user pass }
                s3 { endpoint port use_ssl bucket_name bucket_region access_key secret_key }
                listen
                listen_routing
                listen_exchange
                push
                push_routing
                push_exchange
            }
            connector_user_id
        }
    }"#;
const PING: &str = r#"
    mutation PingConnector($id: ID!, $state: String, $connectorInfo: ConnectorInfoInput ) {
        pingConnector(id: $id, state: $state, connectorInfo: $connectorInfo) {
            id
            connector_state
            connector_info {
                run_and_terminate buffering queue_threshold queue_messages_size next_run_datetime last_run_datetime
            }
        }
    }"#;
const QUEUE_DETAILS: &str = r#"
    query GetConnector($id: String!) {
        connector(id: $id) { id connector_queue_details { messages_number messages_size } }
    }"#;
const WORK_ADD: &str = r#"
    mutation workAdd($connectorId: String!, $friendlyName: String, $isMultiPartWork: Boolean) {
        workAdd(connectorId: $connectorId, friendlyName: $friendlyName, isMultiPartWork: $isMultiPartWork) { id }
    }"#;
const ADD_EXPECTATIONS: &str = r#"
    mutation addExpectations($id: ID!, $expectations: Int) {
        workEdit(id: $id) { addExpectations(expectations: $expectations) }
    }"#;
const TO_PROCESSED: &str = r#"
    mutation workToProcessed($id: ID!, $message: String, $inError: Boolean) {
        workEdit(id: $id) { toProcessed (message: $message, inError: $inError) }
    }"#;
const REPORT_EXPECTATION: &str = r#"
    mutation reportExpectation($id: ID!, $error: WorkErrorInput) {
        workEdit(id: $id) { reportExpectation(error: $error) }
    }"#;
const PING_WORK: &str = "mutation pingWork($id: ID!) { workEdit(id: $id) { ping } }";

/// A GraphQL client for the fake, as a connector would use it (one pooled reqwest client).
struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    fn new(fake: &FakeOpenCti) -> Self {
        Self::with_timeout(fake, Duration::from_secs(20))
    }

    fn with_timeout(fake: &FakeOpenCti, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().expect("reqwest client");
        Client { http, url: fake.graphql_url(), token: Some(fake.token().to_owned()) }
    }

    fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Posts a GraphQL request; the body as JSON, or as a JSON string when it is not JSON.
    async fn try_post(&self, query: &str, variables: Value) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self.http.post(&self.url).json(&json!({"query": query, "variables": variables}));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn post(&self, query: &str, variables: Value) -> (u16, Value) {
        self.try_post(query, variables).await.unwrap_or_else(|e| panic!("the fake did not answer: {e}"))
    }

    /// Posts and expects HTTP 200 with data and no errors; returns `data`.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Posts and expects HTTP 200 with a GraphQL error; returns the first error.
    async fn error(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(query, variables).await;
        assert_eq!(status, 200, "{body}");
        body["errors"][0].clone()
    }
}

/// pycti's `RegisterConnectorInput` for an external-import connector.
fn register_input(id: &str) -> Value {
    json!({"input": {
        "id": id,
        "name": "Maltrail",
        "type": "EXTERNAL_IMPORT",
        "scope": ["indicator", "malware"],
        "auto": false,
        "auto_update": false,
        "enrichment_resolution": "none",
        "only_contextual": false,
        "playbook_compatible": false,
        "listen_callback_uri": null,
        "version": "0.1.0",
        "slug": "maltrail",
    }})
}

fn connector_info() -> Value {
    json!({
        "run_and_terminate": false,
        "buffering": false,
        "queue_threshold": 500.0,
        "queue_messages_size": 0.0,
        "next_run_datetime": "2026-01-01T01:00:00Z",
        "last_run_datetime": "2026-01-01T00:00:00Z",
    })
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn about_answers_with_the_token_and_auth_required_without() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let client = Client::new(&fake);
    assert_eq!(client.data(ABOUT, json!({})).await, json!({"about": {"version": "6.8.0"}}));

    let (status, body) = Client::new(&fake).without_token().post(ABOUT, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["errors"][0]["message"], "You must be logged in to do this.");
    assert_eq!(body["errors"][0]["extensions"]["code"], "AUTH_REQUIRED");

    let mut wrong = Client::new(&fake);
    wrong.token = Some("not-the-token".into());
    let (status, body) = wrong.post(ABOUT, json!({})).await;
    assert_eq!((status, &body["errors"][0]["extensions"]["code"]), (200, &json!("AUTH_REQUIRED")));

    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.is("about") && c.operation_name.as_deref() == Some("healthCheck")));
    assert_eq!(calls.iter().map(|c| c.auth_ok).collect::<Vec<_>>(), [true, false, false]);
    assert_eq!(calls[0].outcome, Outcome::Ok);
    assert_eq!(calls[1].error_codes(), ["AUTH_REQUIRED"]);

    let strict = FakeOpenCti::start(FakeOptions {
        auth_failure: AuthFailure::Http401,
        version: "6.9.1".into(),
        token: Some("fixed-token".into()),
        ..FakeOptions::default()
    })
    .await;
    assert_eq!(strict.token(), "fixed-token");
    let (status, body) = Client::new(&strict).without_token().post(ABOUT, json!({})).await;
    assert_eq!((status, &body["errors"][0]["extensions"]["code"]), (401, &json!("AUTH_REQUIRED")));
    assert_eq!(Client::new(&strict).data(ABOUT, json!({})).await["about"]["version"], "6.9.1");
}

#[tokio::test]
async fn register_declares_the_platform_queues_and_reports_their_size() {
    let _broker = rabbit::broker_shared().await;
    let id = fresh_id();
    let _queues = QueueGuard::for_connector(&id);
    let bogus = MqConnection { host: "rabbitmq".into(), ..MqConnection::default() };
    let fake = FakeOpenCti::start(FakeOptions { connection: bogus, ..FakeOptions::default() }).await;
    let client = Client::new(&fake);

    let registered = client.data(REGISTER, register_input(&id)).await["registerConnector"].clone();
    assert_eq!(
        registered,
        json!({
            "id": id,
            "connector_state": null,
            "jwks": null,
            "config": {
                "connection": {"host": "rabbitmq", "vhost": "/", "use_ssl": false, "port": 5672, "user": "guest",
                               "pass": "guest"},
                "s3": {"endpoint": "localhost", "port": 9000, "use_ssl": false, "bucket_name": "opencti-bucket",
                       "bucket_region": "us-east-1", "access_key": "ChangeMe", "secret_key": "ChangeMe"},
                "listen": format!("listen_{id}"),
                "listen_routing": format!("listen_routing_{id}"),
                "listen_exchange": CONNECTOR_EXCHANGE,
                "push": format!("push_{id}"),
                "push_routing": format!("push_routing_{id}"),
                "push_exchange": WORKER_EXCHANGE,
            },
            "connector_user_id": DEFAULT_CONNECTOR_USER_ID,
        })
    );
    assert_eq!(fake.registrations(), [register_input(&id)["input"].clone()]);
    assert_eq!(fake.declared_queues(), [format!("listen_{id}"), format!("push_{id}")]);
    assert_eq!(rabbit::message_count(&format!("listen_{id}")).await, Some(0));

    // The push queue is bound where the platform binds it: publish as a connector would, read it back.
    let properties = BasicProperties::default().with_delivery_mode(2).with_content_encoding("utf-8".into());
    rabbit::publish(WORKER_EXCHANGE, &format!("push_routing_{id}"), b"{\"hello\":1}", properties).await;
    let details = client.data(QUEUE_DETAILS, json!({"id": id})).await;
    assert_eq!(
        details["connector"]["connector_queue_details"],
        json!({"messages_number": 1, "messages_size": DEFAULT_BYTES_PER_MESSAGE})
    );
    fake.set_queue_size_bytes(Some(600 * 1024 * 1024));
    let details = client.data(QUEUE_DETAILS, json!({"id": id})).await;
    assert_eq!(details["connector"]["connector_queue_details"]["messages_size"], 600 * 1024 * 1024);

    let messages = rabbit::drain(&format!("push_{id}"), Duration::from_millis(300)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, b"{\"hello\":1}");
    assert_eq!(messages[0].delivery_mode, Some(2));
    assert_eq!(messages[0].content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(messages[0].exchange, WORKER_EXCHANGE);
    assert_eq!(rabbit::message_count(&format!("push_{id}")).await, Some(0), "drain acknowledges");
    fake.set_queue_size_bytes(None);
    let details = client.data(QUEUE_DETAILS, json!({"id": id})).await;
    assert_eq!(details["connector"]["connector_queue_details"], json!({"messages_number": 0, "messages_size": 0}));

    // An unknown connector is null, as on the platform.
    let unknown = client.data(QUEUE_DETAILS, json!({"id": fresh_id()})).await;
    assert_eq!(unknown, json!({"connector": null}));
    assert!(fake.mq_errors().is_empty(), "{:?}", fake.mq_errors());
    fake.stop().await;
}

#[tokio::test]
async fn ping_stores_the_state_until_a_reset_makes_the_connector_adopt_another() {
    let _broker = rabbit::broker_shared().await;
    let id = fresh_id();
    let _queues = QueueGuard::for_connector(&id);
    let preset = r#"{"last_run": 1700000000}"#;
    let fake = FakeOpenCti::start(FakeOptions { initial_state: Some(preset.into()), ..FakeOptions::default() }).await;
    let client = Client::new(&fake);

    let registered = client.data(REGISTER, register_input(&id)).await;
    assert_eq!(registered["registerConnector"]["connector_state"], preset);
    assert_eq!(fake.state().as_deref(), Some(preset));

    let ping = |state: &str| json!({"id": id, "state": state, "connectorInfo": connector_info()});
    let answer = client.data(PING, ping("S1")).await;
    assert_eq!(answer["pingConnector"], json!({"id": id, "connector_state": "S1", "connector_info": connector_info()}));
    assert_eq!(fake.state().as_deref(), Some("S1"));

    fake.reset_state(Some(String::new()));
    let answer = client.data(PING, ping("S2")).await;
    assert_eq!(answer["pingConnector"]["connector_state"], "", "the reset value wins over what was sent");
    assert_eq!(fake.state().as_deref(), Some(""));
    let answer = client.data(PING, ping("S3")).await;
    assert_eq!(answer["pingConnector"]["connector_state"], "S3", "after the reset, pings store again");

    let pings = fake.pings();
    let sent: Vec<_> = pings.iter().map(|p| p.state.as_deref()).collect();
    let answered: Vec<_> = pings.iter().map(|p| p.answered_state.as_deref()).collect();
    assert_eq!(sent, [Some("S1"), Some("S2"), Some("S3")]);
    assert_eq!(answered, [Some("S1"), Some(""), Some("S3")]);
    assert_eq!(pings[0].connector_info, Some(connector_info()));

    // A null state is stored as null; an unknown connector is a functional error.
    let answer = client.data(PING, json!({"id": id, "state": null})).await;
    assert_eq!(answer["pingConnector"]["connector_state"], Value::Null);
    let error = client.error(PING, json!({"id": fresh_id(), "state": "x"})).await;
    assert_eq!(error["extensions"]["code"], "FUNCTIONAL_ERROR", "{error}");
    assert_eq!(error["path"], json!(["pingConnector"]));
    fake.stop().await;
}

#[tokio::test]
async fn works_record_expectations_processing_and_errors() {
    let _broker = rabbit::broker_shared().await;
    let id = fresh_id();
    let _queues = QueueGuard::for_connector(&id);
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let client = Client::new(&fake);
    client.data(REGISTER, register_input(&id)).await;

    let vars = json!({"connectorId": id, "friendlyName": "Maltrail run", "isMultiPartWork": true});
    let work_id = client.data(WORK_ADD, vars).await["workAdd"]["id"].as_str().expect("work id").to_owned();
    assert!(work_id.starts_with(&format!("work_{id}_")), "{work_id}");
    let answer = client.data(ADD_EXPECTATIONS, json!({"id": work_id, "expectations": 3})).await;
    assert_eq!(answer, json!({"workEdit": {"addExpectations": work_id}}));
    client.data(ADD_EXPECTATIONS, json!({"id": work_id, "expectations": 2})).await;
    client.data(PING_WORK, json!({"id": work_id})).await;
    let error = json!({"error": "bad object", "source": "indicator--1"});
    client.data(REPORT_EXPECTATION, json!({"id": work_id, "error": error})).await;
    let answer = client.data(TO_PROCESSED, json!({"id": work_id, "message": "5 objects sent", "inError": false})).await;
    assert_eq!(answer, json!({"workEdit": {"toProcessed": work_id}}));

    let works = fake.works();
    assert_eq!(works.len(), 1);
    let work = &works[0];
    assert_eq!(work.friendly_name.as_deref(), Some("Maltrail run"));
    assert!(work.is_multipart);
    assert_eq!((work.expectations, work.expectation_calls.clone()), (5, vec![3, 2]));
    assert!(work.processed && !work.in_error);
    assert_eq!(work.message.as_deref(), Some("5 objects sent"));
    assert_eq!(work.errors, [error]);
    assert_eq!((work.pings, work.completed_number, work.status.as_str()), (1, 1, "progress"));

    // A work that is gone answers WORK_NOT_ALIVE (pycti looks for that text).
    fake.delete_work(&work_id);
    let error = client.error(ADD_EXPECTATIONS, json!({"id": work_id, "expectations": 1})).await;
    assert_eq!(error["extensions"]["code"], "WORK_NOT_ALIVE");
    assert_eq!(error["path"], json!(["workEdit", "addExpectations"]));
    let (_, body) = client.post(TO_PROCESSED, json!({"id": "work_unknown", "message": "x"})).await;
    assert!(body.to_string().contains("WORK_NOT_ALIVE"), "{body}");
    assert_eq!(body["data"], json!({"workEdit": {"toProcessed": null}}));
    // A work for a connector that never registered is refused.
    let error = client.error(WORK_ADD, json!({"connectorId": fresh_id()})).await;
    assert_eq!(error["extensions"]["code"], "FUNCTIONAL_ERROR");
    fake.stop().await;
}

#[tokio::test]
async fn injected_faults_hit_exactly_the_requests_they_target() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let client = Client::new(&fake);

    fake.fail_next(1, Fault::Http(reqwest::StatusCode::BAD_GATEWAY));
    let (status, body) = client.post(ABOUT, json!({})).await;
    assert_eq!((status, body), (502, json!("502 Bad Gateway\n")));
    assert_eq!(client.data(ABOUT, json!({})).await["about"]["version"], "6.8.0", "only one request fails");

    fake.fail_next_op("pingConnector", 1, Fault::GraphqlError("boom".into(), "DATABASE_ERROR".into()));
    client.data(ABOUT, json!({})).await;
    assert_eq!(fake.pending_faults(), 1, "an `about` does not consume a pingConnector fault");
    let error = client.error(PING, json!({"id": fresh_id(), "state": "s"})).await;
    assert_eq!((&error["message"], &error["extensions"]["code"]), (&json!("boom"), &json!("DATABASE_ERROR")));
    assert_eq!(fake.pending_faults(), 0);

    fake.fail_next_op("workEdit.toProcessed", 2, Fault::Http(reqwest::StatusCode::SERVICE_UNAVAILABLE));
    let (status, _) = client.post(ADD_EXPECTATIONS, json!({"id": "w", "expectations": 1})).await;
    assert_eq!(status, 200, "a workEdit.addExpectations is not a workEdit.toProcessed");
    let (status, _) = client.post(TO_PROCESSED, json!({"id": "w", "message": "m"})).await;
    assert_eq!(status, 503);
    fake.clear_faults();
    assert_eq!(fake.pending_faults(), 0);

    // A hang outlasts the client's timeout; the request still takes effect afterwards.
    fake.fail_next(1, Fault::Hang(Duration::from_millis(700)));
    let impatient = Client::with_timeout(&fake, Duration::from_millis(150));
    let started = Instant::now();
    let result = impatient.try_post(ABOUT, json!({})).await;
    assert!(result.as_ref().is_err_and(reqwest::Error::is_timeout), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(650));
    let hung = fake.calls().last().cloned().expect("the hung call is recorded");
    assert_eq!(hung.fault, Some(Fault::Hang(Duration::from_millis(700))));
    fake.wait_until(Duration::from_secs(5), "the hung call to be answered", |f| {
        f.calls()[hung.seq].outcome == Outcome::Ok
    })
    .await;

    let labels: Vec<String> = fake.calls().iter().map(|c| c.label()).collect();
    assert_eq!(
        labels,
        ["about", "about", "about", "pingConnector", "workEdit.addExpectations", "workEdit.toProcessed", "about"]
    );
    assert_eq!(fake.calls()[0].outcome, Outcome::Http(502));
}

#[tokio::test]
async fn down_refuses_connections_and_up_restores_them_on_the_same_port() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let client = Client::with_timeout(&fake, Duration::from_secs(5));
    let url = fake.url();
    assert_eq!(client.data(ABOUT, json!({})).await["about"]["version"], "6.8.0");

    fake.set_down(true).await;
    assert!(fake.is_down());
    for _ in 0..20 {
        // The kernel may hand the port itself out as the client's ephemeral port (the fake's port is one), and a
        // socket connecting to its own address and port is connected to itself: that is no accept by the fake.
        let connected = tokio::net::TcpStream::connect(fake.addr()).await;
        if let Ok(stream) = &connected {
            let self_connected = stream.local_addr().ok() == stream.peer_addr().ok();
            assert!(self_connected, "connection accepted while down");
        }
    }
    // Reserved: a socket without SO_REUSEADDR cannot take it (neither can an ephemeral port or a `bind(0)`).
    let squatter = tokio::net::TcpSocket::new_v4().expect("socket");
    assert!(squatter.bind(fake.addr()).is_err(), "the port stays reserved while down");
    let result = client.try_post(ABOUT, json!({})).await;
    assert!(result.as_ref().is_err_and(|e| e.is_connect() || e.is_request()), "{result:?}");

    fake.set_down(false).await;
    assert!(!fake.is_down());
    assert_eq!(fake.url(), url);
    assert_eq!(client.data(ABOUT, json!({})).await["about"]["version"], "6.8.0", "the pooled client reconnects");

    // Twice more, to be sure re-binding the same port works repeatedly.
    for _ in 0..2 {
        fake.set_down(true).await;
        fake.set_down(false).await;
        assert_eq!(client.data(ABOUT, json!({})).await["about"]["version"], "6.8.0");
    }
}

#[tokio::test]
async fn queues_are_deleted_on_stop_and_on_drop() {
    let _broker = rabbit::broker_shared().await;
    let (stopped, dropped) = (fresh_id(), fresh_id());
    let mut guard = QueueGuard::for_connector(&stopped);
    guard.add(format!("push_{dropped}"));
    guard.add(format!("listen_{dropped}"));

    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    Client::new(&fake).data(REGISTER, register_input(&stopped)).await;
    assert!(rabbit::queue_exists(&format!("push_{stopped}")).await);
    fake.stop().await;
    assert!(!rabbit::queue_exists(&format!("push_{stopped}")).await, "stop deletes push_");
    assert!(!rabbit::queue_exists(&format!("listen_{stopped}")).await, "stop deletes listen_");

    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    Client::new(&fake).data(REGISTER, register_input(&dropped)).await;
    assert!(rabbit::queue_exists(&format!("listen_{dropped}")).await);
    drop(fake);
    assert!(!rabbit::queue_exists(&format!("push_{dropped}")).await, "drop deletes push_");
    assert!(!rabbit::queue_exists(&format!("listen_{dropped}")).await, "drop deletes listen_");
    guard.delete_now().await;
}

#[tokio::test]
async fn a_test_that_panics_still_deletes_its_queues() {
    let _broker = rabbit::broker_shared().await;
    let id = fresh_id();
    let _queues = QueueGuard::for_connector(&id);
    let task_id = id.clone();
    // The "test" runs on a task of its own so that its panic can be observed here.
    let failed = tokio::spawn(async move {
        let fake = FakeOpenCti::start(FakeOptions::default()).await;
        Client::new(&fake).data(REGISTER, register_input(&task_id)).await;
        assert!(rabbit::queue_exists(&format!("push_{task_id}")).await);
        panic!("a failing assertion, on purpose");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()));
    assert!(!rabbit::queue_exists(&format!("push_{id}")).await, "the fake's Drop deleted push_ while unwinding");
    assert!(!rabbit::queue_exists(&format!("listen_{id}")).await);
}

#[tokio::test]
async fn documents_are_validated_like_the_platform() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let client = Client::new(&fake);
    let code = |error: &Value| error["extensions"]["code"].as_str().unwrap_or_default().to_owned();

    // `String!` where the platform declares `ID!`.
    let error = client.error("mutation P($id: String!) { pingConnector(id: $id) { id } }", json!({"id": "x"})).await;
    assert_eq!(code(&error), "GRAPHQL_VALIDATION_FAILED");
    assert!(error["message"].as_str().unwrap_or_default().contains("expecting type \"ID!\""), "{error}");

    let error = client.error("query { about { version build } }", json!({})).await;
    assert_eq!(error["message"], "Cannot query field \"build\" on type \"AppInfo\".");
    let error = client.error("query { connectors { id } }", json!({})).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("unknown operation"), "{error}");
    let error = client.error("mutation { about { version } }", json!({})).await;
    assert_eq!(code(&error), "GRAPHQL_VALIDATION_FAILED", "about is a query");
    let error = client.error("query { about }", json!({})).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("must have a selection"), "{error}");
    let error = client.error("query Q($unused: String) { about { version } }", json!({})).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("never used"), "{error}");
    let error = client.error("query { about { version }", json!({})).await;
    assert_eq!(code(&error), "GRAPHQL_PARSE_FAILED");

    // Variable values are checked against their declared types.
    let error = client.error(WORK_ADD, json!({"connectorId": "c", "isMultiPartWork": "yes"})).await;
    assert_eq!(code(&error), "BAD_USER_INPUT", "{error}");
    let error = client.error(WORK_ADD, json!({"friendlyName": "x"})).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("was not provided"), "{error}");
    let mut input = register_input("c");
    input["input"]["colour"] = json!("blue");
    let error = client.error(REGISTER, input).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("\"colour\""), "{error}");
    let error = client.error(PING, json!({"id": "c", "connectorInfo": {"next_run_datetime": "tomorrow"}})).await;
    assert_eq!(code(&error), "BAD_USER_INPUT", "{error}");

    // Aliases and __typename come back as asked; literals work as well as variables.
    let data = client.data("{ v: about { ver: version __typename } }", json!({})).await;
    assert_eq!(data, json!({"v": {"ver": "6.8.0", "__typename": "AppInfo"}}));

    // Not a GraphQL request at all.
    let response = reqwest::Client::new()
        .post(fake.graphql_url())
        .bearer_auth(fake.token())
        .body("query { about { version } }")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    assert!(fake.calls().iter().all(|c| c.outcome != Outcome::Ok || c.is("about")));
}

#[tokio::test]
async fn envelopes_round_trip_through_the_push_queue() {
    let _broker = rabbit::broker_shared().await;
    let id = fresh_id();
    let _queues = QueueGuard::for_connector(&id);
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    Client::new(&fake).data(REGISTER, register_input(&id)).await;

    let bundle = json!({"type": "bundle", "id": "bundle--1", "spec_version": "2.1", "x_opencti_seq": 1,
                        "objects": [{"type": "malware", "id": "malware--1", "name": "Émotet"}]});
    let envelope = json!({
        "bundle_type": "QUEUE_BUNDLE",
        "applicant_id": fake.connector_user_id(),
        "action_sequence": 1,
        "entities_types": [],
        "content": base64::engine::general_purpose::STANDARD.encode(bundle.to_string()),
        "update": false,
        "draft_id": null,
        "no_split": false,
        "work_id": "work_1",
    });
    let properties = BasicProperties::default().with_delivery_mode(2).with_content_encoding("utf-8".into());
    let routing_key = format!("push_routing_{id}");
    rabbit::publish(WORKER_EXCHANGE, &routing_key, envelope.to_string().as_bytes(), properties).await;
    let messages = rabbit::drain(&format!("push_{id}"), Duration::from_millis(300)).await;
    assert_eq!(messages.len(), 1);
    let decoded = messages[0].envelope();
    assert_eq!(decoded.applicant_id, DEFAULT_CONNECTOR_USER_ID);
    assert_eq!((decoded.action_sequence, decoded.update, decoded.no_split), (1, false, false));
    assert_eq!((decoded.draft_id.as_deref(), decoded.work_id.as_deref()), (None, Some("work_1")));
    assert_eq!(decoded.content, bundle);
    assert_eq!(decoded.objects()[0]["name"], "Émotet");

    // Deviations panic with a clear message.
    let deviations = [
        ("unknown key", {
            let mut e = envelope.clone();
            e["extra"] = json!(1);
            e
        }),
        ("missing key", {
            let mut e = envelope.clone();
            e.as_object_mut().expect("object").remove("no_split");
            e
        }),
        ("bad base64", {
            let mut e = envelope.clone();
            e["content"] = json!("%%%");
            e
        }),
        ("0-based sequence", {
            let mut e = envelope.clone();
            e["action_sequence"] = json!(0);
            e
        }),
    ];
    for (what, body) in deviations {
        let body = body.to_string();
        let outcome = std::panic::catch_unwind(|| rabbit::decode_envelope(body.as_bytes()));
        assert!(outcome.is_err(), "decode_envelope accepted an envelope with a {what}");
    }
    fake.stop().await;
}

#[tokio::test]
async fn close_own_connections_cuts_this_process_broker_connections() {
    let _broker = rabbit::broker_exclusive().await;
    let connection = rabbit::connect().await;
    assert!(connection.status().connected());
    let closed = rabbit::close_own_connections().await;
    assert!(closed >= 1, "closed {closed} connections");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection.status().connected() {
        assert!(Instant::now() < deadline, "the connection survived close_own_connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connection.create_channel().await.is_err());
    // The broker takes new connections right away.
    rabbit::close(rabbit::connect().await).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_with_instructions() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let Err(message) = rabbit::try_connect_to(&uri).await else {
        panic!("connected to {uri}");
    };
    assert!(message.contains("start it with `rabbitmq-server -detached`"), "{message}");

    let fake = FakeOpenCti::start(FakeOptions { amqp_uri: uri, ..FakeOptions::default() }).await;
    let error = Client::new(&fake).error(REGISTER, register_input(&fresh_id())).await;
    assert!(error["message"].as_str().unwrap_or_default().contains("rabbitmq-server -detached"), "{error}");
    assert_eq!(fake.mq_errors().len(), 1);
    assert!(fake.registrations().is_empty());
}
