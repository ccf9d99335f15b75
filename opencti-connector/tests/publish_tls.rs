//! The broker connection over TLS, against a TLS front of the real RabbitMQ with a test certificate authority:
//! the broker's certificate is verified against `MQ_USE_SSL_CA`, refused without it, accepted unverified only when
//! `MQ_USE_SSL_REJECT_UNAUTHORIZED=false` says so, and a client certificate (`MQ_USE_SSL_CERT`, `MQ_USE_SSL_KEY`,
//! as files or inline PEM, the key possibly encrypted with `MQ_USE_SSL_PASSPHRASE`) is presented in both modes.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use opencti_connector::send::{AmqpEndpoint, PublishOptions, Publisher};
use opencti_connector::settings::{PemSource, Secret};
use testkit::rabbit;
use testkit::tls_proxy::{TestPki, TlsProxy};

/// The TLS front as the registration would describe it, with the given verification and trust settings.
fn endpoint(proxy: &TlsProxy, verify: bool, ca: Option<&TestPki>) -> AmqpEndpoint {
    let mut endpoint = AmqpEndpoint::new("localhost", proxy.port, "/", true, "guest", "guest");
    endpoint.ssl_verify = verify;
    endpoint.ca = ca.map(|pki| PemSource::File(pki.ca.clone()));
    endpoint
}

fn with_client_certificate(mut endpoint: AmqpEndpoint, pki: &TestPki) -> AmqpEndpoint {
    endpoint.cert = Some(PemSource::File(pki.client_cert.clone()));
    endpoint.key = Some(PemSource::File(pki.client_key.clone()));
    endpoint
}

/// Publishes one message through `endpoint` to a fresh queue and reads it back from the plain listener.
async fn publish_one_through(endpoint: AmqpEndpoint) {
    let queue = format!("test_publish_tls_{}", uuid::Uuid::new_v4());
    let guard = rabbit::QueueGuard::new([queue.clone()]);
    let connection = rabbit::connect().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue");
    rabbit::close(connection).await;

    let options = PublishOptions {
        exchange: String::new(),
        routing_key: queue.clone(),
        window: 4,
        window_bytes: 1 << 20,
        max_outage: Duration::from_secs(10),
        connection_name: format!("test-tls-{queue}"),
    };
    let mut publisher = Publisher::connect(endpoint, options).await.expect("connect over TLS");
    publisher.publish(b"over TLS".to_vec()).await.expect("publish");
    publisher.flush().await.expect("confirmed");
    publisher.close().await;

    let messages = rabbit::drain(&queue, Duration::from_millis(300)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, b"over TLS");
    guard.delete_now().await;
}

#[tokio::test]
async fn the_brokers_certificate_is_verified_against_mq_ca() {
    let _broker = rabbit::broker_shared().await;
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, false).await;
    publish_one_through(endpoint(&proxy, true, Some(&pki))).await;
}

#[tokio::test]
async fn an_unknown_certificate_is_refused_when_verifying() {
    let _broker = rabbit::broker_shared().await;
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, false).await;
    let error = endpoint(&proxy, true, None).connect("test-tls-refused").await.expect_err("untrusted broker");
    let message = error.to_string();
    assert!(message.contains("localhost") && message.to_lowercase().contains("certificate"), "{message}");

    let other_ca = TestPki::new();
    let error = endpoint(&proxy, true, Some(&other_ca)).connect("test-tls-refused").await.expect_err("wrong CA");
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn reject_unauthorized_false_accepts_a_certificate_nobody_vouches_for() {
    let _broker = rabbit::broker_shared().await;
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, false).await;
    publish_one_through(endpoint(&proxy, false, None)).await;
}

#[tokio::test]
async fn a_client_certificate_is_presented_whether_or_not_the_broker_is_verified() {
    let _broker = rabbit::broker_shared().await;
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, true).await;
    publish_one_through(with_client_certificate(endpoint(&proxy, true, Some(&pki)), &pki)).await;
    publish_one_through(with_client_certificate(endpoint(&proxy, false, None), &pki)).await;

    for verify in [true, false] {
        let without = endpoint(&proxy, verify, Some(&pki));
        assert!(
            without.connect("test-tls-no-client-cert").await.is_err(),
            "a broker demanding a client certificate refuses one without (verify={verify})"
        );
    }
}

#[tokio::test]
async fn unreadable_tls_files_are_named_in_the_error() {
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, false).await;
    let mut missing_key = with_client_certificate(endpoint(&proxy, false, None), &pki);
    missing_key.key = Some(PemSource::File("/nonexistent/client.key".into()));
    let error = missing_key.connect("test-tls-missing-key").await.expect_err("no key file").to_string();
    assert!(error.contains("MQ_USE_SSL_KEY") && error.contains("/nonexistent/client.key"), "{error}");

    let mut garbage_cert = with_client_certificate(endpoint(&proxy, false, None), &pki);
    garbage_cert.cert = Some(PemSource::File(pki.client_key.clone()));
    let error = garbage_cert.connect("test-tls-bad-cert").await.expect_err("a key is no certificate").to_string();
    assert!(error.contains("MQ_USE_SSL_REJECT_UNAUTHORIZED=false"), "{error}");
}

#[tokio::test]
async fn an_encrypted_client_key_opens_with_its_passphrase_and_pem_may_be_inline() {
    let _broker = rabbit::broker_shared().await;
    let pki = TestPki::new();
    let proxy = TlsProxy::rabbitmq(&pki, true).await;
    let read = |path: &std::path::PathBuf| std::fs::read_to_string(path).expect("PEM file");
    // Everything inline, as pycti also takes it; the key encrypted.
    let mut inline = endpoint(&proxy, true, None);
    inline.ca = Some(PemSource::Inline(read(&pki.ca)));
    inline.cert = Some(PemSource::Inline(read(&pki.client_cert)));
    inline.key = Some(PemSource::Inline(read(&pki.client_key_encrypted)));
    inline.passphrase = Some(Secret::new(TestPki::PASSPHRASE));
    publish_one_through(inline.clone()).await;

    let mut wrong = inline.clone();
    wrong.passphrase = Some(Secret::new("not the passphrase"));
    let error = wrong.connect("test-tls-wrong-passphrase").await.expect_err("wrong passphrase").to_string();
    assert!(error.contains("cannot decrypt it with MQ_USE_SSL_PASSPHRASE"), "{error}");
    assert!(!format!("{wrong:?}").contains("not the passphrase"), "the passphrase stays out of Debug");

    let mut without = inline;
    without.passphrase = None;
    let error = without.connect("test-tls-no-passphrase").await.expect_err("no passphrase").to_string();
    assert!(error.contains("give its passphrase with MQ_USE_SSL_PASSPHRASE"), "{error}");
}
