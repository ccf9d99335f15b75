//! Publishing to the platform's push queue with publisher confirms, as pycti does, but pipelined: up to `window`
//! messages are in flight at once instead of one round trip per message.
//!
//! Nothing counts as sent before RabbitMQ confirms it. A nack or an unroutable return (messages are published
//! `mandatory`, so a missing queue is noticed instead of silently dropping data) re-publishes the message. A lost
//! channel or connection reconnects with exponential backoff and jitter and re-publishes every unconfirmed
//! message: delivery is at-least-once, and a duplicate is a harmless upsert on the platform.

mod endpoint;
mod envelope;

use std::collections::VecDeque;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

pub use endpoint::{AmqpEndpoint, EndpointError};
pub use envelope::Envelope;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// `push_exchange` from the registration (`amqp.worker.exchange`).
    pub exchange: String,
    /// `push_routing` from the registration (`push_routing_<connector id>`).
    pub routing_key: String,
    /// Most messages published and not yet confirmed.
    pub window: usize,
    /// How long the broker may stay unreachable before a publish fails (the run then ends in error and the next
    /// run redoes the unfinished part).
    pub max_outage: Duration,
    /// Name of the AMQP connection, shown in RabbitMQ's management UI.
    pub connection_name: String,
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("RabbitMQ has not accepted messages for more than {0:?} (last error: {1})")]
    Stalled(Duration, String),
}

/// Counters of one publisher's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages confirmed by the broker.
    pub confirmed: u64,
    /// Bytes of confirmed message bodies.
    pub confirmed_bytes: u64,
    /// Re-publications after a nack, a return or a lost connection.
    pub republished: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
}

struct Link {
    connection: Connection,
    channel: Channel,
}

/// A run of failures (lost links, refused connections, nacks, returns) with no confirm in between: paces the
/// retries and bounds how long they go on.
struct Trouble {
    delays: backon::ExponentialBackoff,
    last_error: String,
}

struct Pending {
    body: Vec<u8>,
    /// `None` when the message still has to be (re-)published on the current link.
    confirm: Option<PublisherConfirm>,
}

/// Publishes message bodies to one exchange and routing key, with a bounded window of unconfirmed messages.
pub struct Publisher {
    endpoint: AmqpEndpoint,
    options: PublishOptions,
    link: Option<Link>,
    in_flight: VecDeque<Pending>,
    stats: PublishStats,
    connections: u64,
    trouble: Option<Trouble>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint.describe())
            .field("exchange", &self.options.exchange)
            .field("routing_key", &self.options.routing_key)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn properties() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2).with_content_encoding("utf-8".into())
}

impl Publisher {
    /// Connects (retrying with backoff up to `max_outage`) and enables publisher confirms.
    pub async fn connect(endpoint: AmqpEndpoint, options: PublishOptions) -> Result<Self, PublishError> {
        let mut publisher = Self {
            endpoint,
            options,
            link: None,
            in_flight: VecDeque::new(),
            stats: PublishStats::default(),
            connections: 0,
            trouble: None,
        };
        publisher.ensure_link().await?;
        Ok(publisher)
    }

    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Messages published and not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.in_flight.len()
    }

    /// Publishes one message body. Returns once it is handed to the broker and the window has room again; call
    /// [`Publisher::flush`] to wait for every confirm.
    pub async fn publish(&mut self, body: Vec<u8>) -> Result<(), PublishError> {
        while self.in_flight.len() >= self.options.window.max(1) {
            self.settle_oldest().await?;
        }
        self.in_flight.push_back(Pending { body, confirm: None });
        self.send_unsent().await
    }

    /// Waits until every message published so far is confirmed.
    pub async fn flush(&mut self) -> Result<(), PublishError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Closes the connection cleanly (after [`Publisher::flush`], nothing is lost).
    pub async fn close(mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.channel.close(200, "bye".into()).await;
            let _ = link.connection.close(200, "bye".into()).await;
        }
    }

    /// Publishes every pending message that has no confirm on the current link, reconnecting as needed.
    async fn send_unsent(&mut self) -> Result<(), PublishError> {
        loop {
            self.ensure_link().await?;
            let Some(link) = &self.link else { continue };
            let mut failure = None;
            for pending in self.in_flight.iter_mut().filter(|p| p.confirm.is_none()) {
                let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
                let exchange = self.options.exchange.as_str().into();
                let routing_key = self.options.routing_key.as_str().into();
                match link.channel.basic_publish(exchange, routing_key, options, &pending.body, properties()).await {
                    Ok(confirm) => pending.confirm = Some(confirm),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            match failure {
                None => return Ok(()),
                Some(error) => self.lose_link(&error.to_string()),
            }
        }
    }

    /// Waits for the oldest message's confirm and acts on it.
    async fn settle_oldest(&mut self) -> Result<(), PublishError> {
        let Some(front) = self.in_flight.front_mut() else { return Ok(()) };
        let Some(confirm) = front.confirm.take() else {
            return self.send_unsent().await;
        };
        match confirm.await {
            Ok(Confirmation::Ack(None)) => {
                if let Some(done) = self.in_flight.pop_front() {
                    self.stats.confirmed += 1;
                    self.stats.confirmed_bytes += done.body.len() as u64;
                }
                self.trouble = None;
                Ok(())
            }
            Ok(outcome) => {
                let reason = match outcome {
                    Confirmation::Ack(Some(_)) => "unroutable (returned by the broker: is the push queue bound?)",
                    Confirmation::Nack(_) => "nacked by the broker",
                    _ => "not confirmed (publisher confirms are off)",
                };
                tracing::warn!(reason, exchange = %self.options.exchange, routing_key = %self.options.routing_key, "message not accepted: publishing it again");
                self.stats.republished += 1;
                // Retry after the others in flight, paced so that a missing queue does not hot-loop.
                if let Some(again) = self.in_flight.pop_front() {
                    self.in_flight.push_back(again);
                }
                self.pause(reason).await?;
                self.send_unsent().await
            }
            Err(error) => {
                self.lose_link(&error.to_string());
                self.send_unsent().await
            }
        }
    }

    /// Notes a failure and waits before the next attempt; fails once failures have gone on for `max_outage`.
    async fn pause(&mut self, reason: &str) -> Result<(), PublishError> {
        let max_outage = self.options.max_outage;
        let trouble = self.note_trouble(reason);
        match trouble.delays.next() {
            Some(delay) => {
                tracing::debug!(reason, retry_in = ?delay, "publishing paused");
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => Err(PublishError::Stalled(max_outage, trouble.last_error.clone())),
        }
    }

    /// Starts or continues the current run of failures.
    fn note_trouble(&mut self, reason: &str) -> &mut Trouble {
        let max_outage = self.options.max_outage;
        let trouble = self.trouble.get_or_insert_with(|| Trouble {
            delays: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(15))
                .with_jitter()
                .without_max_times()
                .with_total_delay(Some(max_outage))
                .build(),
            last_error: String::new(),
        });
        reason.clone_into(&mut trouble.last_error);
        trouble
    }

    /// Forgets the current link: every unconfirmed message will be published again on the next one.
    fn lose_link(&mut self, reason: &str) {
        self.note_trouble(reason);
        if self.link.take().is_some() {
            let unconfirmed = self.in_flight.len();
            tracing::warn!(reason, unconfirmed, endpoint = %self.endpoint.describe(), "RabbitMQ link lost: reconnecting and publishing the unconfirmed messages again");
        }
        for pending in &mut self.in_flight {
            if pending.confirm.take().is_some() {
                self.stats.republished += 1;
            }
        }
    }

    /// Opens a connection and a confirm-mode channel if there is none. After a failure (a lost link, a refused
    /// connection), attempts are paced with exponential backoff and jitter for up to `max_outage`.
    async fn ensure_link(&mut self) -> Result<(), PublishError> {
        if self.link.as_ref().is_some_and(|link| link.connection.status().connected()) {
            return Ok(());
        }
        if self.link.is_some() {
            self.lose_link("connection closed");
        }
        loop {
            if let Some(trouble) = &self.trouble {
                let reason = trouble.last_error.clone();
                self.pause(&reason).await?;
            }
            match self.open_link().await {
                Ok(link) => {
                    if self.connections > 0 {
                        self.stats.reconnects += 1;
                        tracing::info!(endpoint = %self.endpoint.describe(), "RabbitMQ link restored");
                    }
                    self.connections += 1;
                    self.link = Some(link);
                    return Ok(());
                }
                Err(PublishError::Endpoint(EndpointError::Connect { source, .. })) => {
                    let error = source.to_string();
                    tracing::warn!(error, endpoint = %self.endpoint.describe(), "RabbitMQ unreachable: retrying");
                    self.note_trouble(&error);
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn open_link(&self) -> Result<Link, PublishError> {
        let connection = self.endpoint.connect(&self.options.connection_name).await?;
        let connect_error =
            |source: lapin::Error| EndpointError::Connect { endpoint: self.endpoint.describe(), source };
        let channel = connection.create_channel().await.map_err(connect_error)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(connect_error)?;
        Ok(Link { connection, channel })
    }
}
