//! The publisher against the real RabbitMQ: pipelined confirms, persistent UTF-8 messages, retry of unroutable
//! messages, and no loss when the broker connection is cut mid-send.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use opencti_connector::send::{AmqpEndpoint, PublishError, PublishOptions, Publisher};
use testkit::rabbit;

/// A unique exchange, queue and routing key, deleted when dropped (even when the test fails).
struct Topology {
    exchange: String,
    queue: String,
    routing_key: String,
    guard: Option<rabbit::QueueGuard>,
}

impl Topology {
    async fn new(bind: bool) -> Self {
        let id = uuid::Uuid::new_v4();
        let topology = Self {
            exchange: format!("test.publish.{id}"),
            queue: format!("test_publish_{id}"),
            routing_key: format!("push_routing_{id}"),
            guard: Some(rabbit::QueueGuard::new([format!("test_publish_{id}")])),
        };
        let connection = rabbit::connect().await;
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                topology.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions { auto_delete: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        if bind {
            topology.bind(&channel).await;
        }
        rabbit::close(connection).await;
        topology
    }

    async fn bind(&self, channel: &Channel) {
        channel
            .queue_declare(self.queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
            .await
            .expect("queue");
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }

    fn options(&self, window: usize) -> PublishOptions {
        PublishOptions {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            window,
            window_bytes: 64 << 20,
            max_outage: Duration::from_secs(60),
            connection_name: format!("test-publisher-{}", self.queue),
        }
    }

    async fn cleanup(mut self) {
        if let Some(guard) = self.guard.take() {
            guard.delete_now().await;
        }
    }
}

fn local() -> AmqpEndpoint {
    AmqpEndpoint::new("127.0.0.1", 5672, "/", false, "guest", "guest")
}

#[tokio::test]
async fn pipelined_publishes_are_confirmed_persistent_and_in_order() {
    let _broker = rabbit::broker_shared().await;
    let topology = Topology::new(true).await;
    let mut publisher = Publisher::connect(local(), topology.options(64)).await.expect("connect");
    for i in 0..2_000 {
        publisher.publish(format!("message {i}").into_bytes()).await.expect("publish");
        assert!(publisher.unconfirmed() <= 64, "window respected");
    }
    publisher.flush().await.expect("flush");
    assert_eq!(publisher.stats().confirmed, 2_000);
    assert_eq!(publisher.unconfirmed(), 0);
    publisher.close().await;

    let messages = rabbit::drain(&topology.queue, Duration::from_millis(500)).await;
    assert_eq!(messages.len(), 2_000);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message.body, format!("message {i}").into_bytes(), "order kept without faults");
        assert_eq!(message.delivery_mode, Some(2), "persistent");
        assert_eq!(message.content_encoding.as_deref(), Some("utf-8"));
    }
    topology.cleanup().await;
}

#[tokio::test]
async fn unroutable_messages_are_published_again_until_the_queue_exists() {
    let _broker = rabbit::broker_shared().await;
    let topology = Topology::new(false).await;
    let mut publisher = Publisher::connect(local(), topology.options(8)).await.expect("connect");
    let send = async {
        for i in 0..10 {
            publisher.publish(format!("early {i}").into_bytes()).await?;
        }
        publisher.flush().await
    };
    let bind_later = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let connection = rabbit::connect().await;
        topology.bind(&connection.create_channel().await.expect("channel")).await;
        rabbit::close(connection).await;
    };
    let (sent, ()) = tokio::join!(send, bind_later);
    sent.expect("every message confirmed once the queue exists");
    assert!(publisher.stats().republished > 0, "returns were retried: {:?}", publisher.stats());
    publisher.close().await;
    let mut bodies: Vec<_> = rabbit::drain(&topology.queue, Duration::from_millis(500))
        .await
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 10, "every message arrived: {bodies:?}");
    topology.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_broker_fails_after_the_outage_bound() {
    let topology = Topology::new(true).await;
    let mut options = topology.options(8);
    options.max_outage = Duration::from_secs(2);
    let nowhere = AmqpEndpoint::new("127.0.0.1", 1, "/", false, "guest", "guest");
    let started = std::time::Instant::now();
    let error = Publisher::connect(nowhere, options).await.expect_err("nothing listens on port 1");
    assert!(matches!(error, PublishError::Stalled(..)), "{error}");
    // Backoff with jitter: the delays sum to between half the bound and the bound.
    assert!(started.elapsed() >= Duration::from_millis(500), "retried with backoff before giving up");
    assert!(started.elapsed() < Duration::from_secs(20));
    topology.cleanup().await;
}

#[tokio::test]
async fn cutting_the_connection_mid_send_loses_nothing() {
    let _broker = rabbit::broker_exclusive().await;
    let topology = Topology::new(true).await;
    let total = 20_000;
    let mut publisher = Publisher::connect(local(), topology.options(256)).await.expect("connect");
    let mut cuts = 0;
    for i in 0..total {
        publisher.publish(format!("{i:06}").into_bytes()).await.expect("publish survives the cut");
        if i == 5_000 || i == 12_000 {
            cuts += rabbit::close_own_connections().await;
        }
    }
    publisher.flush().await.expect("flush");
    let stats = publisher.stats();
    publisher.close().await;
    assert!(cuts >= 2, "the test cut the publisher's connection ({cuts} cut)");
    assert!(stats.reconnects >= 2, "{stats:?}");
    assert_eq!(stats.confirmed, total);

    let messages = rabbit::drain(&topology.queue, Duration::from_millis(500)).await;
    let mut seen = vec![false; total as usize];
    for message in &messages {
        let index: usize = String::from_utf8_lossy(&message.body).parse().expect("numbered body");
        seen[index] = true;
    }
    let missing: Vec<_> = seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect();
    assert!(missing.is_empty(), "{} messages lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
    assert!(messages.len() as u64 >= total, "at least once");
    topology.cleanup().await;
}
