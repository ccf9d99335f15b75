//! The OpenCTI client against the fake platform: every call of the protocol works with pycti's documents (the fake
//! validates them against the platform's schema), 5xx answers are retried, a wrong token is one clear error, and a
//! GraphQL error comes back with its message.

use std::time::{Duration, Instant};

use opencti_connector::opencti::{
    ConnectorInfo, GraphQlClient, OpenCti, OpenCtiError, RegisterInput, RetryPolicy, WorkError,
};
use opencti_connector::settings::{HttpUrl, OpenCtiSettings as OpenCtiConfig, Secret, SettingValue, TlsVerify};
use testkit::fake_opencti::{AuthFailure, FakeOpenCti, FakeOptions, Fault, StatusCode};
use testkit::tls_proxy::{TestPki, TlsProxy};

fn client(fake: &FakeOpenCti, token: &str) -> OpenCti {
    let config = OpenCtiConfig {
        url: HttpUrl::parse(&fake.url(), "").expect("URL"),
        token: Secret::new(token),
        ssl_verify: TlsVerify::Verify,
        json_logging: false,
    };
    let fast = RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        max_retries: Some(4),
    };
    OpenCti::new(GraphQlClient::new(&config, "test", fast).expect("client"))
}

#[tokio::test]
async fn every_connector_call_round_trips() {
    let _broker = testkit::rabbit::broker_shared().await;
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let api = client(&fake, fake.token());
    let id = uuid::Uuid::new_v4().to_string();

    assert_eq!(api.about().await.expect("about"), "6.8.0");
    let registration = api
        .register(&RegisterInput::external_import(&id, "Example", &["example".into()], "1.0", "example"))
        .await
        .expect("register");
    assert_eq!(registration.id, id);
    assert_eq!(registration.config.push_exchange, "amqp.worker.exchange");
    assert_eq!(registration.config.push_routing, format!("push_routing_{id}"));
    assert_eq!(registration.config.push, format!("push_{id}"));
    assert_eq!(registration.connector_user_id.as_deref(), Some(fake.connector_user_id()));
    assert_eq!(registration.connector_state, None);
    let input = &fake.registrations()[0];
    assert_eq!(input["type"], "EXTERNAL_IMPORT");
    assert_eq!(input["scope"], serde_json::json!(["example"]));
    assert_eq!(input["auto"], false);

    let info = ConnectorInfo { queue_threshold: 500.0, ..ConnectorInfo::default() };
    let answer = api.ping(&id, r#"{"last_commit":"abc"}"#, &info).await.expect("ping");
    assert_eq!(answer.connector_state.as_deref(), Some(r#"{"last_commit":"abc"}"#));
    assert_eq!(fake.state().as_deref(), Some(r#"{"last_commit":"abc"}"#));

    let queue = api.queue_details(&id).await.expect("queue details");
    assert_eq!(queue.messages_number, 0);

    let work = api.work_add(&id, "Maltrail test", true).await.expect("workAdd");
    api.add_expectations(&work, 5).await.expect("addExpectations");
    api.add_expectations(&work, 2).await.expect("addExpectations");
    let error = WorkError { error: "trail line skipped".into(), source: "malware/x.txt:3".into() };
    api.report_expectation(&work, &error).await.expect("reportExpectation");
    api.to_processed(&work, "done", false).await.expect("toProcessed");
    let recorded = fake.work(&work).expect("work recorded");
    assert_eq!(recorded.friendly_name.as_deref(), Some("Maltrail test"));
    assert!(recorded.is_multipart && recorded.processed && !recorded.in_error);
    assert_eq!(recorded.expectations, 7);
    assert_eq!(recorded.errors.len(), 1);
    assert_eq!(recorded.message.as_deref(), Some("done"));
    assert!(fake.calls().iter().all(|call| call.auth_ok && call.succeeded()), "{}", fake.call_log());
    fake.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let api = client(&fake, fake.token());
    fake.fail_next(2, Fault::Http(StatusCode::BAD_GATEWAY));
    assert_eq!(api.about().await.expect("about after two 502"), "6.8.0");
    assert_eq!(fake.calls_to("about").len(), 3);

    fake.fail_next(10, Fault::Http(StatusCode::SERVICE_UNAVAILABLE));
    let error = api.about().await.expect_err("five attempts, all 503");
    assert!(matches!(error, OpenCtiError::Http { status: 503, .. }), "{error}");

    // Apollo's 500 with a GraphQL body (the platform's Redis or Elasticsearch briefly away) is a server error too.
    fake.clear_faults();
    fake.fail_next(
        2,
        Fault::GraphqlErrorWithStatus(StatusCode::INTERNAL_SERVER_ERROR, "Context creation failed".into()),
    );
    assert_eq!(api.about().await.expect("about after two 500 with errors"), "6.8.0");
    assert_eq!(fake.calls_to("about").len(), 3 + 5 + 3);
    fake.stop().await;
}

#[tokio::test]
async fn writes_that_add_are_repeated_only_when_the_platform_surely_did_not_take_them() {
    let _broker = testkit::rabbit::broker_shared().await;
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let api = client(&fake, fake.token());
    let id = uuid::Uuid::new_v4().to_string();
    api.register(&RegisterInput::external_import(&id, "Example", &["example".into()], "1.0", "example"))
        .await
        .expect("register");

    // A 504 after the platform opened the work: repeating would open a second one.
    fake.fail_next_op("workAdd", 1, Fault::AppliedThen(StatusCode::GATEWAY_TIMEOUT));
    let error = api.work_add(&id, "Maltrail test", true).await.expect_err("not repeated");
    assert!(matches!(error, OpenCtiError::Http { status: 504, .. }), "{error}");
    assert_eq!(fake.works().len(), 1, "exactly one work opened");

    // Refused in front of the platform (503) or not connected: repeated.
    fake.fail_next_op("workAdd", 2, Fault::Http(StatusCode::SERVICE_UNAVAILABLE));
    let work = api.work_add(&id, "Maltrail test 2", true).await.expect("workAdd after two 503");
    assert_eq!(fake.works().len(), 2);

    // addExpectations applied, then its answer lost: counting it twice would leave the work never complete.
    fake.fail_next_op("workEdit.addExpectations", 1, Fault::AppliedThen(StatusCode::GATEWAY_TIMEOUT));
    api.add_expectations(&work, 10).await.expect_err("not repeated");
    assert_eq!(fake.work(&work).expect("work").expectations, 10, "counted once");
    fake.fail_next_op("workEdit.addExpectations", 1, Fault::Http(StatusCode::BAD_GATEWAY));
    api.add_expectations(&work, 5).await.expect("repeated after a 502");
    assert_eq!(fake.work(&work).expect("work").expectations, 15);

    // Setting a value is safe to repeat, whatever happened to the first try.
    fake.fail_next_op("workEdit.toProcessed", 1, Fault::AppliedThen(StatusCode::GATEWAY_TIMEOUT));
    api.to_processed(&work, "done", false).await.expect("toProcessed repeated");
    assert!(fake.work(&work).expect("work").processed);
    fake.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_one_clear_error() {
    for failure in [AuthFailure::GraphqlError, AuthFailure::Http401] {
        let fake = FakeOpenCti::start(FakeOptions { auth_failure: failure, ..FakeOptions::default() }).await;
        let api = client(&fake, "not-the-token");
        let started = Instant::now();
        let error = api.about().await.expect_err("refused");
        assert!(matches!(error, OpenCtiError::Unauthorized(_)), "{failure:?}: {error}");
        assert!(error.to_string().contains("OPENCTI_TOKEN"), "{error}");
        assert_eq!(fake.calls().len(), 1, "no retry of a refused token");
        assert!(started.elapsed() < Duration::from_secs(2));
        fake.stop().await;
    }
}

#[tokio::test]
async fn graphql_errors_carry_their_message() {
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let api = client(&fake, fake.token());
    fake.fail_next_op("workAdd", 1, Fault::GraphqlError("Connector not found".into(), "FUNCTIONAL_ERROR".into()));
    let error = api.work_add("unknown", "x", true).await.expect_err("GraphQL error");
    match &error {
        OpenCtiError::GraphQl { operation, message, code } => {
            assert_eq!(*operation, "workAdd");
            assert_eq!(message, "Connector not found");
            assert_eq!(code.as_deref(), Some("FUNCTIONAL_ERROR"));
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("Connector not found"));
    assert_eq!(fake.calls_to("workAdd").len(), 1, "GraphQL errors are not retried");
    fake.stop().await;
}

#[tokio::test]
async fn https_is_checked_against_the_ca_bundle_or_deliberately_not_at_all() {
    let _broker = testkit::rabbit::broker_shared().await;
    let fake = FakeOpenCti::start(FakeOptions::default()).await;
    let pki = TestPki::new();
    let proxy = TlsProxy::start(&pki, fake.addr(), false).await;
    let over_tls = |ssl_verify: TlsVerify| {
        let config = OpenCtiConfig {
            url: HttpUrl::parse(&format!("https://localhost:{}", proxy.port), "").expect("URL"),
            token: Secret::new(fake.token()),
            ssl_verify,
            json_logging: false,
        };
        let once = RetryPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_retries: Some(1),
        };
        OpenCti::new(GraphQlClient::new(&config, "test", once).expect("client"))
    };

    assert_eq!(over_tls(TlsVerify::CaFile(pki.ca.clone())).about().await.expect("CA bundle"), "6.8.0");
    assert_eq!(over_tls(TlsVerify::NoVerify).about().await.expect("no verification"), "6.8.0");
    let error = over_tls(TlsVerify::Verify).about().await.expect_err("unknown CA refused");
    assert!(format!("{error:#}").to_lowercase().contains("certificate"), "{error:#}");
    let other = TestPki::new();
    assert!(over_tls(TlsVerify::CaFile(other.ca.clone())).about().await.is_err(), "another CA's bundle refused");

    let error = GraphQlClient::new(
        &OpenCtiConfig {
            url: HttpUrl::parse(&fake.url(), "").expect("URL"),
            token: Secret::new(fake.token()),
            ssl_verify: TlsVerify::CaFile(pki.server_key.clone()),
            json_logging: false,
        },
        "test",
        RetryPolicy::default(),
    )
    .expect_err("a key file is no CA bundle");
    assert!(error.to_string().contains("server.key"), "{error}");
}
